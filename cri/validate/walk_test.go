package validate

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// These tests cover classes of bad input over every field at once, so a
// field added to a request (or to the fixtures) is covered without a new
// table row: a NUL byte in any string, bytes or map key, and an unknown
// value in any enum, must be refused.

// ignored are fields crisp never reads, where any value is harmless.
var ignored = map[protoreflect.FullName]bool{
	"runtime.v1.CreateContainerRequest.sandbox_config": true, // crisp uses the pod it recorded
}

// leaf is one scalar of a request: its path, and how to read and set it.
type leaf struct {
	path string
	kind protoreflect.Kind
	get  func() protoreflect.Value
	set  func(protoreflect.Value)
}

// leaves lists the scalars of every populated message under m, map keys
// included (as kind StringKind with a set that renames the key).
func leaves(m protoreflect.Message, path string) []leaf {
	var out []leaf
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if ignored[fd.FullName()] {
			continue
		}
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if !m.Has(fd) {
				continue
			}
			mp := m.Mutable(fd).Map()
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool { keys = append(keys, k); return true })
			for _, k := range keys {
				k := k
				vd := fd.MapValue()
				if vd.Kind() == protoreflect.MessageKind {
					out = append(out, leaves(mp.Get(k).Message(), fmt.Sprintf("%s[%v]", name, k))...)
				} else {
					out = append(out, leaf{fmt.Sprintf("%s[%v]", name, k), vd.Kind(), func() protoreflect.Value { return mp.Get(k) }, func(v protoreflect.Value) { mp.Set(k, v) }})
				}
				if fd.MapKey().Kind() == protoreflect.StringKind {
					cur := k
					out = append(out, leaf{fmt.Sprintf("%s key %v", name, k), protoreflect.StringKind,
						func() protoreflect.Value { return cur.Value() },
						func(v protoreflect.Value) {
							val := mp.Get(cur)
							mp.Clear(cur)
							cur = v.MapKey()
							mp.Set(cur, val)
						}})
				}
			}
		case fd.IsList():
			if !m.Has(fd) {
				continue
			}
			l := m.Mutable(fd).List()
			for j := range l.Len() {
				j := j
				if fd.Kind() == protoreflect.MessageKind {
					out = append(out, leaves(l.Get(j).Message(), fmt.Sprintf("%s[%d]", name, j))...)
				} else {
					out = append(out, leaf{fmt.Sprintf("%s[%d]", name, j), fd.Kind(), func() protoreflect.Value { return l.Get(j) }, func(v protoreflect.Value) { l.Set(j, v) }})
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if m.Has(fd) {
				out = append(out, leaves(m.Mutable(fd).Message(), name)...)
			}
		default:
			out = append(out, leaf{name, fd.Kind(), func() protoreflect.Value { return m.Get(fd) }, func(v protoreflect.Value) { m.Set(fd, v) }})
		}
	}
	return out
}

// requests are kubelet's pod and container, and a valid request of each
// other kind that carries strings.
func requests() []proto.Message {
	return []proto.Message{
		kubeletPod(), kubeletContainer(),
		&runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"sh", "-c", "true"}, Timeout: 5},
		&runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"sh"}, Stdout: true},
		&runtimeapi.AttachRequest{ContainerId: "abc", Stdout: true},
		&runtimeapi.PortForwardRequest{PodSandboxId: "abc", Port: []int32{80}},
		&runtimeapi.StopContainerRequest{ContainerId: "abc", Timeout: 10},
		&runtimeapi.ContainerStatusRequest{ContainerId: "abc"},
		&runtimeapi.PodSandboxStatusRequest{PodSandboxId: "abc"},
		&runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "abc", PodSandboxId: "def", LabelSelector: map[string]string{"app": "web"}}},
		&runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: "abc", LabelSelector: map[string]string{"app": "web"}}},
		&runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1.0", Annotations: map[string]string{"a": "b"}},
			Auth: &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "registry.example"}},
		&runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1.0"}},
		&runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1.0"}},
		&runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc", Linux: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1", Unified: map[string]string{"memory.high": "max"}}},
		&runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.0.0/24"}}},
	}
}

// TestEveryStringRefusesNUL: a NUL byte in any string, bytes field or map
// key of any request is refused (execve, paths and SQLite all end a string
// there, so a NUL would make crisp act on something else than was asked).
func TestEveryStringRefusesNUL(t *testing.T) {
	v := newTestValidator()
	n := 0
	for _, req := range requests() {
		if err := v.Request(req); err != nil {
			t.Fatalf("%T refused before any change: %v", req, err)
		}
		for _, l := range leaves(req.ProtoReflect(), string(req.ProtoReflect().Descriptor().Name())) {
			var bad protoreflect.Value
			switch l.kind {
			case protoreflect.StringKind:
				bad = protoreflect.ValueOfString(l.get().String() + "\x00")
			case protoreflect.BytesKind:
				bad = protoreflect.ValueOfBytes(append([]byte("x\x00"), l.get().Bytes()...))
			default:
				continue
			}
			old := l.get()
			l.set(bad)
			err := v.Request(req)
			l.set(old)
			n++
			if err == nil {
				t.Errorf("%s with a NUL byte accepted", l.path)
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d string fields tried; the fixtures lost fields", n)
	}
	t.Logf("%d string fields refuse a NUL byte", n)
}

// TestEveryEnumRefusesUnknownValues: an enum value the API does not define
// is refused wherever it appears, set or left at its default.
func TestEveryEnumRefusesUnknownValues(t *testing.T) {
	v := newTestValidator()
	n := 0
	for _, req := range requests() {
		for _, l := range enumLeaves(req.ProtoReflect(), string(req.ProtoReflect().Descriptor().Name())) {
			old := l.get()
			l.set(protoreflect.ValueOfEnum(99))
			err := v.Request(req)
			l.set(old)
			n++
			if err == nil {
				t.Errorf("%s = 99 accepted", l.path)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d enum fields tried", n)
	}
	t.Logf("%d enum fields refuse an unknown value", n)
}

// enumLeaves lists every enum field of the populated messages under m,
// unset ones too (proto3 enums always have a value).
func enumLeaves(m protoreflect.Message, path string) []leaf {
	var out []leaf
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if ignored[fd.FullName()] {
			continue
		}
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsMap() || fd.IsList() && fd.Kind() != protoreflect.MessageKind:
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := range l.Len() {
				out = append(out, enumLeaves(l.Get(j).Message(), fmt.Sprintf("%s[%d]", name, j))...)
			}
		case fd.Kind() == protoreflect.MessageKind:
			if m.Has(fd) {
				out = append(out, enumLeaves(m.Mutable(fd).Message(), name)...)
			}
		case fd.Kind() == protoreflect.EnumKind:
			if strings.HasPrefix(string(fd.FullName()), "runtime.v1.Windows") {
				continue
			}
			out = append(out, leaf{name, fd.Kind(), func() protoreflect.Value { return m.Get(fd) }, func(v protoreflect.Value) { m.Set(fd, v) }})
		}
	}
	return out
}

// TestEveryRequestTypeHasACase: the validator knows every request of the
// cri-api version crisp builds with, so a call added there is decided
// here, not waved through.
func TestEveryRequestTypeHasACase(t *testing.T) {
	v := newTestValidator()
	services := runtimeapi.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto.Services()
	n := 0
	for i := range services.Len() {
		methods := services.Get(i).Methods()
		for j := range methods.Len() {
			in := methods.Get(j).Input()
			mt, err := protoregistry.GlobalTypes.FindMessageByName(in.FullName())
			if err != nil {
				t.Fatal(err)
			}
			n++
			if err := v.check(mt.New().Interface()); err != nil && strings.Contains(err.Error(), errUnknownRequest.Error()) {
				t.Errorf("%s: no validation case for %s", methods.Get(j).FullName(), in.FullName())
			}
		}
	}
	if n < 40 {
		t.Errorf("found only %d methods", n)
	}
}
