// Package cri serves the CRI RuntimeService and ImageService, and crisp's
// admin service, over gRPC: request validation, the one error-to-status
// mapping, and (with the runtime issue) OCI spec generation. It imports db
// and runtimes, never reconciler: the admin service declares the small
// interface it needs and cmd/crispd wires the reconciler in.
package cri

import (
	"log/slog"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/storage"
)

// Version is crisp's version, set at build time with -ldflags -X.
var Version = "0.1.0-dev"

// RuntimeName is what Version reports as the runtime's name.
const RuntimeName = "crisp"

// Handler describes one configured runtime handler.
type Handler struct {
	Name  string
	Class string // trusted or untrusted
	Path  string
	Root  string
}

// Server implements the CRI services. Calls whose capability has not been
// built yet return Unimplemented through the embedded servers, never a
// pretend success.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	store    *db.Store
	images   *storage.Store
	handlers []Handler
	log      *slog.Logger
	started  time.Time
}

// NewServer returns the CRI server over the node-state store and the image
// store.
func NewServer(store *db.Store, images *storage.Store, handlers []Handler, log *slog.Logger) *Server {
	return &Server{store: store, images: images, handlers: handlers, log: log, started: time.Now()}
}
