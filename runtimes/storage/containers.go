package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	cstorage "go.podman.io/storage"
)

// Metadata is what crisp writes on each of its container records, so that
// the reconciler can tell crisp's records from anyone else's and rebuild
// rows from them.
type Metadata struct {
	Crisp     bool      `json:"crisp"` // always true: the record is crisp's
	Kind      string    `json:"kind"`  // "pod" (infra), "container" or KindImageVolume
	SandboxID string    `json:"sandbox_id"`
	Name      string    `json:"name"` // crisp's full name
	Attempt   uint32    `json:"attempt"`
	Created   time.Time `json:"created"`
	Owner     string    `json:"owner,omitempty"` // an image volume's container
}

// Rootfs is a container's record: its mounted root filesystem and the
// directory that holds its bundle (config.json) and monitor files.
type Rootfs struct {
	ID    string
	Mount string // the mounted rootfs (overlay merged dir)
	Dir   string // persistent per-container dir: bundle, exit and oom files
}

// CreateContainer makes a container record from image with crisp's
// metadata and mounts its root filesystem. On failure nothing is left.
func (s *Store) CreateContainer(id, imageID string, meta Metadata) (_ Rootfs, retErr error) {
	meta.Crisp = true
	if meta.Created.IsZero() {
		meta.Created = time.Now()
	}
	blob, err := json.Marshal(meta)
	if err != nil {
		return Rootfs{}, err
	}
	// Volatile: no fsync of the record and an overlay mounted "volatile",
	// so unmounting it does not sync the whole filesystem. A container does
	// not outlive a power loss anyway; the reconciler forgets its row.
	opts := &cstorage.ContainerOptions{Volatile: true}
	if _, err := s.store.CreateContainer(id, []string{meta.Name}, imageID, "", string(blob), opts); err != nil {
		return Rootfs{}, fmt.Errorf("create storage for container %s from image %s: %w", id, imageID, err)
	}
	defer func() {
		if retErr != nil {
			s.RemoveContainer(id)
		}
	}()
	mount, err := s.store.Mount(id, "")
	if err != nil {
		return Rootfs{}, fmt.Errorf("mount rootfs of container %s: %w", id, err)
	}
	dir, err := s.store.ContainerDirectory(id)
	if err != nil {
		return Rootfs{}, fmt.Errorf("directory of container %s: %w", id, err)
	}
	return Rootfs{ID: id, Mount: mount, Dir: dir}, nil
}

// ContainerRootfs returns the record of container id, mounting its rootfs
// again if a reboot unmounted it. A missing record is ErrNotFound.
func (s *Store) ContainerRootfs(id string) (Rootfs, error) {
	if _, err := s.store.Container(id); err != nil {
		if errors.Is(err, cstorage.ErrContainerUnknown) {
			return Rootfs{}, fmt.Errorf("storage of container %s: %w", id, ErrNotFound)
		}
		return Rootfs{}, err
	}
	mount, err := s.store.Mount(id, "")
	if err != nil {
		return Rootfs{}, fmt.Errorf("mount rootfs of container %s: %w", id, err)
	}
	dir, err := s.store.ContainerDirectory(id)
	if err != nil {
		return Rootfs{}, err
	}
	return Rootfs{ID: id, Mount: mount, Dir: dir}, nil
}

// RemoveContainer unmounts and deletes container id's record; a missing
// record is no error.
func (s *Store) RemoveContainer(id string) error {
	if _, err := s.store.Unmount(id, true); err != nil && !errors.Is(err, cstorage.ErrContainerUnknown) && !errors.Is(err, cstorage.ErrLayerUnknown) {
		return fmt.Errorf("unmount rootfs of container %s: %w", id, err)
	}
	if err := s.store.DeleteContainer(id); err != nil && !errors.Is(err, cstorage.ErrContainerUnknown) && !errors.Is(err, cstorage.ErrNotAContainer) {
		return fmt.Errorf("delete storage of container %s: %w", id, err)
	}
	return nil
}

// Record is one of crisp's container records with its metadata.
type Record struct {
	ID      string
	ImageID string
	Meta    Metadata
}

// Records lists crisp's container records, skipping anyone else's.
func (s *Store) Records() ([]Record, error) {
	cs, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list storage containers: %w", err)
	}
	var out []Record
	for _, c := range cs {
		var m Metadata
		if json.Unmarshal([]byte(c.Metadata), &m) != nil || !m.Crisp {
			continue
		}
		out = append(out, Record{ID: c.ID, ImageID: c.ImageID, Meta: m})
	}
	return out, nil
}

// ContainerDir is container id's persistent directory (its bundle), whether
// or not its rootfs is mounted.
func (s *Store) ContainerDir(id string) (string, error) {
	dir, err := s.store.ContainerDirectory(id)
	if errors.Is(err, cstorage.ErrContainerUnknown) {
		return "", fmt.Errorf("storage of container %s: %w", id, ErrNotFound)
	}
	return dir, err
}
