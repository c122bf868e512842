package cri

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/runtimes/storage"
)

// imageID is how the CRI names an image: its config digest.
func imageID(img storage.Image) string { return "sha256:" + img.ID }

// PullImage pulls an image with the request's credentials and returns its
// id. A registry that stops sending for the configured progress timeout
// fails the pull with Unavailable (see codeOf).
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("pull image: image reference is empty: %w", ErrInvalid)
	}
	auth, err := authFrom(req.GetAuth())
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", ref, err)
	}
	img, err := s.images.Pull(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: imageID(img)}, nil
}

// authFrom turns a CRI AuthConfig into credentials; auth is "user:password"
// in base64, as in a Docker config.json.
func authFrom(a *runtimeapi.AuthConfig) (*storage.Auth, error) {
	if a == nil {
		return nil, nil
	}
	out := &storage.Auth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("auth is not base64: %w", ErrInvalid)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, fmt.Errorf("auth is not user:password in base64: %w", ErrInvalid)
		}
		out.Username, out.Password = user, pass
	}
	if *out == (storage.Auth{}) {
		return nil, nil
	}
	return out, nil
}

// ListImages lists every image, or the one the filter names.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	var imgs []storage.Image
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		img, err := s.images.Status(ctx, ref)
		if err != nil && !isImageNotFound(err) {
			return nil, err
		}
		if err == nil {
			imgs = append(imgs, img)
		}
	} else {
		var err error
		if imgs, err = s.images.List(ctx); err != nil {
			return nil, err
		}
	}
	resp := &runtimeapi.ListImagesResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}

// ImageStatus describes one image; an unknown image is an empty answer,
// not an error, as the CRI asks.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image status: image reference is empty: %w", ErrInvalid)
	}
	img, err := s.images.Status(ctx, ref)
	if isImageNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		b, err := json.Marshal(struct {
			ID          string   `json:"id"`
			RepoTags    []string `json:"repoTags"`
			RepoDigests []string `json:"repoDigests"`
			Digest      string   `json:"manifestDigest"`
			Size        uint64   `json:"size"`
			Pinned      bool     `json:"pinned"`
			Layers      []string `json:"layers"`
			Config      any      `json:"config"`
		}{imageID(img), img.RepoTags, img.RepoDigests, img.Digest, img.Size, img.Pinned, img.Layers, img.Config})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// RemoveImage removes an image by id, tag or digest. A tag of an image
// with other names is only untagged. Removing what is gone succeeds; an
// image in use by a container is FailedPrecondition.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("remove image: image reference is empty: %w", ErrInvalid)
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the bytes and inodes the image store takes, from
// the store's cached measurement: Timestamp is when it was taken.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("measure image store %s: %w", u.Mountpoint, err)
	}
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  u.At.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.Bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
	}
	// Container layers live in the same store, so both report it.
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fs}, ContainerFilesystems: []*runtimeapi.FilesystemUsage{fs}}, nil
}

func toCRIImage(img storage.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          imageID(img),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtimeapi.ImageSpec{Image: imageID(img)},
		Pinned:      img.Pinned, // kubelet's image GC never removes a pinned image
	}
	user, _, _ := strings.Cut(img.User(), ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtimeapi.Int64Value{Value: uid}
	} else if user != "" {
		out.Username = user
	}
	return out
}

func isImageNotFound(err error) bool { return errors.Is(err, storage.ErrImageNotFound) }
