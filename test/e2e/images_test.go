package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

func busybox(t *testing.T) v1.Image {
	t.Helper()
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// crictlJSON runs crictl with -o json and decodes its output into v.
func crictlJSON(t *testing.T, d *harness.Daemon, v any, args ...string) {
	t.Helper()
	full := append([]string{args[0], "-o", "json"}, args[1:]...) // flags before arguments
	out, errOut, err := d.Crictl(full...)
	if err != nil {
		t.Fatalf("crictl %v: %v\n%s", args, err, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("crictl %v output: %v\n%s", args, err, out)
	}
}

type crictlImage struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Size        string   `json:"size"`
}

func crictlImages(t *testing.T, d *harness.Daemon) []crictlImage {
	t.Helper()
	var out struct {
		Images []crictlImage `json:"images"`
	}
	crictlJSON(t, d, &out, "images")
	return out.Images
}

// layerCount reads the store's own layer list: what a failed pull must not
// have grown.
func layerCount(t *testing.T, d *harness.Daemon) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.StateDir, "storage", "overlay-layers", "layers.json"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var layers []json.RawMessage
	if err := json.Unmarshal(b, &layers); err != nil {
		t.Fatal(err)
	}
	return len(layers)
}

func TestImagesWithCrictl(t *testing.T) {
	harness.RequireRoot(t)
	reg := registry.Start(t)
	manifest := reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	d := harness.Start(t)
	ref := reg.Ref("crisp-test/busybox:1.0")

	out, errOut, err := d.Crictl("pull", ref)
	if err != nil || !strings.Contains(out, "Image is up to date for sha256:") {
		t.Fatalf("crictl pull %s = %q, %q, %v", ref, out, errOut, err)
	}
	id := strings.TrimSpace(out[strings.Index(out, "sha256:"):])

	imgs := crictlImages(t, d)
	if len(imgs) != 1 || imgs[0].ID != id || len(imgs[0].RepoTags) != 1 || imgs[0].RepoTags[0] != ref ||
		len(imgs[0].RepoDigests) != 1 || imgs[0].RepoDigests[0] != reg.Ref("crisp-test/busybox@"+manifest) {
		t.Errorf("crictl images = %+v, want %s tagged %s with digest %s", imgs, id, ref, manifest)
	}
	table, _, _ := d.Crictl("images")
	if !strings.Contains(table, reg.Ref("crisp-test/busybox")) || !strings.Contains(table, "1.0") {
		t.Errorf("crictl images table does not list the image:\n%s", table)
	}

	var inspect struct {
		Status crictlImage    `json:"status"`
		Info   map[string]any `json:"info"`
	}
	crictlJSON(t, d, &inspect, "inspecti", ref)
	// crictl unfolds the verbose info JSON into the info object.
	cfg, _ := json.Marshal(inspect.Info["config"])
	layers, _ := inspect.Info["layers"].([]any)
	if inspect.Status.ID != id || !strings.Contains(string(cfg), `"Cmd":["sh"]`) || len(layers) != 1 || inspect.Info["pinned"] != false {
		t.Errorf("crictl inspecti = %+v, want %s with config (Cmd sh), 1 layer and pinned in its info", inspect, id)
	}

	// By digest: the same image, nothing new.
	out, _, err = d.Crictl("pull", reg.Ref("crisp-test/busybox@"+manifest))
	if err != nil || !strings.Contains(out, id) {
		t.Errorf("crictl pull by digest = %q, %v; want %s", out, err, id)
	}

	var fsinfo struct {
		Status struct {
			ImageFilesystems []struct {
				FsID       struct{ Mountpoint string } `json:"fsId"`
				UsedBytes  struct{ Value string }      `json:"usedBytes"`
				InodesUsed struct{ Value string }      `json:"inodesUsed"`
			} `json:"imageFilesystems"`
		} `json:"status"`
	}
	crictlJSON(t, d, &fsinfo, "imagefsinfo")
	fss := fsinfo.Status.ImageFilesystems
	if len(fss) != 1 || fss[0].FsID.Mountpoint != filepath.Join(d.StateDir, "storage") || len(fss[0].UsedBytes.Value) < 7 || fss[0].InodesUsed.Value == "0" {
		t.Errorf("crictl imagefsinfo = %+v, want the graph root with over 1 MB and some inodes", fss)
	}

	out, errOut, err = d.Crictl("rmi", ref)
	if err != nil {
		t.Errorf("crictl rmi = %q, %q, %v", out, errOut, err)
	}
	if imgs := crictlImages(t, d); len(imgs) != 0 {
		t.Errorf("crictl images after rmi = %+v, want none", imgs)
	}
	if n := layerCount(t, d); n != 0 {
		t.Errorf("layers after rmi = %d, want 0", n)
	}
}

func TestPullFailuresLeaveNothing(t *testing.T) {
	harness.RequireRoot(t)
	reg := registry.Start(t, registry.WithBasicAuth("crisp", "s3cret"))
	manifest := reg.Push(t, "private/busybox:1.0", busybox(t))
	d := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := d.Images()
	good := &runtimeapi.AuthConfig{Username: "crisp", Password: "s3cret"}

	tests := []struct {
		name, ref string
		auth      *runtimeapi.AuthConfig
		code      codes.Code
	}{
		{"wrong password", reg.Ref("private/busybox:1.0"), &runtimeapi.AuthConfig{Username: "crisp", Password: "nope"}, codes.Unauthenticated},
		{"no credentials", reg.Ref("private/busybox:1.0"), nil, codes.Unauthenticated},
		{"missing image", reg.Ref("private/busybox:2.0"), good, codes.NotFound},
		{"malformed reference", "Not A Reference!", nil, codes.InvalidArgument},
		{"empty reference", "", nil, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.ref}, Auth: tt.auth})
			if status.Code(err) != tt.code || (tt.ref != "" && !strings.Contains(err.Error(), strings.TrimSpace(tt.ref))) {
				t.Errorf("PullImage(%q) = %v, want %v naming the reference", tt.ref, err, tt.code)
			}
			if list, _ := rt.ListImages(ctx, &runtimeapi.ListImagesRequest{}); len(list.GetImages()) != 0 {
				t.Errorf("images after failed pull: %v", list.GetImages())
			}
			if n := layerCount(t, d); n != 0 {
				t.Errorf("layers after failed pull: %d, want 0", n)
			}
		})
	}

	// Credentials as kubelet sends them from a pull secret: base64 user:password.
	resp, err := rt.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("private/busybox@" + manifest)},
		Auth: &runtimeapi.AuthConfig{Auth: "Y3Jpc3A6czNjcmV0"}})
	if err != nil {
		t.Fatalf("PullImage(digest, auth) = %v", err)
	}
	st, err := rt.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: resp.ImageRef}})
	if err != nil || st.Image == nil || st.Image.RepoDigests[0] != reg.Ref("private/busybox@"+manifest) {
		t.Errorf("ImageStatus(%s) = %v, %v", resp.ImageRef, st, err)
	}
	if st, err := rt.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "example.com/none:1"}}); err != nil || st.Image != nil {
		t.Errorf("ImageStatus(unknown) = %v, %v; want an empty answer", st, err)
	}
}

// A pull that runs past its deadline is cancelled and leaves nothing.
func TestPullDeadlineLeavesNothing(t *testing.T) {
	harness.RequireRoot(t)
	reg := registry.Start(t, registry.WithLatency(5*time.Second))
	reg.Push(t, "crisp-test/busybox:slow", busybox(t))
	d := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("crisp-test/busybox:slow")}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("PullImage past deadline = %v, want DeadlineExceeded", err)
	}
	// The daemon cancels its download once no caller waits; give it a moment.
	deadline := time.Now().Add(15 * time.Second)
	for layerCount(t, d) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := layerCount(t, d); n != 0 {
		t.Errorf("layers after cancelled pull: %d, want 0", n)
	}
	if imgs := crictlImages(t, d); len(imgs) != 0 {
		t.Errorf("images after cancelled pull: %+v", imgs)
	}
}

// Eight concurrent pulls of one image are one download.
func TestConcurrentPullsAreOneDownload(t *testing.T) {
	harness.RequireRoot(t)
	// Blob downloads start 2 s late, so all eight calls (sent at once) are
	// in crispd before the first download could finish.
	reg := registry.Start(t, registry.WithLatency(2*time.Second))
	img, err := images.WithPayload(busybox(t), 2<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "crisp-test/big:1", img)
	reg.ResetCounts()
	d := harness.Start(t)
	rt := d.Images()
	var wg sync.WaitGroup
	refs := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := rt.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("crisp-test/big:1")}})
			refs[i], errs[i] = resp.GetImageRef(), err
		})
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || refs[i] != refs[0] {
			t.Errorf("pull %d = %q, %v; want %q", i, refs[i], errs[i], refs[0])
		}
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		dg, _ := l.Digest()
		if n := reg.BlobGets(dg.String()); n != 1 {
			t.Errorf("blob %s downloaded %d times by 8 concurrent pulls, want 1", dg, n)
		}
	}
	t.Logf("8 concurrent pulls: %d blob GETs for %d layers", reg.TotalBlobGets(), len(layers))
}

// crispctl image load on an air-gapped node; images survive a restart and
// a clean stop leaves no mount behind.
func TestImageLoadAndRestart(t *testing.T) {
	harness.RequireRoot(t)
	d := harness.Start(t)
	img := busybox(t)
	manifest, _ := img.Digest()
	archive := filepath.Join(d.Dir, "busybox.oci.tar")
	if err := images.WriteOCIArchive(archive, img, "localhost/crisp-test/loaded:1.0"); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := d.Crispctl("image", "load", archive)
	if err != nil || !strings.Contains(out, "localhost/crisp-test/loaded:1.0") {
		t.Fatalf("crispctl image load = %q, %q, %v", out, errOut, err)
	}
	check := func(when string) {
		imgs := crictlImages(t, d)
		if len(imgs) != 1 || imgs[0].RepoTags[0] != "localhost/crisp-test/loaded:1.0" ||
			imgs[0].RepoDigests[0] != "localhost/crisp-test/loaded@"+manifest.String() {
			t.Errorf("%s: crictl images = %+v, want loaded:1.0 with digest %s", when, imgs, manifest)
		}
	}
	check("after load")
	if out, _, err := d.Crispctl("image", "ls"); err != nil || !strings.Contains(out, "localhost/crisp-test/loaded:1.0") {
		t.Errorf("crispctl image ls = %q, %v", out, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, d.Dir); len(m) != 0 {
		t.Errorf("mounts left after a clean stop: %v", m)
	}
	d.Restart()
	check("after restart")
}

// mountsUnder lists mount points below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, m := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(m, dir) {
			ms = append(ms, m)
		}
	}
	return ms
}
