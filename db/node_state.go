package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Keys of node_state.
const (
	// NodeBootID is the boot id of the last reconciler pass.
	NodeBootID = "boot_id"
	// NodePodCIDR is the node's pod CIDR as kubelet last sent it
	// (UpdateRuntimeConfig), comma-separated.
	NodePodCIDR = "pod_cidr"
)

// NodeValue returns the value stored under key, "" when there is none.
func (s *Store) NodeValue(ctx context.Context, key string) (string, error) {
	var v string
	err := translate(s.db.GetContext(ctx, &v, s.q.GetNodeValue, key))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read node state %s: %w", key, err)
	}
	return v, nil
}

// SetNodeValue stores value under key.
func (s *Store) SetNodeValue(ctx context.Context, key, value string) error {
	return s.inTxAside(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.SetNodeValue, key, value, s.nanos()); err != nil {
			return fmt.Errorf("write node state %s: %w", key, translate(err))
		}
		return nil
	})
}
