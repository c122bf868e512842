// Package unpack extracts an image layer's tar stream into a directory in
// the layout of an overlay lower layer, in this process. Every path is
// resolved through an os.Root, so no entry — whatever its name, and
// whatever symlinks or hardlinks earlier entries made — can create,
// change or link to anything outside the directory.
//
// It exists because go.podman.io/storage confines its own untar by
// re-executing the daemon in a chroot for every layer, which costs more
// than the untar itself (docs/bench-scale.md).
package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteout names in a layer tar (the OCI image spec's AUFS convention).
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	metaPrefix     = ".wh..wh." // other AUFS bookkeeping, which overlay has no use for
)

// OpaqueXattr marks a directory whose lower layers' entries are hidden.
const OpaqueXattr = "trusted.overlay.opaque"

// Result describes what a layer held.
type Result struct {
	UIDs, GIDs []uint32     // the owners seen, sorted, without repeats
	RootMode   *os.FileMode // the mode the layer gives its root directory, if it does
}

// Layer extracts the tar stream r into root, converting whiteouts to
// overlay's form: ".wh.NAME" becomes a 0:0 character device NAME, and
// ".wh..wh..opq" marks its directory opaque. A later entry replaces an
// earlier one of the same name. Layer reads r to its end, past the tar's
// end marker, so that a caller hashing r sees every byte.
func Layer(root *os.Root, r io.Reader) (Result, error) {
	x := extractor{root: root, uids: map[uint32]bool{}, gids: map[uint32]bool{}, dirs: map[string]bool{".": true}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Result{}, fmt.Errorf("read layer tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return Result{}, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return Result{}, fmt.Errorf("read layer tar: %w", err)
	}
	// A directory's times go last: creating its children changed them.
	for i := len(x.dirTimes) - 1; i >= 0; i-- {
		d := x.dirTimes[i]
		if err := root.Chtimes(d.name, d.atime, d.mtime); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Result{}, fmt.Errorf("layer entry %q: set times: %w", d.name, err)
		}
	}
	return Result{UIDs: sortedKeys(x.uids), GIDs: sortedKeys(x.gids), RootMode: x.rootMode}, nil
}

type extractor struct {
	root       *os.Root
	uids, gids map[uint32]bool
	rootMode   *os.FileMode
	dirTimes   []dirTime
	dirs       map[string]bool // known to be directories now
	buf        []byte
}

type dirTime struct {
	name         string
	atime, mtime time.Time
}

// clean turns a tar name into a path relative to the root: "." for the
// root itself. ".." cannot climb above the root (path.Clean of an absolute
// path stops there), and os.Root would refuse it anyway.
func clean(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return p[1:]
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	name := clean(hdr.Name)
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(dir, base, hdr)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("the layer's root is not a directory (type %q)", hdr.Typeflag)
		}
		rootMode := hdr.FileInfo().Mode()
		x.rootMode = &rootMode
		return x.dirMeta(name, hdr)
	}
	if err := x.parent(dir); err != nil {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		// An existing directory stays, with what it holds (tars may list a
		// directory after its contents); anything else makes way for it.
		if fi, err := x.root.Lstat(name); err != nil || !fi.IsDir() {
			if err := x.clear(name); err != nil {
				return err
			}
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		}
		x.dirs[name] = true
		return x.dirMeta(name, hdr)

	case tar.TypeReg, tar.TypeRegA:
		var f *os.File
		err := x.replacing(name, func() (err error) {
			f, err = x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			return err
		})
		if err != nil {
			return err
		}
		err = x.writeFile(f, hdr, body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err

	case tar.TypeSymlink:
		if err := x.replacing(name, func() error { return x.root.Symlink(hdr.Linkname, name) }); err != nil {
			return err
		}
		return x.inDir(dir, func(fd int) error { return x.metaAt(fd, base, hdr) })

	case tar.TypeLink:
		// Both names resolve inside the root; a link to a symlink links
		// the symlink itself.
		return x.replacing(name, func() error { return x.root.Link(clean(hdr.Linkname), name) }) // a hard link shares its target's owner, mode and times

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		return x.inDir(dir, func(fd int) error {
			mknod := func() error { return unix.Mknodat(fd, base, kind|0o600, dev) }
			if err := x.replacing(name, mknod); err != nil {
				return fmt.Errorf("mknod: %w", err)
			}
			return x.metaAt(fd, base, hdr)
		})
	}
	return nil // other entry types (GNU extensions) carry no file
}

// whiteout records the deletion of dir/base's target, or makes dir opaque.
func (x *extractor) whiteout(dir, base string, hdr *tar.Header) error {
	if err := x.parent(dir); err != nil {
		return err
	}
	if base == opaqueMarker {
		return x.setxattr(dir, OpaqueXattr, []byte("y"))
	}
	if strings.HasPrefix(base, metaPrefix) {
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("whiteout of no name")
	}
	name := path.Join(dir, target)
	if err := x.clear(name); err != nil {
		return err
	}
	return x.inDir(dir, func(fd int) error {
		if err := unix.Mknodat(fd, target, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("mknod whiteout: %w", err)
		}
		x.owner(hdr)
		return unix.Fchownat(fd, target, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// parent makes sure directory dir exists.
func (x *extractor) parent(dir string) error {
	if x.dirs[dir] {
		return nil
	}
	if err := x.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create parent directory: %w", err)
	}
	for d := dir; d != "."; d = path.Dir(d) {
		x.dirs[d] = true
	}
	return nil
}

// replacing runs create, which makes name; when an earlier entry already
// made it, that one goes first (a later entry replaces an earlier one).
func (x *extractor) replacing(name string, create func() error) error {
	err := create()
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := x.clear(name); err != nil {
		return err
	}
	return create()
}

// writeFile writes a regular file's content and metadata through its
// descriptor.
func (x *extractor) writeFile(f *os.File, hdr *tar.Header, body io.Reader) error {
	if x.buf == nil {
		x.buf = make([]byte, 128<<10)
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, body, x.buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	x.owner(hdr)
	if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := f.Chmod(mode(hdr)); err != nil { // after the chown, which clears set-ID bits
		return fmt.Errorf("chmod: %w", err)
	}
	fd := int(f.Fd())
	for attr, value := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, attr, []byte(value), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	atime, mtime := times(hdr)
	tv := []unix.Timeval{unix.NsecToTimeval(atime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}
	if err := unix.Futimes(fd, tv); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// clear removes what an earlier entry left at name, so that a later
// entry of the same name replaces it.
func (x *extractor) clear(name string) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return x.root.Remove(name)
	}
	for d := range x.dirs {
		if d == name || strings.HasPrefix(d, name+"/") {
			delete(x.dirs, d)
		}
	}
	return x.root.RemoveAll(name)
}

// dirMeta applies the owner, mode and extended attributes of hdr to the
// directory name, and notes its times for the end.
func (x *extractor) dirMeta(name string, hdr *tar.Header) error {
	x.owner(hdr)
	if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := x.root.Chmod(name, mode(hdr)); err != nil { // after the chown, which clears set-ID bits
		return fmt.Errorf("chmod: %w", err)
	}
	for attr, value := range xattrs(hdr) {
		if err := x.setxattr(name, attr, []byte(value)); err != nil {
			return err
		}
	}
	atime, mtime := times(hdr)
	x.dirTimes = append(x.dirTimes, dirTime{name: name, atime: atime, mtime: mtime})
	return nil
}

// metaAt applies the owner, mode and times of hdr to base, a symlink or
// a node in the directory fd, never following it. Such entries keep no
// extended attributes: setting one needs a descriptor, and opening a
// device node or a FIFO could act on a device or block.
func (x *extractor) metaAt(fd int, base string, hdr *tar.Header) error {
	x.owner(hdr)
	if err := unix.Fchownat(fd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(fd, base, uint32(mode(hdr).Perm())|setIDBits(hdr), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	atime, mtime := times(hdr)
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(fd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func setIDBits(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & (unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX)
}

func mode(hdr *tar.Header) fs.FileMode {
	return hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// times are an entry's access and modification times; an entry without
// an access time gets its modification time.
func times(hdr *tar.Header) (atime, mtime time.Time) {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime, hdr.ModTime
	}
	return hdr.AccessTime, hdr.ModTime
}

// xattrs are the extended attributes an entry carries, less those
// crisp never takes from an image.
func xattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for key, value := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(key, "SCHILY.xattr."); ok && !ignoredXattr(attr) {
			if out == nil {
				out = map[string]string{}
			}
			out[attr] = value
		}
	}
	return out
}

// ignoredXattr: SELinux labels are the runtime's to set, and overlay's
// own attributes (opacity, redirects) come only from whiteouts, never
// from an image that could point overlay elsewhere with them.
func ignoredXattr(attr string) bool {
	return attr == "security.selinux" || strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.")
}

// setxattr sets an attribute of a regular file or a directory.
func (x *extractor) setxattr(name, attr string, value []byte) error {
	f, err := x.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("set xattr %s: %w", attr, err)
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), attr, value, 0); err != nil {
		return fmt.Errorf("set xattr %s: %w", attr, err)
	}
	return nil
}

// inDir runs op on a descriptor of directory dir inside the root, for the
// calls os.Root has no method for (mknod, and acting on a symlink itself).
func (x *extractor) inDir(dir string, op func(fd int) error) error {
	if dir == "" {
		dir = "."
	}
	d, err := x.root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return op(int(d.Fd()))
}

func (x *extractor) owner(hdr *tar.Header) {
	x.uids[uint32(hdr.Uid)] = true
	x.gids[uint32(hdr.Gid)] = true
}

func sortedKeys(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
