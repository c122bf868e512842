package cri

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// Reconciler is what the admin service needs of the reconciler.
type Reconciler interface {
	ReconcileNow(ctx context.Context, dryRun bool) (*adminpb.ReconcileNowResponse, error)
}

// AdminServer serves crisp's admin service on the root-only socket.
type AdminServer struct {
	adminpb.UnimplementedAdminServer
	rec    Reconciler
	store  *db.Store
	images *storage.Store
	info   *adminpb.InfoResponse // the static part: versions, paths, handlers
}

// NewAdminServer returns the admin service. info holds what does not change
// while crispd runs; Info adds the database's live facts.
func NewAdminServer(rec Reconciler, store *db.Store, images *storage.Store, info *adminpb.InfoResponse) *AdminServer {
	return &AdminServer{rec: rec, store: store, images: images, info: info}
}

// LoadImage imports an image archive on the node into the image store.
func (a *AdminServer) LoadImage(ctx context.Context, req *adminpb.LoadImageRequest) (*adminpb.ImagesResponse, error) {
	if req.GetPath() == "" {
		return nil, fmt.Errorf("load image: path is empty: %w", ErrInvalid)
	}
	imgs, err := a.images.Load(ctx, req.GetPath(), req.GetTag())
	if err != nil {
		return nil, err
	}
	return imagesResponse(imgs), nil
}

// ListImages lists the image store.
func (a *AdminServer) ListImages(ctx context.Context, _ *adminpb.ListImagesRequest) (*adminpb.ImagesResponse, error) {
	imgs, err := a.images.List(ctx)
	if err != nil {
		return nil, err
	}
	return imagesResponse(imgs), nil
}

func imagesResponse(imgs []storage.Image) *adminpb.ImagesResponse {
	out := &adminpb.ImagesResponse{}
	for _, img := range imgs {
		out.Images = append(out.Images, &adminpb.ImageSummary{Id: imageID(img), RepoTags: img.RepoTags,
			RepoDigests: img.RepoDigests, Size: img.Size, CreatedUnixNano: img.Created.UnixNano()})
	}
	return out
}

// ReconcileNow runs a reconciler pass now.
func (a *AdminServer) ReconcileNow(ctx context.Context, req *adminpb.ReconcileNowRequest) (*adminpb.ReconcileNowResponse, error) {
	resp, err := a.rec.ReconcileNow(ctx, req.GetDryRun())
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return resp, nil
}

// Info describes the running daemon.
func (a *AdminServer) Info(ctx context.Context, _ *adminpb.InfoRequest) (*adminpb.InfoResponse, error) {
	out := proto.Clone(a.info).(*adminpb.InfoResponse)
	v, err := a.store.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	out.SchemaVersion = int32(v)
	if out.SqliteVersion, err = a.store.SQLiteVersion(ctx); err != nil {
		return nil, fmt.Errorf("read sqlite version: %w", err)
	}
	return out, nil
}
