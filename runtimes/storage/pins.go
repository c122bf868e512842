package storage

import (
	"fmt"
	"strings"
)

// pins names the images that kubelet's image garbage collection must
// keep (the CRI's pinned flag): the pause image and the operator's
// pinned_images. A pattern is
//
//   - a reference, by tag or digest, matched exactly once normalized as
//     pulls are (registry.k8s.io/pause:3.10; no tag means :latest); a short
//     name pins what it resolves to under each unqualified-search registry;
//   - or a fully qualified prefix ending in one * (registry.k8s.io/*,
//     quay.io/org/app:*), matched against the image's normalized tag and
//     digest names, as CRI-O's glob pins are.
//
// Image ids are not patterns: a pin follows a name across updates.
type pins struct {
	names    map[string]bool
	prefixes []string
}

// parsePins checks patterns and normalizes them; an invalid one is an
// error wrapping ErrInvalidReference that names it.
func (s *Store) parsePins(patterns []string) (pins, error) {
	p := pins{names: map[string]bool{}}
	sys := s.systemContext()
	for _, pat := range patterns {
		if prefix, ok := strings.CutSuffix(pat, "*"); ok {
			if strings.Contains(prefix, "*") || !qualified(prefix) {
				return pins{}, fmt.Errorf("%w: pinned image pattern %q: a glob must be a registry host and path followed by one trailing * (registry.k8s.io/*)",
					ErrInvalidReference, pat)
			}
			p.prefixes = append(p.prefixes, prefix)
			continue
		}
		cands, err := s.candidates(sys, pat)
		if err != nil {
			return pins{}, fmt.Errorf("pinned image %q: %w", pat, err)
		}
		for _, c := range cands {
			p.names[c.String()] = true
		}
	}
	return p, nil
}

// match reports whether any of an image's names is pinned.
func (p pins) match(names ...[]string) bool {
	for _, list := range names {
		for _, n := range list {
			if p.names[n] {
				return true
			}
			for _, prefix := range p.prefixes {
				if strings.HasPrefix(n, prefix) {
					return true
				}
			}
		}
	}
	return false
}
