package storage

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports/alltransports"
)

// ociRefName is the OCI annotation that names an image in a layout.
const ociRefName = "org.opencontainers.image.ref.name"

// Load imports the images of an OCI layout directory, an OCI archive or a
// docker-archive tarball (`docker save`) for nodes without a registry. Each
// image keeps the name the archive gives it; tag names an archive's only
// image instead (and is required when the archive names none). It returns
// the images loaded.
func (s *Store) Load(ctx context.Context, path, tag string) ([]Image, error) {
	format, names, err := inspectArchive(path)
	if err != nil {
		return nil, err
	}
	if tag != "" {
		if len(names) > 1 {
			return nil, fmt.Errorf("%w: %s holds %d images; --tag names only one", ErrInvalidReference, path, len(names))
		}
		if len(names) == 0 {
			names = []string{""}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: %s names no image; give a tag", ErrInvalidReference, path)
	}
	pc, err := signature.NewPolicyContext(s.policy)
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	defer pc.Destroy()
	var out []Image
	for i, name := range names {
		srcSpec := fmt.Sprintf("%s:%s:%s", format, path, name)
		if format == "docker-archive" && name == "" {
			srcSpec = fmt.Sprintf("%s:%s:@%d", format, path, i)
		}
		dest := name
		if tag != "" {
			dest = tag
		}
		named, err := reference.ParseNormalizedNamed(dest)
		if err != nil || !qualified(dest) && format != "docker-archive" {
			return nil, fmt.Errorf("%w: image %q in %s has no full name (repository and tag); give a tag", ErrInvalidReference, dest, path)
		}
		named = reference.TagNameOnly(named)
		src, err := alltransports.ParseImageName(srcSpec)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidReference, srcSpec, err)
		}
		dst, err := istorage.Transport.NewStoreReference(s.store, named, "")
		if err != nil {
			return nil, err
		}
		sys := s.systemContext()
		if _, err := copy.Image(ctx, pc, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
			return nil, fmt.Errorf("load %s from %s: %w", named, path, err)
		}
		stored, err := istorage.Transport.GetStoreImage(s.store, dst)
		if err != nil {
			return nil, fmt.Errorf("find loaded image %s: %w", named, err)
		}
		img, err := s.describe(ctx, stored)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	s.usageChanged()
	return out, nil
}

// inspectArchive tells the format of path and the image names it holds.
func inspectArchive(path string) (format string, names []string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("image archive: %w", err)
	}
	if fi.IsDir() {
		f, err := os.Open(filepath.Join(path, "index.json"))
		if err != nil {
			return "", nil, fmt.Errorf("%w: %s is a directory but not an OCI layout: %v", ErrInvalidReference, path, err)
		}
		defer f.Close()
		names, err := ociNames(f)
		return "oci", names, err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("image archive: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: %s is neither an OCI layout, an OCI archive nor a docker archive: %v", ErrInvalidReference, path, err)
		}
		switch filepath.Clean(h.Name) {
		case "index.json":
			names, err := ociNames(tr)
			return "oci-archive", names, err
		case "manifest.json":
			names, err := dockerNames(tr)
			return "docker-archive", names, err
		}
	}
	return "", nil, fmt.Errorf("%w: %s has neither index.json (OCI) nor manifest.json (docker archive)", ErrInvalidReference, path)
}

func ociNames(r io.Reader) ([]string, error) {
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.NewDecoder(r).Decode(&idx); err != nil {
		return nil, fmt.Errorf("%w: read index.json: %v", ErrInvalidReference, err)
	}
	var names []string
	for _, m := range idx.Manifests {
		if n := m.Annotations[ociRefName]; n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func dockerNames(r io.Reader) ([]string, error) {
	var manifest []struct {
		RepoTags []string `json:"RepoTags"`
	}
	if err := json.NewDecoder(r).Decode(&manifest); err != nil {
		return nil, fmt.Errorf("%w: read manifest.json: %v", ErrInvalidReference, err)
	}
	var names []string
	for _, m := range manifest {
		if len(m.RepoTags) > 0 {
			names = append(names, m.RepoTags[0])
		} else {
			names = append(names, "")
		}
	}
	return names, nil
}
