package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/storage"
	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/registry"
)

// An image volume (KEP-4639) on runc and on gVisor: the image, pulled
// when absent, is in the container read-only, whole or at a sub path; a
// sub path missing from the image fails the create with InvalidArgument
// and leaves nothing; removing the container removes the volume's storage.
func TestImageVolumes(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	reg := registry.Start(t)
	reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	reg.Push(t, "crisp-test/tools:2.0", busybox(t)) // the volume's image, never pulled by the test
	image, tools := reg.Ref("crisp-test/busybox:1.0"), reg.Ref("crisp-test/tools:2.0")
	rt := d.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatal(err)
	}
	volume := func(dst, sub string) *runtimeapi.Mount {
		return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: tools}, ImageSubPath: sub, Readonly: true}
	}
	// Storage's container records, volatile ones included.
	records := func() string {
		var all []byte
		for _, root := range []string{d.StateDir, d.RunDir} {
			files, _ := filepath.Glob(filepath.Join(root, "storage", "overlay-containers", "*containers.json"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if string(b) != "[]" { // a file with no record yet, or none left
					all = append(all, b...)
				}
			}
		}
		return string(all)
	}

	for _, handler := range []string{"runc", "runsc"} {
		t.Run(handler, func(t *testing.T) {
			pc := podConfig("iv-" + handler)
			pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: handler})
			if err != nil {
				t.Fatalf("RunPodSandbox() = %v", err)
			}
			defer func() {
				rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
			}()
			before := records()

			bad := containerConfig("bad", image, "sleep", "600")
			bad.LogPath = ""
			bad.Mounts = []*runtimeapi.Mount{volume("/whole", ""), volume("/nope", "no/such/dir")}
			_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: bad, SandboxConfig: pc})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `mounts[1].image_sub_path "no/such/dir" does not exist`) {
				t.Errorf("CreateContainer(missing sub path) = %v, want InvalidArgument naming mounts[1].image_sub_path", err)
			}
			if after := records(); after != before {
				t.Errorf("storage records changed by a failed create:\nbefore %s\nafter  %s", before, after)
			}

			cc := containerConfig("main", image, "sleep", "600")
			cc.LogPath = ""
			cc.Mounts = []*runtimeapi.Mount{volume("/whole", ""), volume("/etc-only", "etc")}
			created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cc, SandboxConfig: pc})
			if err != nil {
				t.Fatalf("CreateContainer(image volumes) = %v", err)
			}
			id := created.ContainerId
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("StartContainer() = %v", err)
			}
			ex, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Timeout: 20, Cmd: []string{"sh", "-c",
				"head -1 /whole/etc/passwd; head -1 /etc-only/passwd; ls /whole/bin/busybox; touch /whole/x 2>/dev/null && echo WROTE; true"}})
			if err != nil {
				t.Fatalf("ExecSync() = %v", err)
			}
			out := string(ex.Stdout)
			if want := "root:x:0:0:root:/root:/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n/whole/bin/busybox\n"; out != want {
				t.Errorf("in the container: %q (stderr %q), want %q (and no write)", out, ex.Stderr, want)
			}
			st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			if err != nil || len(st.GetStatus().GetMounts()) != 2 || st.Status.Mounts[1].ImageSubPath != "etc" {
				t.Errorf("ContainerStatus().mounts = %v, %v; want both image volumes", st.GetStatus().GetMounts(), err)
			}
			vol := storage.ImageVolumeID(id, 1)
			if !strings.Contains(records(), vol) {
				t.Errorf("no storage record %s for the image volume", vol)
			}
			if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("RemoveContainer() = %v", err)
			}
			if all := records(); strings.Contains(all, vol) || strings.Contains(all, storage.ImageVolumeID(id, 0)) {
				t.Errorf("the image volumes' storage records outlived their container")
			}
		})
	}
}
