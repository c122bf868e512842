package pod

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// recordName is the file in a pod's dir that describes the pod.
const recordName = "sandbox.json"

// Record describes a pod so that its database row can be rebuilt from the
// node alone: a pod without an infra container leaves nothing else that
// names it.
type Record struct {
	Row   json.RawMessage `json:"row"`   // crisp's sandbox row, opaque to this package
	Infra bool            `json:"infra"` // the pod has an infra container, whose id is the pod's
	NetNS bool            `json:"netns"` // the pod has a network namespace of its own
}

// WriteRecord writes pod id's record into its dir under root, creating
// the dir if needed. The write is atomic (a temporary file renamed over
// the record) but not synced: the run dir does not outlive a reboot, and a
// record lost to a crash belongs to a row still creating, which the
// reconciler rolls back anyway.
func WriteRecord(root, id string, rec Record) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("pod id %q is not 64 hex characters", id)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode pod record: %w", err)
	}
	dir := Dir(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pod dir: %w", err)
	}
	tmp := filepath.Join(dir, "."+recordName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write pod record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pod record: %w", err)
	}
	return nil
}

// ReadRecord reads pod id's record. A pod dir without one is an error
// wrapping fs.ErrNotExist.
func ReadRecord(root, id string) (Record, error) {
	var rec Record
	b, err := os.ReadFile(filepath.Join(Dir(root, id), recordName))
	if err != nil {
		return rec, fmt.Errorf("read pod record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("read pod record %s: %w", filepath.Join(Dir(root, id), recordName), err)
	}
	return rec, nil
}

// HasRecord reports whether pod id's dir holds a record.
func HasRecord(root, id string) bool {
	_, err := os.Stat(filepath.Join(Dir(root, id), recordName))
	return !errors.Is(err, fs.ErrNotExist)
}

// Pins are the mount points Create may have made in a pod's dir: its
// /dev/shm and its pinned IPC and UTS namespaces.
var Pins = []string{"shm", "ipcns", "utsns"}

// Unpin unmounts pod id's pins and removes them, leaving its record and
// files: what a reboot leaves of a pod whose run dir survived.
func Unpin(root, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("pod id %q is not 64 hex characters", id)
	}
	var errs []error
	for _, m := range Pins {
		p := filepath.Join(Dir(root, id), m)
		if err := host.Unmount(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
