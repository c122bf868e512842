package db

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// IDLen is the length of every sandbox and container id: 32 random bytes
// in lowercase hex, like containerd's and CRI-O's.
const IDLen = 64

// NewID returns a fresh random id.
func NewID() string {
	var b [IDLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand documents a fatal crash instead)
	return hex.EncodeToString(b[:])
}

// prefixRange turns an id prefix into the half-open key range [from, to)
// that holds every id starting with it: a range scan on the primary key.
func prefixRange(prefix string) (from, to string, err error) {
	if prefix == "" {
		return "", "", fmt.Errorf("%w: empty id", ErrInvalid)
	}
	// No row has such an id: kubelet and critest ask to stop or remove ids
	// of other runtimes, and must hear "not found", which they accept.
	if len(prefix) > IDLen || strings.Trim(prefix, "0123456789abcdef") != "" {
		return "", "", fmt.Errorf("id %q is not 1 to %d lowercase hex characters: %w", prefix, IDLen, ErrNotFound)
	}
	// '~' sorts after every hex digit, so prefix+"~" bounds the range.
	return prefix, prefix + "~", nil
}

// resolve runs a ResolveXID query: a unique match gives its id, none is
// ErrNotFound, several are ErrAmbiguous.
func resolve(ctx context.Context, q queryer, query, what, prefix string) (string, error) {
	from, to, err := prefixRange(prefix)
	if err != nil {
		return "", err
	}
	var ids []string
	if err := q.SelectContext(ctx, &ids, query, from, to); err != nil {
		return "", translate(err)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%s %q: %w", what, prefix, ErrNotFound)
	case 1:
		return ids[0], nil
	default:
		return "", fmt.Errorf("%s id prefix %q matches more than one %s: %w", what, prefix, what, ErrAmbiguous)
	}
}
