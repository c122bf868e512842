package unpack

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/test/harness"
)

var mtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// hostEscape is where an entry aimed at the host's root would land.
const hostEscape = "/crisp-unpack-escape-test"

// entry is one tar entry of a test layer; body is a regular file's content.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: mtime}, body: body}
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: mtime}}
}

func link(typ byte, name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, ModTime: mtime}}
}

func layer(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// extract unpacks the entries into dest/layer, a directory next to a
// file "planted"; it fails t if anything outside the layer changed.
func extract(t *testing.T, entries ...entry) (string, Result, error) {
	t.Helper()
	harness.RequireRoot(t)
	parent := t.TempDir()
	dest := filepath.Join(parent, "layer")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(parent, "planted")
	if err := os.WriteFile(planted, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res, err := Layer(root, layer(t, entries...))
	if outside, _ := os.ReadDir(parent); len(outside) != 2 {
		t.Errorf("the unpack wrote next to the layer: %v", outside)
	}
	if st := stat(t, parent, "planted"); st.Nlink != 1 || st.Mode&0o7777 != 0o644 || st.Uid != 0 || readFile(t, parent, "planted") != "outside" {
		t.Errorf("the file next to the layer changed: links %d mode %o uid %d", st.Nlink, st.Mode&0o7777, st.Uid)
	}
	if _, err := os.Lstat(hostEscape); err == nil {
		os.Remove(hostEscape)
		t.Errorf("the unpack wrote %s on the host", hostEscape)
	}
	return dest, res, err
}

func TestFilesAndMetadata(t *testing.T) {
	setuid := file("bin/su", "#!", 0o4755)
	setuid.hdr.Uid, setuid.hdr.Gid = 1000, 2000
	capped := file("bin/ping", "ping", 0o755)
	capped.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.redirect": "/etc"}
	fifo := entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o644, ModTime: mtime,
		PAXRecords: map[string]string{"SCHILY.xattr.user.note": "never opened"}}}
	null := entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}}
	root := dir("./", 0o750)

	dest, res, err := extract(t, root, dir("bin", 0o711), setuid, capped,
		link(tar.TypeSymlink, "bin/sh", "su"), link(tar.TypeLink, "bin/su2", "bin/su"), fifo, null)
	if err != nil {
		t.Fatal(err)
	}
	st := stat(t, dest, "bin/su")
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 2000 || st.Nlink != 2 {
		t.Errorf("bin/su: mode %o uid %d gid %d links %d; want 4755 1000 2000 2", st.Mode&0o7777, st.Uid, st.Gid, st.Nlink)
	}
	if got := readFile(t, dest, "bin/su2"); got != "#!" {
		t.Errorf("hard link content %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(dest, "bin/sh")); target != "su" {
		t.Errorf("bin/sh -> %q, want su", target)
	}
	if st := stat(t, dest, "bin"); st.Mode&0o7777 != 0o711 || time.Unix(st.Mtim.Unix()).UTC() != mtime {
		t.Errorf("bin: mode %o mtime %v; want 711 %v (set after its children)", st.Mode&0o7777, time.Unix(st.Mtim.Unix()).UTC(), mtime)
	}
	if st := stat(t, dest, "."); st.Mode&0o7777 != 0o750 || res.RootMode == nil || res.RootMode.Perm() != 0o750 {
		t.Errorf("root mode %o, reported %v; want 750", st.Mode&0o7777, res.RootMode)
	}
	if v := xattr(t, dest, "bin/ping", "user.note"); v != "hi" {
		t.Errorf("user.note = %q, want hi", v)
	}
	if v := xattr(t, dest, "bin/ping", "trusted.overlay.redirect"); v != "" {
		t.Errorf("an image set trusted.overlay.redirect = %q; overlay's attributes must come only from whiteouts", v)
	}
	if st := stat(t, dest, "run/fifo"); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/fifo mode %o, want a FIFO", st.Mode)
	}
	if st := stat(t, dest, "dev/null"); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o777 != 0o666 {
		t.Errorf("dev/null mode %o rdev %x, want a 1:3 char device 666", st.Mode, st.Rdev)
	}
	if len(res.UIDs) != 2 || res.UIDs[0] != 0 || res.UIDs[1] != 1000 || len(res.GIDs) != 2 || res.GIDs[1] != 2000 {
		t.Errorf("owners uids %v gids %v, want [0 1000] [0 2000]", res.UIDs, res.GIDs)
	}
}

func TestWhiteouts(t *testing.T) {
	dest, _, err := extract(t, dir("etc", 0o755), file("etc/.wh.passwd", "", 0), file("var/lib/.wh..wh..opq", "", 0),
		file(".wh..wh.plnk", "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if st := stat(t, dest, "etc/passwd"); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/passwd mode %o rdev %d, want a 0:0 char device", st.Mode, st.Rdev)
	}
	if v := xattr(t, dest, "var/lib", OpaqueXattr); v != "y" {
		t.Errorf("var/lib %s = %q, want y", OpaqueXattr, v)
	}
	for _, name := range []string{"etc/.wh.passwd", "var/lib/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(dest, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (%v): whiteout markers are not files", name, err)
		}
	}
}

func TestLaterEntryReplaces(t *testing.T) {
	dest, _, err := extract(t, file("a", "file", 0o644), dir("a", 0o755), file("a/x", "x", 0o644),
		file("a", "file again", 0o600), link(tar.TypeSymlink, "b", "a"), file("b", "b", 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest, "a"); got != "file again" {
		t.Errorf("a = %q, want the last entry's content", got)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "b")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("b = %v, %v; want a regular file replacing the symlink (not written through it)", fi, err)
	}
}

// Names and links that aim outside the layer never reach outside it.
func TestEscapesStayInside(t *testing.T) {
	t.Run("dot-dot names", func(t *testing.T) {
		dest, _, err := extract(t, file("../../escaped", "x", 0o644), file("a/../../b", "y", 0o644))
		if err != nil {
			t.Fatal(err)
		}
		if readFile(t, dest, "escaped") != "x" || readFile(t, dest, "b") != "y" {
			t.Error("dot-dot names were not kept inside the layer")
		}
	})
	for name, entries := range map[string][]entry{
		"absolute symlink dir":   {link(tar.TypeSymlink, "evil", "/"), file("evil"+hostEscape, "x", 0o644)},
		"relative symlink dir":   {link(tar.TypeSymlink, "evil", ".."), file("evil/escaped", "x", 0o644)},
		"write through symlink":  {link(tar.TypeSymlink, "evil", "../planted"), dir("evil", 0o755), link(tar.TypeSymlink, "evil2", "../planted"), file("evil2/x", "x", 0o644)},
		"hard link outside":      {link(tar.TypeLink, "pw", "../planted")},
		"chmod through symlink":  {link(tar.TypeSymlink, "evil", "../planted"), link(tar.TypeLink, "evil-link", "evil"), dir("evil/..", 0o777)},
		"whiteout through link":  {link(tar.TypeSymlink, "evil", ".."), file("evil/.wh.escaped", "", 0)},
		"opaque through link":    {link(tar.TypeSymlink, "evil", ".."), file("evil/.wh..wh..opq", "", 0)},
		"device through symlink": {link(tar.TypeSymlink, "evil", ".."), entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "evil/null", Devmajor: 1, Devminor: 3}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := extract(t, entries...)
			if err != nil && !strings.Contains(err.Error(), "layer entry") {
				t.Errorf("error %v does not name the entry", err)
			}
			// extract checks that nothing appeared next to the layer.
		})
	}
}

// Layer reads its input to the end, so a digest of it covers every byte.
func TestReadsToTheEnd(t *testing.T) {
	harness.RequireRoot(t)
	buf := layer(t, file("a", "a", 0o644))
	buf.WriteString(strings.Repeat("\x00", 5000))
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := Layer(root, buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes left unread", buf.Len())
	}
}

func stat(t *testing.T, dest, name string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dest, name), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func readFile(t *testing.T, dest, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dest, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func xattr(t *testing.T, dest, name, attr string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(filepath.Join(dest, name), attr, buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}
