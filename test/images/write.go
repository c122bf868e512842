package images

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RefNameAnnotation is the OCI annotation naming an image inside a layout's
// index.json (what "oci:DIR:NAME" and "oci-archive:PATH:NAME" select).
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteOCILayout writes img as an OCI image layout in dir (created if
// needed; an existing index.json is replaced). index.json lists the single
// manifest, annotated with RefNameAnnotation = refName.
func WriteOCILayout(dir string, img v1.Image, refName string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("images: oci layout %s: %w", dir, err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{RefNameAnnotation: refName}))
	if err != nil {
		return fmt.Errorf("images: oci layout %s: %w", dir, err)
	}
	return nil
}

// WriteOCIArchive writes img to path as an oci-archive: an uncompressed tar
// of the OCI layout WriteOCILayout produces (oci-layout, index.json and
// blobs/ at the tar root), with entries in lexical order and fixed times.
func WriteOCIArchive(path string, img v1.Image, refName string) (err error) {
	tmp, err := os.MkdirTemp("", "crisp-oci-archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := WriteOCILayout(tmp, img, refName); err != nil {
		return err
	}

	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(out)
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == tmp {
			return err
		}
		rel, err := filepath.Rel(tmp, p)
		if err != nil {
			return err
		}
		return addToTar(tw, p, filepath.ToSlash(rel), d)
	})
	if err != nil {
		return fmt.Errorf("images: oci archive %s: %w", path, err)
	}
	return tw.Close()
}

// addToTar writes the directory or regular file at p as tar entry name.
func addToTar(tw *tar.Writer, p, name string, d fs.DirEntry) error {
	h := tar.Header{Name: name, ModTime: Epoch}
	switch {
	case d.IsDir():
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, name+"/", 0o755
		return tw.WriteHeader(&h)
	case d.Type().IsRegular():
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, info.Size()
		if err := tw.WriteHeader(&h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	default:
		return fmt.Errorf("unexpected file type %v at %s", d.Type(), p)
	}
}

// WriteDockerArchive writes img to path in the docker-archive ("docker
// save") format, with manifest.json RepoTags = [tag]. A tag without a
// registry or tag part is completed the Docker way ("busybox" is
// "busybox:latest").
func WriteDockerArchive(path string, img v1.Image, tag string) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("images: docker archive tag %q: %w", tag, err)
	}
	if err := tarball.WriteToFile(path, t, img); err != nil {
		return fmt.Errorf("images: docker archive %s: %w", path, err)
	}
	return nil
}
