package db

import (
	"crypto/sha256"
	"encoding/hex"
)

// ConfigHash is the config_hash of a row: a hash of its stored config
// blob and of the extra values that also tell requests apart (a
// container's pod, a pod's handler). The CRI server stores it to answer
// kubelet's retries; the reconciler recomputes it when it rebuilds a row.
func ConfigHash(blob []byte, extra ...string) string {
	h := sha256.New()
	h.Write(blob)
	for _, e := range extra {
		h.Write([]byte{0})
		h.Write([]byte(e))
	}
	return hex.EncodeToString(h.Sum(nil))
}
