package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	securejoin "github.com/cyphar/filepath-securejoin"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// mountImageVolumes makes each image volume of cfg (KEP-4639): the image,
// pulled if absent, mounted as a record of its own owned by the container,
// and the directory at its sub path, resolved inside the image (symlinks
// included, so nothing leads out of it). It returns the directories by
// mount index; undo removes what it made.
func (s *Server) mountImageVolumes(ctx context.Context, row db.Container, sandboxID string, cfg *runtimeapi.ContainerConfig, undo *undoStack) (map[int]string, error) {
	dirs := map[int]string{}
	for i, m := range cfg.GetMounts() {
		if m.GetImage() == nil {
			continue
		}
		ref := m.GetImage().GetImage()
		img, err := s.images.Status(ctx, ref)
		if errors.Is(err, storage.ErrImageNotFound) {
			img, err = s.images.Pull(ctx, ref, nil) // kubelet pulls first; other clients may not
		}
		if err != nil {
			return nil, fmt.Errorf("mounts[%d]: image volume %s: %w", i, ref, err)
		}
		id := storage.ImageVolumeID(row.ID, i)
		vol, err := s.images.CreateContainer(id, img.ID, storage.Metadata{Kind: storage.KindImageVolume,
			SandboxID: sandboxID, Name: storage.ImageVolumeName(row.Name, i), Owner: row.ID})
		if err != nil {
			return nil, fmt.Errorf("mounts[%d]: image volume %s: %w", i, ref, err)
		}
		undo.push(func(context.Context) error { return s.images.RemoveContainer(id) })
		dir, err := securejoin.SecureJoin(vol.Mount, m.ImageSubPath)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d].image_sub_path %q in image %s: %v: %w", i, m.ImageSubPath, ref, err, ErrInvalid)
		}
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("mounts[%d].image_sub_path %q does not exist in image %s: %w", i, m.ImageSubPath, ref, ErrInvalid)
		} else if err != nil {
			return nil, fmt.Errorf("mounts[%d].image_sub_path %q in image %s: %w", i, m.ImageSubPath, ref, err)
		}
		dirs[i] = dir
	}
	return dirs, nil
}

// removeImageVolumes removes the records of c's image volumes; missing
// ones are no error.
func (s *Server) removeImageVolumes(c db.Container) error {
	cfg, err := containerConfig(c)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range cfg.GetMounts() {
		if m.GetImage() != nil {
			if err := s.images.RemoveContainer(storage.ImageVolumeID(c.ID, i)); err != nil {
				errs = append(errs, fmt.Errorf("remove image volume %d of container %s: %w", i, c.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
