package images

import (
	"github.com/crisp-cri/crisp/test/harness"

	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const refName = "crisp-test/busybox:1.0"

// readLayout opens the OCI layout in dir and checks it holds exactly img
// under refName.
func readLayout(t *testing.T, dir string, img v1.Image) {
	t.Helper()
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read layout: %v", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := digest(t, img)
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want ||
		im.Manifests[0].Annotations[RefNameAnnotation] != refName {
		t.Fatalf("index.json: %+v, want one manifest %s named %s", im.Manifests, want, refName)
	}
	got, err := ii.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, got)
}

func TestWriteOCILayout(t *testing.T) {
	img := busybox(t)
	dir := t.TempDir()
	if err := WriteOCILayout(dir, img, refName); err != nil {
		t.Fatal(err)
	}
	readLayout(t, dir, img)
}

func TestWriteOCIArchive(t *testing.T) {
	img := busybox(t)
	path := filepath.Join(t.TempDir(), "busybox.oci.tar")
	if err := WriteOCIArchive(path, img, refName); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	untar(t, path, dir)
	readLayout(t, dir, img)
}

func TestWriteDockerArchive(t *testing.T) {
	img := busybox(t)
	path := filepath.Join(t.TempDir(), "busybox.docker.tar")
	if err := WriteDockerArchive(path, img, refName); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(refName)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("read docker archive: %v", err)
	}
	checkBlobs(t, got)
	// A docker archive stores no manifest; the one read back has Docker
	// media types and so another digest. Config and layers must match.
	wantM, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	gotM, err := got.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if gotM.Config.Digest != wantM.Config.Digest || len(gotM.Layers) != 1 ||
		gotM.Layers[0].Digest != wantM.Layers[0].Digest {
		t.Errorf("docker archive round trip: got %+v, want %+v", gotM, wantM)
	}
	t.Logf("docker archive manifest read back: %s %s", gotM.MediaType, digest(t, got))
}

// untar extracts the regular files and directories of the tar at path into dir.
func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("archive entry outside root: %q", h.Name)
		}
		dst := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(dst, data, 0o644)
			}
		default:
			t.Fatalf("unexpected entry %q type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// skopeoInspect runs `skopeo inspect ref` and decodes the fields used here.
func skopeoInspect(t *testing.T, ref string) (out struct {
	Digest       string
	Architecture string
	Layers       []string
}) {
	t.Helper()
	raw, err := exec.Command("skopeo", "inspect", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, raw)
	}
	return out
}

func TestSkopeoReadsArchives(t *testing.T) {
	harness.RequireTool(t, "skopeo")
	img := busybox(t)
	dir := t.TempDir()
	oci, docker := filepath.Join(dir, "oci.tar"), filepath.Join(dir, "docker.tar")
	if err := WriteOCIArchive(oci, img, refName); err != nil {
		t.Fatal(err)
	}
	if err := WriteDockerArchive(docker, img, refName); err != nil {
		t.Fatal(err)
	}

	want := digest(t, img).String()
	for _, ref := range []string{"oci-archive:" + oci, "oci-archive:" + oci + ":" + refName} {
		if got := skopeoInspect(t, ref); got.Digest != want {
			t.Errorf("%s: digest %s, want %s", ref, got.Digest, want)
		}
	}

	// skopeo presents docker-archive layers uncompressed: digests are diff IDs.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	got := skopeoInspect(t, "docker-archive:"+docker)
	if got.Architecture != cf.Architecture || !slices.Equal(got.Layers, diffIDs) {
		t.Errorf("docker-archive: %+v, want layers %v", got, diffIDs)
	}
}
