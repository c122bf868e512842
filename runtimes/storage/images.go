package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	cstorage "go.podman.io/storage"
)

// Image is an image in the store, as the CRI describes it.
type Image struct {
	ID          string   // 64 hex characters: the config digest
	RepoTags    []string // docker.io/library/busybox:1.36
	RepoDigests []string // docker.io/library/busybox@sha256:…
	Size        uint64   // bytes of all layers, uncompressed
	Digest      string   // manifest digest
	Created     time.Time
	Config      *imgspecv1.Image // the image's OCI config
	Layers      []string         // layer digests, bottom first
	Pinned      bool             // kubelet's image GC must keep it (Config.Pinned)
}

// User is the image's configured user ("" means root).
func (i Image) User() string {
	if i.Config == nil {
		return ""
	}
	return i.Config.Config.User
}

// describe reads what the CRI reports of a stored image.
func (s *Store) describe(ctx context.Context, img *cstorage.Image) (Image, error) {
	out := Image{ID: img.ID, Digest: img.Digest.String(), Created: img.Created}
	repos := map[string]bool{}
	for _, name := range img.Names {
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.Canonical); ok {
			out.RepoDigests = append(out.RepoDigests, named.String())
		} else {
			out.RepoTags = append(out.RepoTags, named.String())
		}
		repos[named.Name()] = true
	}
	if img.Digest != "" {
		for repo := range repos {
			d := repo + "@" + img.Digest.String()
			if !contains(out.RepoDigests, d) {
				out.RepoDigests = append(out.RepoDigests, d)
			}
		}
	}
	sort.Strings(out.RepoTags)
	sort.Strings(out.RepoDigests)
	out.Pinned = s.pins.match(out.RepoTags, out.RepoDigests)
	if size, err := s.store.ImageSize(img.ID); err == nil && size > 0 {
		out.Size = uint64(size)
	}
	ref, err := istorage.Transport.NewStoreReference(s.store, nil, img.ID)
	if err != nil {
		return out, fmt.Errorf("image %s: %w", img.ID, err)
	}
	src, err := ref.NewImage(ctx, s.systemContext())
	if err != nil {
		return out, fmt.Errorf("open image %s: %w", img.ID, err)
	}
	defer src.Close()
	if out.Config, err = src.OCIConfig(ctx); err != nil {
		return out, fmt.Errorf("config of image %s: %w", img.ID, err)
	}
	for _, l := range src.LayerInfos() {
		out.Layers = append(out.Layers, l.Digest.String())
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// lookup finds an image by id (full, truncated or "sha256:"-prefixed),
// by name (tag or digest reference, normalized as Docker does), or by a
// short name under the unqualified-search registries.
func (s *Store) lookup(ref string) (*cstorage.Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty image reference", ErrInvalidReference)
	}
	if id := strings.TrimPrefix(ref, "sha256:"); isHex(id) {
		if img, err := s.store.Image(id); err == nil {
			return img, nil
		}
	}
	if img, err := s.store.Image(ref); err == nil {
		return img, nil
	}
	cands, err := s.candidates(s.systemContext(), ref)
	if err != nil {
		if errors.Is(err, ErrInvalidReference) && !qualified(ref) {
			return nil, fmt.Errorf("image %q: %w", ref, ErrImageNotFound)
		}
		return nil, err
	}
	for _, named := range cands {
		if img, err := s.store.Image(named.String()); err == nil {
			return img, nil
		}
		// Pulled by tag, asked for by digest: match repository and digest.
		if canon, ok := named.(reference.Canonical); ok {
			imgs, _ := s.store.ImagesByDigest(canon.Digest())
			for _, img := range imgs {
				for _, name := range img.Names {
					if n, err := reference.ParseNormalizedNamed(name); err == nil && n.Name() == canon.Name() {
						return img, nil
					}
				}
			}
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, ErrImageNotFound)
}

func isHex(s string) bool {
	if len(s) < 3 || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// Status describes the image ref names; ErrImageNotFound if there is none.
func (s *Store) Status(ctx context.Context, ref string) (Image, error) {
	img, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	return s.describe(ctx, img)
}

// List describes every image, oldest first.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.Before(imgs[j].Created) })
	out := make([]Image, 0, len(imgs))
	for i := range imgs {
		img, err := s.describe(ctx, &imgs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Remove removes the image ref names. A tag of an image with other names
// only loses that tag; an id (or an image's last name) removes the image.
// A missing image is no error (removal is idempotent). An image a
// container uses is ErrImageInUse naming the container.
func (s *Store) Remove(ctx context.Context, ref string) error {
	img, err := s.lookup(ref)
	if errors.Is(err, ErrImageNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if name, ok := s.nameOf(img, ref); ok && tagCount(img.Names) > 1 {
		if err := s.store.RemoveNames(img.ID, []string{name}); err != nil {
			return fmt.Errorf("untag %s from image %s: %w", name, img.ID, err)
		}
		return nil // an untag frees no space
	}
	ctrs, err := s.store.Containers()
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		if c.ImageID == img.ID {
			return fmt.Errorf("remove image %s (%s): container %s uses it: %w", ref, img.ID, c.ID, ErrImageInUse)
		}
	}
	if _, err := s.store.DeleteImage(img.ID, true); err != nil && !errors.Is(err, cstorage.ErrImageUnknown) && !errors.Is(err, cstorage.ErrNotAnImage) {
		// A concurrent RemoveImage got there first: the image is gone, as asked.
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	s.usageChanged()
	return nil
}

// tagCount counts the tag names (repo:tag) among names; digest names
// (repo@sha256:…) only record how an image was pulled.
func tagCount(names []string) int {
	n := 0
	for _, name := range names {
		if !strings.Contains(name, "@") {
			n++
		}
	}
	return n
}

// nameOf returns the stored name that ref denotes, if ref is a name of img
// rather than its id.
func (s *Store) nameOf(img *cstorage.Image, ref string) (string, bool) {
	if strings.HasPrefix(img.ID, strings.TrimPrefix(ref, "sha256:")) {
		return "", false
	}
	cands, err := s.candidates(s.systemContext(), ref)
	if err != nil {
		return "", false
	}
	for _, c := range cands {
		if contains(img.Names, c.String()) {
			return c.String(), true
		}
	}
	return "", false
}

// hashStrings is a digest of several strings, for map keys.
func hashStrings(parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}
