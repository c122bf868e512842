// Package images builds small OCI images offline and deterministically for
// crisp's image tests, and writes them in the formats air-gapped imports use
// (OCI layout, oci-archive, docker-archive).
//
// Every timestamp is fixed (Epoch) and every tar entry is owned by 0:0, so
// the same inputs always give the same digests.
package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the fixed time used for every tar entry, history entry and the
// image config's created field.
var Epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// BusyboxPath is the host's static busybox (Debian package busybox-static).
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH set in the environment of every image built here.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxApplets are the names linked to busybox under /bin in Busybox().
var BusyboxApplets = []string{
	"sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "id", "ps",
	"top", "wget", "nc", "ip", "ping", "mkdir", "touch", "hostname", "head",
	"tail", "grep", "dd", "df", "date", "kill", "test", "[", "chmod", "rm",
	"mount", "stat",
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\n" +
		"nogroup:x:65534:\n"
)

// Scratch returns an image with no layers, OCI manifest and config media
// types, and a config for linux on the host architecture with the default
// PATH, working directory "/" and the fixed creation time.
func Scratch() (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: Epoch}
	cf.Config.Env = []string{DefaultPath}
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// Busybox returns a one-layer image holding the host's static busybox with
// the applets in BusyboxApplets linked under /bin, the usual top-level
// directories, a minimal /etc/passwd and /etc/group, and Cmd ["sh"].
func Busybox() (v1.Image, error) {
	bin, err := readStatic(BusyboxPath)
	if err != nil {
		return nil, err
	}
	entries := []tar.Header{
		dir("bin/", 0o755), dir("dev/", 0o755), dir("etc/", 0o755),
		dir("proc/", 0o555), dir("root/", 0o700), dir("sys/", 0o555),
		dir("tmp/", 0o1777), dir("var/", 0o755),
	}
	files := map[string][]byte{
		"bin/busybox": bin,
		"etc/passwd":  []byte(passwd),
		"etc/group":   []byte(group),
	}
	entries = append(entries, file("bin/busybox", 0o755, len(bin)))
	for _, a := range BusyboxApplets {
		entries = append(entries, tar.Header{
			Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox",
			Mode: 0o777, ModTime: Epoch,
		})
	}
	entries = append(entries,
		file("etc/group", 0o644, len(group)),
		file("etc/passwd", 0o644, len(passwd)))

	base, err := Scratch()
	if err != nil {
		return nil, err
	}
	img, err := appendLayer(base, entries, files, "crisp test busybox")
	if err != nil {
		return nil, err
	}
	return WithConfig(img, func(c *v1.Config) { c.Cmd = []string{"sh"} })
}

// WithPayload returns base plus one layer holding /payload.bin: size bytes
// of pseudo-random, incompressible data determined by seed.
func WithPayload(base v1.Image, size int64, seed int64) (v1.Image, error) {
	if size < 0 {
		return nil, fmt.Errorf("images: negative payload size %d", size)
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	data := make([]byte, size)
	if _, err := rand.NewChaCha8(key).Read(data); err != nil {
		return nil, err
	}
	entries := []tar.Header{file("payload.bin", 0o644, len(data))}
	files := map[string][]byte{"payload.bin": data}
	return appendLayer(base, entries, files, fmt.Sprintf("crisp test payload size=%d seed=%d", size, seed))
}

// WithConfig returns base with its runtime config (Cmd, Entrypoint, Env,
// Labels, User, StopSignal, ...) changed by f. base is not modified.
func WithConfig(base v1.Image, f func(*v1.Config)) (v1.Image, error) {
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	f(&cf.Config)
	return mutate.ConfigFile(base, cf)
}

// appendLayer adds a gzip-compressed OCI layer made of entries (in order,
// regular-file bodies taken from files) to base.
func appendLayer(base v1.Image, entries []tar.Header, files map[string][]byte, createdBy string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range entries {
		h := entries[i]
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("images: tar header %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[h.Name]); err != nil {
				return nil, fmt.Errorf("images: tar body %s: %w", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	return mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: createdBy},
	})
}

func dir(name string, mode int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: Epoch}
}

func file(name string, mode int64, size int) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(size), ModTime: Epoch}
}

// readStatic reads the executable at path and checks that it is statically
// linked (no ELF interpreter), so it runs in an image without a libc.
func readStatic(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("images: %w (install Debian package busybox-static)", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("images: %s is not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("images: %s is dynamically linked; install busybox-static", path)
		}
	}
	return data, nil
}
