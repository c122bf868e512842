package cri

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/storage"
)

func imageVolume(dst, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: testImage.RepoTags[0]}, ImageSubPath: sub}
}

func mountAt(spec *specs.Spec, dst string) (specs.Mount, bool) {
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == dst })
	if i < 0 {
		return specs.Mount{}, false
	}
	return spec.Mounts[i], true
}

// An image volume is the image mounted as a record of its own, owned by
// the container, bound read-only at its sub path, which cannot lead out of
// the image; removing the container removes it.
func TestImageVolumes(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	cfg := ctrConfig("app")
	cfg.Mounts = []*runtimeapi.Mount{imageVolume("/whole", ""), imageVolume("/etc-only", "etc"), imageVolume("/up", "up/etc")}
	id := n.createCtr(t, podID, podCfg, cfg)

	spec, err := n.files.Container(id).ReadSpec()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]struct{ dst, sub string }{0: {"/whole", ""}, 1: {"/etc-only", "etc"}, 2: {"/up", "etc"}} {
		root := filepath.Join(n.images.root, storage.ImageVolumeID(id, i), "merged")
		m, ok := mountAt(spec, want.dst)
		if !ok {
			t.Errorf("no mount at %s in %v", want.dst, spec.Mounts)
			continue
		}
		if m.Source != filepath.Join(root, want.sub) || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rw") {
			t.Errorf("mount at %s = %+v, want %s read-only", want.dst, m, filepath.Join(root, want.sub))
		}
		if n.images.imageOf[storage.ImageVolumeID(id, i)] != testImage.ID {
			t.Errorf("image volume %d has no record of the image", i)
		}
	}
	if _, err := n.srv.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, ok := n.images.rootfs[storage.ImageVolumeID(id, i)]; ok {
			t.Errorf("image volume %d of the removed container is still there", i)
		}
	}
}

// A sub path missing from the image, or an image that cannot be pulled,
// fails the create and leaves nothing, volumes made before it included.
func TestImageVolumeFailuresLeaveNothing(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	podCfg := n.podConfig("web")
	podID := n.runPod(t, podCfg, "")
	before := n.state(t)
	tests := []struct {
		name   string
		mounts []*runtimeapi.Mount
		code   codes.Code
		msg    string
	}{
		{"missing sub path", []*runtimeapi.Mount{imageVolume("/a", ""), imageVolume("/b", "nope")},
			codes.InvalidArgument, `mounts[1].image_sub_path "nope" does not exist in image`},
		{"image nowhere", []*runtimeapi.Mount{imageVolume("/a", ""),
			{ContainerPath: "/b", Image: &runtimeapi.ImageSpec{Image: "registry.example/none:1"}}},
			codes.NotFound, "mounts[1]: image volume registry.example/none:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ctrConfig("app")
			cfg.Mounts = tt.mounts
			_, err := n.srv.CreateContainer(ctx, createReq(podID, podCfg, cfg))
			if codeOfErr(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("CreateContainer() = %v, want %v with %q", err, tt.code, tt.msg)
			}
			n.assertState(t, before, "after a failed create with image volumes")
		})
	}
}
