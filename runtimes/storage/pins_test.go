package storage

import (
	"errors"
	"testing"
)

func TestPins(t *testing.T) {
	s := &Store{cfg: Config{UnqualifiedSearch: []string{"registry.example", "docker.io"}}}
	p, err := s.parsePins([]string{
		"registry.k8s.io/pause:3.10",
		"quay.io/org/app", // no tag: :latest
		"pinned-short:1",  // under each search registry
		"ghcr.io/team/*",
		"example.com/db@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		tags, digests []string
		want          bool
	}{
		{"pause by tag", []string{"registry.k8s.io/pause:3.10"}, nil, true},
		{"pause other tag", []string{"registry.k8s.io/pause:3.9"}, nil, false},
		{"untagged pattern means latest", []string{"quay.io/org/app:latest"}, nil, true},
		{"untagged pattern, other tag", []string{"quay.io/org/app:2"}, nil, false},
		{"short name, first registry", []string{"registry.example/pinned-short:1"}, nil, true},
		{"short name, docker.io", []string{"docker.io/library/pinned-short:1"}, nil, true},
		{"glob", []string{"ghcr.io/team/tool:v1"}, nil, true},
		{"glob, other org", []string{"ghcr.io/other/tool:v1"}, nil, false},
		{"by digest", nil, []string{"example.com/db@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, true},
		{"one of several names", []string{"example.com/x:1", "registry.k8s.io/pause:3.10"}, nil, true},
		{"no names", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.match(tt.tags, tt.digests); got != tt.want {
				t.Errorf("match(%v, %v) = %v, want %v", tt.tags, tt.digests, got, tt.want)
			}
		})
	}

	for _, bad := range []string{"*", "pause*", "registry.k8s.io/*/pause*", "Not A Ref"} {
		if _, err := s.parsePins([]string{bad}); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("parsePins(%q) = %v, want ErrInvalidReference", bad, err)
		}
	}
	noSearch := &Store{cfg: Config{RegistriesConf: "/nonexistent/registries.conf"}}
	if _, err := noSearch.parsePins([]string{"pause:3.10"}); err == nil {
		t.Errorf("parsePins(short name, no search registries) = nil error")
	}
}
