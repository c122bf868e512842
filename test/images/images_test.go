package images

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func busybox(t *testing.T) v1.Image {
	t.Helper()
	img, err := Busybox()
	if err != nil {
		t.Fatalf("Busybox: %v", err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

// layerFiles reads the uncompressed tar of l into name -> header (and body).
func layerFiles(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, bodies := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, bodies
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		if bodies[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBusyboxDeterministic(t *testing.T) {
	a, b := busybox(t), busybox(t)
	if da, db := digest(t, a), digest(t, b); da != db {
		t.Fatalf("two builds differ: %s vs %s", da, db)
	}
	t.Logf("Busybox() digest %s", digest(t, a))
	checkBlobs(t, a)

	m, err := a.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types: manifest %s config %s", m.MediaType, m.Config.MediaType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("layers: %+v", m.Layers)
	}

	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture == "" || !cf.Created.Time.Equal(Epoch) {
		t.Errorf("platform/created: %s/%s %v", cf.OS, cf.Architecture, cf.Created)
	}
	if strings.Join(c.Cmd, " ") != "sh" || c.WorkingDir != "/" || len(c.Env) != 1 || c.Env[0] != DefaultPath {
		t.Errorf("config: %+v", c)
	}
}

func TestBusyboxLayer(t *testing.T) {
	layers, err := busybox(t).Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, bodies := layerFiles(t, layers[0])

	for _, a := range append([]string{"sh"}, BusyboxApplets...) {
		h := hdrs["bin/"+a]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s: want symlink to busybox, got %+v", a, h)
		}
	}
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if h := hdrs["bin/busybox"]; h == nil || h.Mode != 0o755 || !bytes.Equal(bodies["bin/busybox"], bin) {
		t.Errorf("bin/busybox: %+v", h)
	}
	if h := hdrs["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
	for _, d := range []string{"etc/", "proc/", "sys/", "dev/", "root/", "var/"} {
		if h := hdrs[d]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("%s: want directory, got %+v", d, h)
		}
	}
	if !strings.HasPrefix(string(bodies["etc/passwd"]), "root:x:0:0:root:/root:/bin/sh\n") {
		t.Errorf("etc/passwd: %q", bodies["etc/passwd"])
	}
	if !strings.Contains(string(bodies["etc/group"]), "root:x:0:") {
		t.Errorf("etc/group: %q", bodies["etc/group"])
	}
	for n, h := range hdrs {
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v", n, h.Uid, h.Gid, h.ModTime)
		}
	}
}

func TestWithPayload(t *testing.T) {
	const size = 5 << 20
	base := busybox(t)
	img, err := WithPayload(base, size, 42)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	hdrs, bodies := layerFiles(t, layers[1])
	if h := hdrs["payload.bin"]; len(hdrs) != 1 || h == nil || h.Size != size || len(bodies["payload.bin"]) != size {
		t.Fatalf("payload layer: %v", hdrs)
	}
	compressed, err := layers[1].Size()
	if err != nil {
		t.Fatal(err)
	}
	if compressed < size {
		t.Errorf("payload compressed to %d bytes < %d: not incompressible", compressed, size)
	}
	t.Logf("payload image %s, layer %d bytes compressed", digest(t, img), compressed)

	again, err := WithPayload(base, size, 42)
	if err != nil {
		t.Fatal(err)
	}
	other, err := WithPayload(base, size, 43)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, again) != digest(t, img) || digest(t, other) == digest(t, img) {
		t.Error("payload digest must depend on the seed only")
	}
}

func TestWithConfig(t *testing.T) {
	base := busybox(t)
	img, err := WithConfig(base, func(c *v1.Config) {
		c.Entrypoint = []string{"/bin/sleep"}
		c.Cmd = []string{"3600"}
		c.User = "65534"
		c.StopSignal = "SIGINT"
		c.Labels = map[string]string{"crisp": "test"}
	})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.Entrypoint[0] != "/bin/sleep" || c.Cmd[0] != "3600" || c.User != "65534" ||
		c.StopSignal != "SIGINT" || c.Labels["crisp"] != "test" || c.WorkingDir != "/" {
		t.Errorf("config: %+v", c)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types lost: %s %s", m.MediaType, m.Config.MediaType)
	}
	bcf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if bcf.Config.User != "" || len(bcf.Config.Entrypoint) != 0 {
		t.Errorf("base modified: %+v", bcf.Config)
	}
}

// checkBlobs reads every layer of img and checks its digest, size and diff
// ID against the manifest and config.
func checkBlobs(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(cf.RootFS.DiffIDs) {
		t.Fatalf("%d layers but %d diff IDs", len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	for i, desc := range m.Layers {
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		d, n := hashOf(t, l.Compressed)
		if d != desc.Digest || n != desc.Size {
			t.Errorf("layer %d: blob %s/%d bytes, manifest says %s/%d", i, d, n, desc.Digest, desc.Size)
		}
		if diffID, _ := hashOf(t, l.Uncompressed); diffID != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff ID %s, config says %s", i, diffID, cf.RootFS.DiffIDs[i])
		}
	}
}

func hashOf(t *testing.T, open func() (io.ReadCloser, error)) (v1.Hash, int64) {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, n, err := v1.SHA256(rc)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}
