package storage

import (
	"fmt"
	"net"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// candidates turns what a user asked for into fully qualified references to
// try in order: the reference itself when it names a registry, else the
// short name under each unqualified-search registry. A short name with no
// search registry configured is refused: guessing docker.io is how
// images get pulled from somewhere the operator never chose.
func (s *Store) candidates(sys *types.SystemContext, image string) ([]reference.Named, error) {
	if image == "" {
		return nil, fmt.Errorf("%w: empty image reference", ErrInvalidReference)
	}
	if strings.HasPrefix(image, "docker://") {
		image = strings.TrimPrefix(image, "docker://")
	}
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, image, err)
	}
	if qualified(image) {
		named, err := reference.ParseNormalizedNamed(image)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, image, err)
		}
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	search := s.cfg.UnqualifiedSearch
	if len(search) == 0 {
		var err error
		if search, err = sysregistriesv2.UnqualifiedSearchRegistries(sys); err != nil {
			return nil, fmt.Errorf("read unqualified-search registries: %w", err)
		}
	}
	if len(search) == 0 {
		return nil, fmt.Errorf("%w: %q is a short name and no unqualified-search registries are configured; use a fully qualified reference such as docker.io/library/%s",
			ErrInvalidReference, image, image)
	}
	var out []reference.Named
	for _, reg := range search {
		named, err := reference.ParseNormalizedNamed(reg + "/" + image)
		if err != nil {
			return nil, fmt.Errorf("%w: %q under search registry %q: %v", ErrInvalidReference, image, reg, err)
		}
		out = append(out, reference.TagNameOnly(named))
	}
	return out, nil
}

// qualified reports whether image starts with a registry host: a first
// component with a dot or a port, or localhost (Docker's rule).
func qualified(image string) bool {
	i := strings.IndexRune(image, '/')
	if i < 0 {
		return false
	}
	first := image[:i]
	return strings.ContainsAny(first, ".:") || first == "localhost"
}

// loopback reports whether a registry host (with optional port) is on
// the loopback interface, which Docker, and crisp, reach over plain HTTP.
func loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
