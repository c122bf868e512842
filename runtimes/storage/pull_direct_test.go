package storage

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	cstorage "go.podman.io/storage"

	"github.com/crisp-cri/crisp/test/harness"
	"github.com/crisp-cri/crisp/test/registry"
)

// The direct pull (overlay) and go.podman.io/image's copy (vfs has no
// staged layers, so it takes the copy) write the same records: the same
// image ID, layer ID and digests, and the big data the image readers use.
func TestDirectPullRecords(t *testing.T) {
	ctx := context.Background()
	reg := registry.Start(t)
	img := busybox(t)
	manifestDigest := reg.Push(t, "crisp-test/busybox:1.0", img)
	ref := reg.Ref("crisp-test/busybox:1.0")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	blobDigest, _ := layers[0].Digest()
	diffID, _ := layers[0].DiffID()
	configDigest, _ := img.ConfigName()

	type record struct {
		image, layer     string
		blob, diff       string
		size             int64
		bigData          []string
		manifestDigests  []string
		layerFromDiffIDs int
	}
	read := func(t *testing.T, s *Store) record {
		t.Helper()
		pulled, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatalf("Pull = %v", err)
		}
		stored, err := s.store.Image(pulled.ID)
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.store.Layer(stored.TopLayer)
		if err != nil {
			t.Fatal(err)
		}
		byDiff, _ := s.store.LayersByUncompressedDigest(l.UncompressedDigest)
		keys := slices.Clone(stored.BigDataNames)
		slices.Sort(keys)
		var digests []string
		for _, d := range stored.Digests {
			digests = append(digests, d.String())
		}
		return record{image: stored.ID, layer: l.ID, blob: l.CompressedDigest.String(), diff: l.UncompressedDigest.String(),
			size: l.UncompressedSize, bigData: keys, manifestDigests: digests, layerFromDiffIDs: len(byDiff)}
	}

	direct := openStore(t, Config{})
	got := read(t, direct)
	want := record{
		image: configDigest.Hex, layer: diffID.Hex, blob: blobDigest.String(), diff: diffID.String(), size: got.size,
		bigData:         []string{cstorage.ImageDigestBigDataKey, "manifest-" + manifestDigest, configDigest.String()},
		manifestDigests: []string{manifestDigest}, layerFromDiffIDs: 1,
	}
	slices.Sort(want.bigData)
	if got.size <= 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("direct pull recorded\n %+v\nwant\n %+v", got, want)
	}
	// Nothing is left in c/storage's staging area.
	if left, _ := os.ReadDir(filepath.Join(direct.cfg.GraphRoot, "overlay", "staging")); len(left) != 0 {
		t.Errorf("staging dirs left after the pull: %v", left)
	}

	copied := read(t, openStore(t, Config{Driver: "vfs"}))
	if !reflect.DeepEqual(copied, got) {
		t.Errorf("go.podman.io/image's copy recorded\n %+v\nthe direct pull\n %+v", copied, got)
	}
}

// A layer that does not match the config's diff ID is refused, and the
// pull leaves no layer, no image and no staging directory.
func TestDirectPullChecksDiffIDs(t *testing.T) {
	ctx := context.Background()
	reg := registry.Start(t)
	img := busybox(t)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "crisp-test/bad:1.0", bad)
	s := openStore(t, Config{})

	_, err = s.Pull(ctx, reg.Ref("crisp-test/bad:1.0"), nil)
	if err == nil || !strings.Contains(err.Error(), "uncompressed layer digest is") || !strings.Contains(err.Error(), "crisp-test/bad:1.0") {
		t.Fatalf("Pull(wrong diff ID) = %v; want an error naming the image and the digest mismatch", err)
	}
	if n := layerCount(t, s); n != 0 {
		t.Errorf("layers after the refused pull: %d, want 0", n)
	}
	if imgs, _ := s.List(ctx); len(imgs) != 0 {
		t.Errorf("images after the refused pull: %d, want 0", len(imgs))
	}
	if left, _ := os.ReadDir(filepath.Join(s.cfg.GraphRoot, "overlay", "staging")); len(left) != 0 {
		t.Errorf("staging dirs left after the refused pull: %v", left)
	}
}

// A direct pull killed midway leaves a staging directory; the next Open
// removes it, but not one whose lock a live process holds.
func TestOpenPrunesLeftoverStaging(t *testing.T) {
	harness.RequireRoot(t)
	dir := t.TempDir()
	cfg := Config{GraphRoot: filepath.Join(dir, "graph"), RunRoot: filepath.Join(dir, "run")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Open(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(cfg.GraphRoot, "overlay", "staging")
	for _, d := range []string{"dead", "nolock", "held"} {
		if err := os.MkdirAll(filepath.Join(staging, d, "dir", "etc"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(staging, "dead", "staging.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(os.Args[0])
	holder.Env = append(os.Environ(), holdLockEnv+"="+filepath.Join(staging, "held", "staging.lock"))
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	release := func() { stdin.Close(); _ = holder.Wait() } // a second Wait only errs
	defer release()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("lock holder said %q, %v", line, err)
	}

	s, err = Open(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	// Release the lock before the store's shutdown, which unmounts the
	// driver's home only when no staging directory is left.
	defer s.Shutdown()
	defer release()
	var left []string
	entries, _ := os.ReadDir(staging)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"held"}) {
		t.Errorf("staging after Open: %v, want only the held one", left)
	}
}
