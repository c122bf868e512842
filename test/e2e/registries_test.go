package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/registry"
)

// registries.conf through CONTAINERS_REGISTRIES_CONF: a mirror, docker.io
// remapped to loopback, a blocked registry, and unqualified-search
// registries for short names. Nothing here can leave the machine: a mirror
// falls back to its primary when it fails, so the mirrored primary is a
// closed loopback port; docker.io is remapped (prefix → location), which has
// no fallback; a blocked registry is refused before any connection.
func TestRegistriesConf(t *testing.T) {
	harness.RequireRoot(t)
	reg := registry.Start(t)
	reg.Push(t, "library/busybox:1.0", busybox(t))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	body := fmt.Sprintf(`unqualified-search-registries = [%[1]q]

[[registry]]
location = "127.0.0.1:1"
[[registry.mirror]]
location = %[1]q
insecure = true

[[registry]]
prefix = "docker.io"
location = %[1]q
insecure = true

[[registry]]
location = "blocked.example"
blocked = true
`, reg.Addr())
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d := harness.Start(t, harness.WithEnv("CONTAINERS_REGISTRIES_CONF="+conf))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pull := func(ref string) (*runtimeapi.PullImageResponse, error) {
		return d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	}

	mirrored, err := pull("127.0.0.1:1/library/busybox:1.0")
	if err != nil {
		t.Fatalf("pull through the mirror = %v", err)
	}
	if n := reg.ManifestGets("1.0"); n == 0 {
		t.Errorf("the mirror served no manifest for 1.0")
	}
	resp, err := pull("docker.io/library/busybox:1.0")
	if err != nil || resp.ImageRef != mirrored.ImageRef {
		t.Fatalf("pull of docker.io remapped to loopback = %v, %v; want %s", resp, err, mirrored.ImageRef)
	}
	list, err := d.Images().ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.0"}}})
	if err != nil || len(list.Images) != 1 || list.Images[0].Id != resp.ImageRef || !slices.Contains(list.Images[0].RepoTags, "docker.io/library/busybox:1.0") {
		t.Errorf("ListImages(filter docker.io/library/busybox:1.0) = %v, %v; want the image under its docker.io name", list, err)
	}

	if _, err := pull("blocked.example/app:1"); status.Code(err) == codes.OK || !strings.Contains(err.Error(), "blocked") {
		t.Errorf("pull from a blocked registry = %v, want a refusal saying blocked", err)
	}

	short, err := pull("library/busybox:1.0")
	if err != nil || short.ImageRef != resp.ImageRef {
		t.Errorf("pull of a short name through unqualified-search-registries = %v, %v; want %s", short, err, resp.ImageRef)
	}
}
