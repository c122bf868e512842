package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/images"
	"github.com/crisp-cri/crisp/test/registry"
)

// openStore opens a real overlay store in a temp dir (root needed).
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	harness.RequireRoot(t)
	dir := t.TempDir()
	cfg.GraphRoot, cfg.RunRoot = filepath.Join(dir, "graph"), filepath.Join(dir, "run")
	s, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	return s
}

func busybox(t testing.TB) v1.Image {
	t.Helper()
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerCount(t *testing.T, s *Store) int {
	t.Helper()
	ls, err := s.store.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return len(ls)
}

func TestPullStatusRemove(t *testing.T) {
	ctx := context.Background()
	reg := registry.Start(t)
	digest := reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	s := openStore(t, Config{})

	img, err := s.Pull(ctx, reg.Ref("crisp-test/busybox:1.0"), nil)
	if err != nil {
		t.Fatalf("Pull(tag) = %v", err)
	}
	wantTag := reg.Ref("crisp-test/busybox:1.0")
	wantDigest := reg.Ref("crisp-test/busybox@" + digest)
	if len(img.RepoTags) != 1 || img.RepoTags[0] != wantTag || len(img.RepoDigests) != 1 || img.RepoDigests[0] != wantDigest {
		t.Errorf("pulled image tags %v digests %v, want [%s] [%s]", img.RepoTags, img.RepoDigests, wantTag, wantDigest)
	}
	if img.Size == 0 || img.Config == nil || len(img.Config.Config.Cmd) == 0 || len(img.Layers) != 1 {
		t.Errorf("pulled image = size %d config %v layers %v; want a size, a config with Cmd, one layer", img.Size, img.Config, img.Layers)
	}
	// The same image by digest, by id, by short id and by sha256:id.
	for _, ref := range []string{wantDigest, img.ID, img.ID[:12], "sha256:" + img.ID} {
		got, err := s.Status(ctx, ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Status(%s) = %s, %v; want %s", ref, got.ID, err, img.ID)
		}
	}
	// Pull by digest adds no layer and no image.
	layers := layerCount(t, s)
	if byDigest, err := s.Pull(ctx, wantDigest, nil); err != nil || byDigest.ID != img.ID {
		t.Errorf("Pull(digest) = %s, %v; want %s", byDigest.ID, err, img.ID)
	}
	if n := layerCount(t, s); n != layers {
		t.Errorf("layers after pull by digest = %d, want %d", n, layers)
	}

	// A container using the image keeps it.
	ctr, err := s.store.CreateContainer("", nil, img.ID, "", "{}", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, img.ID); !errors.Is(err, ErrImageInUse) {
		t.Errorf("Remove(in use) = %v, want ErrImageInUse", err)
	}
	if err := s.store.DeleteContainer(ctr.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, wantTag); err != nil {
		t.Fatalf("Remove(tag) = %v", err)
	}
	if _, err := s.Status(ctx, img.ID); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("Status after Remove = %v, want ErrImageNotFound", err)
	}
	if err := s.Remove(ctx, wantTag); err != nil {
		t.Errorf("Remove(gone) = %v, want nil (idempotent)", err)
	}
	if n := layerCount(t, s); n != 0 {
		t.Errorf("layers after removing the only image = %d, want 0", n)
	}
}

func TestPullErrors(t *testing.T) {
	ctx := context.Background()
	reg := registry.Start(t, registry.WithBasicAuth("crisp", "s3cret"))
	reg.Push(t, "private/busybox:1.0", busybox(t))
	s := openStore(t, Config{})
	ref := reg.Ref("private/busybox:1.0")

	tests := []struct {
		name string
		ref  string
		auth *Auth
		want error
	}{
		{"no credentials", ref, nil, ErrUnauthorized},
		{"wrong password", ref, &Auth{Username: "crisp", Password: "wrong"}, ErrUnauthorized},
		{"missing tag", reg.Ref("private/busybox:nope"), &Auth{Username: "crisp", Password: "s3cret"}, ErrImageNotFound},
		{"missing repository", reg.Ref("private/nothing:1.0"), &Auth{Username: "crisp", Password: "s3cret"}, ErrImageNotFound},
		{"malformed", "UPPER/Case::x", nil, ErrInvalidReference},
		{"short name, no search registries", "busybox", nil, ErrInvalidReference},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Pull(ctx, tt.ref, tt.auth)
			if !errors.Is(err, tt.want) {
				t.Errorf("Pull(%s) = %v, want %v", tt.ref, err, tt.want)
			}
			if imgs, _ := s.List(ctx); len(imgs) != 0 {
				t.Errorf("images after failed pull: %d, want 0", len(imgs))
			}
			if n := layerCount(t, s); n != 0 {
				t.Errorf("layers after failed pull: %d, want 0", n)
			}
		})
	}
	if _, err := s.Pull(ctx, ref, &Auth{Username: "crisp", Password: "s3cret"}); err != nil {
		t.Errorf("Pull(right password) = %v", err)
	}
}

func TestShortNameResolution(t *testing.T) {
	reg := registry.Start(t)
	reg.Push(t, "busybox:latest", busybox(t))
	s := openStore(t, Config{UnqualifiedSearch: []string{"127.0.0.1:1", reg.Addr()}})
	img, err := s.Pull(context.Background(), "busybox", nil)
	if err != nil {
		t.Fatalf("Pull(busybox) = %v", err)
	}
	if want := reg.Ref("busybox:latest"); len(img.RepoTags) != 1 || img.RepoTags[0] != want {
		t.Errorf("tags = %v, want [%s]", img.RepoTags, want)
	}
	if got, err := s.Status(context.Background(), "busybox"); err != nil || got.ID != img.ID {
		t.Errorf("Status(busybox) = %s, %v", got.ID, err)
	}
}

// Eight pulls of one image at once download each blob once.
func TestConcurrentPullsCoalesce(t *testing.T) {
	gate := make(chan struct{})
	reg := registry.Start(t, registry.WithBlobGate(gate))
	big, err := images.WithPayload(busybox(t), 1<<20, 7)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "crisp-test/big:1", big)
	reg.ResetCounts()
	s := openStore(t, Config{})
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			img, err := s.Pull(context.Background(), reg.Ref("crisp-test/big:1"), nil)
			ids[i], errs[i] = img.ID, err
		})
	}
	// Release the registry only once all eight callers wait on one download.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		waiting := 0
		for _, f := range s.pulls {
			waiting += f.waiters
		}
		s.mu.Unlock()
		if waiting == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting after 30s, want 8", waiting)
		}
	}
	close(gate)
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("pull %d = %s, %v; want %s", i, ids[i], errs[i], ids[0])
		}
	}
	layers, _ := big.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if n := reg.BlobGets(d.String()); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
}

// A pull cut off by its deadline leaves nothing behind.
func TestPullDeadline(t *testing.T) {
	reg := registry.Start(t, registry.WithLatency(3*time.Second))
	reg.Push(t, "crisp-test/busybox:slow", busybox(t))
	s := openStore(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := s.Pull(ctx, reg.Ref("crisp-test/busybox:slow"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull past deadline = %v, want DeadlineExceeded", err)
	}
	s.wg.Wait() // the shared download is cancelled too: wait for it to wind down
	if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
		t.Errorf("images after cancelled pull: %d, want 0", len(imgs))
	}
	if n := layerCount(t, s); n != 0 {
		t.Errorf("layers after cancelled pull: %d, want 0", n)
	}
}

func TestLoadArchives(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{})
	img := busybox(t)
	manifest, _ := img.Digest()
	dir := t.TempDir()
	layout, ociTar, dockerTar := filepath.Join(dir, "layout"), filepath.Join(dir, "bb.oci.tar"), filepath.Join(dir, "bb.docker.tar")
	if err := images.WriteOCILayout(layout, img, "localhost/crisp/layout:1"); err != nil {
		t.Fatal(err)
	}
	if err := images.WriteOCIArchive(ociTar, img, "localhost/crisp/archive:1"); err != nil {
		t.Fatal(err)
	}
	if err := images.WriteDockerArchive(dockerTar, img, "localhost/crisp/docker:1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, tag, want string }{
		{layout, "", "localhost/crisp/layout:1"},
		{ociTar, "", "localhost/crisp/archive:1"},
		{dockerTar, "", "localhost/crisp/docker:1"},
		{ociTar, "example.com/renamed:2", "example.com/renamed:2"},
	}
	for _, tt := range tests {
		got, err := s.Load(ctx, tt.path, tt.tag)
		if err != nil {
			t.Errorf("Load(%s, %q) = %v", tt.path, tt.tag, err)
			continue
		}
		if len(got) != 1 || !contains(got[0].RepoTags, tt.want) {
			t.Errorf("Load(%s, %q) tags = %v, want %s", tt.path, tt.tag, got, tt.want)
		}
		if tt.path != dockerTar && got[0].Digest != manifest.String() {
			t.Errorf("Load(%s) digest = %s, want %s", tt.path, got[0].Digest, manifest)
		}
	}
	if _, err := s.Load(ctx, filepath.Join(dir, "missing.tar"), ""); err == nil {
		t.Errorf("Load(missing file) = nil error")
	}
	if err := images.WriteOCIArchive(filepath.Join(dir, "tagonly.tar"), img, "1.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, filepath.Join(dir, "tagonly.tar"), ""); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Load(archive naming only a tag) = %v, want ErrInvalidReference asking for a tag", err)
	}
}

func TestUsage(t *testing.T) {
	reg := registry.Start(t)
	reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	s := openStore(t, Config{})
	before, err := s.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Usage(context.Background()); err != nil || again != before || walks(s) != 1 {
		t.Errorf("Usage again = %+v, %v after %d walks; want the cached %+v from 1 walk", again, err, walks(s), before)
	}
	if _, err := s.Pull(context.Background(), reg.Ref("crisp-test/busybox:1.0"), nil); err != nil {
		t.Fatal(err)
	}
	// The pull has the background loop measure again.
	after := waitUsageAfter(t, s, before.At)
	// The busybox binary alone is about 2 MB unpacked.
	if after.Bytes < before.Bytes+1<<20 || after.Inodes <= before.Inodes || after.Mountpoint != s.GraphRoot() {
		t.Errorf("Usage before %+v after %+v: want >1 MiB and more inodes after the pull", before, after)
	}
}

func TestContainerRecords(t *testing.T) {
	reg := registry.Start(t)
	reg.Push(t, "crisp-test/busybox:1.0", busybox(t))
	s := openStore(t, Config{})
	img, err := s.Pull(context.Background(), reg.Ref("crisp-test/busybox:1.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := "c0ffee" + img.ID[6:]
	rfs, err := s.CreateContainer(id, img.ID, Metadata{Kind: "container", SandboxID: "pod1", Name: "k8s_app_pod1", Attempt: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rfs.Mount, "bin", "busybox")); err != nil {
		t.Errorf("rootfs %s lacks bin/busybox: %v", rfs.Mount, err)
	}
	// Someone else's record in the same store is not crisp's.
	if _, err := s.store.CreateContainer("", nil, img.ID, "", `{"owner":"podman"}`, nil); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Records()
	if err != nil || len(recs) != 1 || recs[0].ID != id || recs[0].Meta.SandboxID != "pod1" || recs[0].Meta.Attempt != 2 {
		t.Errorf("Records() = %+v, %v; want only crisp's record with its metadata", recs, err)
	}
	if err := s.Remove(context.Background(), img.ID); !errors.Is(err, ErrImageInUse) {
		t.Errorf("Remove(image of a container) = %v, want ErrImageInUse", err)
	}
	if err := s.RemoveContainer(id); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveContainer(id); err != nil {
		t.Errorf("RemoveContainer twice = %v, want nil", err)
	}
	if _, err := s.ContainerRootfs(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("ContainerRootfs(removed) = %v, want ErrNotFound", err)
	}
}

// walks is how many times the store has been walked.
func walks(s *Store) uint64 {
	s.usage.walking.Lock()
	defer s.usage.walking.Unlock()
	return s.usage.walks
}

// waitUsageAfter waits for a usage figure measured after t.
func waitUsageAfter(t *testing.T, s *Store, after time.Time) FsUsage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, err := s.Usage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if u.At.After(after) {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage still measured at %v, want a measurement after %v", u.At, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
