package validate

import (
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/cri/ocispec"
)

// The fuzz targets feed arbitrary protobuf bytes to validation and check
// two properties: validation never panics and refuses only with a
// validation error; and what it accepts, the spec builders accept too, so
// no request passes validation and then fails after crisp recorded it.
// `make test` runs each for a few seconds; `make fuzz` for longer. The
// seeds are kubelet's requests and every case of the table tests.

func FuzzRunPodSandbox(f *testing.F) {
	f.Add([]byte(nil), uint16(0), "", int64(0))
	for i, c := range podCases() {
		r := kubeletPod()
		c.edit(r)
		f.Add(mustMarshal(f, r), uint16(0), "", int64(0))
		f.Add([]byte(nil), uint16(i), c.name, int64(i)-20)
	}
	v := newTestValidator()
	f.Fuzz(func(t *testing.T, data []byte, pick uint16, text string, num int64) {
		r := kubeletPod()
		if !fuzzInput(r, data, pick, text, num) {
			return
		}
		if err := v.RunPodSandbox(r); err != nil {
			requireValidationError(t, err)
			return
		}
		for _, typ := range []string{ocispec.RuntimeRunc, ocispec.RuntimeRunsc} {
			_, err := ocispec.ForSandboxInfra(ocispec.InfraInput{
				Sandbox: ocispec.Sandbox{ID: "p1", InfraID: "p1", RuntimeType: typ, NetNSPath: "/run/netns/p1",
					IPCNSPath: "/run/crisp/pods/p1/ipc", UTSNSPath: "/run/crisp/pods/p1/uts", Config: r.Config},
				RootfsPath: "/run/crisp/c/p1/rootfs", CrispdPath: "/usr/bin/crispd",
			})
			if err != nil {
				t.Fatalf("validation accepted a pod whose %s infra spec fails: %v", typ, err)
			}
		}
	})
}

func FuzzCreateContainer(f *testing.F) {
	f.Add([]byte(nil), uint16(0), "", int64(0))
	for i, c := range containerCases() {
		r := kubeletContainer()
		c.edit(r)
		f.Add(mustMarshal(f, r), uint16(0), "", int64(0))
		f.Add([]byte(nil), uint16(i), c.name, int64(i)-20)
	}
	v := newTestValidator()
	f.Fuzz(func(t *testing.T, data []byte, pick uint16, text string, num int64) {
		r := kubeletContainer()
		if !fuzzInput(r, data, pick, text, num) {
			return
		}
		if err := v.CreateContainer(r); err != nil {
			requireValidationError(t, err)
			return
		}
		// A pod that allows everything a container may ask of it: the
		// pod-dependent rules are the handler's, checked apart.
		podCfg := kubeletPod().Config
		podCfg.Linux.SecurityContext.Privileged = true
		podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
		sb := ocispec.Sandbox{ID: "p1", Handler: "runc", RuntimeType: ocispec.RuntimeRunc, InfraPID: 1, NetNSPath: "/run/netns/p1",
			IPCNSPath: "/run/crisp/pods/p1/ipc", UTSNSPath: "/run/crisp/pods/p1/uts", Privileged: true, Config: podCfg}
		if err := ocispec.CheckContainerInPod(r.Config, sb); err != nil {
			requireValidationError(t, err)
			return
		}
		passwd := "root:x:0:0:root:/root:/bin/sh\n"
		if n := r.Config.GetLinux().GetSecurityContext().GetRunAsUsername(); n != "" {
			passwd += n + ":x:1000:1000::/home/user:/bin/sh\n"
		}
		_, err := ocispec.ForContainer(ocispec.ContainerInput{
			ID: "c1", Name: "c1", Config: r.Config, Sandbox: sb, RootfsPath: "/rootfs", TargetPID: 1,
			Image:  &imageWithCmd,
			Rootfs: fstest.MapFS{"etc/passwd": {Data: []byte(passwd)}, "etc/group": {Data: []byte("root:x:0:\n")}},
			StatDevice: func(p string) (specs.LinuxDevice, error) {
				return specs.LinuxDevice{Path: p, Type: "c", Major: 10, Minor: 229}, nil
			},
			ReadFile: func(string) ([]byte, error) { return []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), nil },
		})
		if err != nil {
			t.Fatalf("validation accepted a container whose spec fails: %v", err)
		}
	})
}

// fuzzInput makes the request to try: data decoded over m's fixture when
// there is data, else the fixture itself; then one scalar of it (picked by
// pick) set from text or num. Mutating kubelet's request field by field
// reaches the rules much sooner than random bytes do. It reports false when
// data does not decode or the result could not come over the wire.
func fuzzInput(m proto.Message, data []byte, pick uint16, text string, num int64) bool {
	if len(data) > 0 {
		proto.Reset(m)
		if proto.Unmarshal(data, m) != nil {
			return false
		}
	}
	ls := leaves(m.ProtoReflect(), "")
	if len(ls) == 0 {
		return true
	}
	l := ls[int(pick)%len(ls)]
	switch l.kind {
	case protoreflect.StringKind:
		l.set(protoreflect.ValueOfString(text))
	case protoreflect.BytesKind:
		l.set(protoreflect.ValueOfBytes([]byte(text)))
	case protoreflect.BoolKind:
		l.set(protoreflect.ValueOfBool(num%2 != 0))
	case protoreflect.EnumKind:
		l.set(protoreflect.ValueOfEnum(protoreflect.EnumNumber(num)))
	case protoreflect.Int32Kind:
		l.set(protoreflect.ValueOfInt32(int32(num)))
	case protoreflect.Int64Kind:
		l.set(protoreflect.ValueOfInt64(num))
	case protoreflect.Uint32Kind:
		l.set(protoreflect.ValueOfUint32(uint32(num)))
	case protoreflect.Uint64Kind:
		l.set(protoreflect.ValueOfUint64(uint64(num)))
	}
	// A string that is not UTF-8 cannot reach crisp: gRPC's codec refuses
	// to decode it. Only requests that can arrive are worth trying.
	if _, err := proto.Marshal(m); err != nil {
		return false
	}
	return true
}

// FuzzRequest feeds arbitrary bytes as every other request type: never a
// panic, only validation errors.
func FuzzRequest(f *testing.F) {
	all := requests()
	for i, r := range all {
		f.Add(uint8(i), mustMarshal(f, r))
	}
	v := newTestValidator()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		r := proto.Clone(all[int(which)%len(all)])
		proto.Reset(r)
		if proto.Unmarshal(data, r) != nil {
			return
		}
		if err := v.Request(r); err != nil {
			requireValidationError(t, err)
		}
	})
}

// imageWithCmd is an image with a command, for containers that set none.
var imageWithCmd = imgspecv1.Image{Config: imgspecv1.ImageConfig{Cmd: []string{"sh"}}}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func requireValidationError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) && !errors.Is(err, ocispec.ErrInvalid) && !errors.Is(err, ocispec.ErrUnsupported) {
		t.Fatalf("refused with %v, which is not a validation error", err)
	}
	if fmt.Sprint(err) == "" {
		t.Fatal("empty error message")
	}
}
