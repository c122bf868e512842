package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// Auth is a registry credential, as kubelet passes it in a CRI AuthConfig.
type Auth struct {
	Username, Password string
	IdentityToken      string // OAuth2 refresh token
	RegistryToken      string // bearer token sent as is
}

// key tells credentials apart without keeping them readable in a map key.
func (a *Auth) key() string {
	if a == nil {
		return ""
	}
	return fmt.Sprintf("%x", hashStrings(a.Username, a.Password, a.IdentityToken, a.RegistryToken))
}

// flight is one download that concurrent callers share. It is cancelled
// once every caller waiting for it has gone.
type flight struct {
	done    chan struct{}
	waiters int
	cancel  context.CancelFunc
	img     Image
	err     error
}

// Pull fetches image (a reference such as registry.example/app:1.0, a
// digest reference, or a short name resolved through the unqualified-search
// registries) into the store and returns it. Concurrent pulls of the same
// reference with the same credentials share one download. The pull ends with
// ctx; a pull that fails or is cancelled leaves no image and no new layer.
// Errors wrap ErrInvalidReference, ErrUnauthorized or ErrImageNotFound where
// they apply, and name the reference.
func (s *Store) Pull(ctx context.Context, image string, auth *Auth) (Image, error) {
	sys := s.systemContext()
	cands, err := s.candidates(sys, image)
	if err != nil {
		return Image{}, err
	}
	key := image + "\x00" + auth.key()
	s.mu.Lock()
	f, ok := s.pulls[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(s.stopPulls, cancel)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		s.pulls[key] = f
		s.wg.Add(1)
		s.busy++
		go func() {
			defer s.wg.Done()
			defer stop()
			f.img, f.err = s.pullFirst(fctx, image, cands, auth)
			s.mu.Lock()
			if s.pulls[key] == f {
				delete(s.pulls, key)
			}
			s.busy--
			s.mu.Unlock()
			cancel()
			close(f.done)
		}()
	}
	f.waiters++
	s.mu.Unlock()

	select {
	case <-f.done:
		return f.img, f.err
	case <-ctx.Done():
		s.mu.Lock()
		if f.waiters--; f.waiters == 0 {
			f.cancel()
			if s.pulls[key] == f {
				delete(s.pulls, key) // a later caller starts afresh
			}
		}
		s.mu.Unlock()
		return Image{}, fmt.Errorf("pull %s: %w", image, ctx.Err())
	}
}

// pullFirst tries each candidate reference in order until one pulls.
func (s *Store) pullFirst(ctx context.Context, image string, cands []reference.Named, auth *Auth) (Image, error) {
	var errs []error
	for _, named := range cands {
		img, err := s.pullOne(ctx, named, auth)
		if err == nil {
			return img, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(cands) == 1 {
		return Image{}, errs[0]
	}
	return Image{}, fmt.Errorf("pull %s (tried %d search registries): %w", image, len(cands), errors.Join(errs...))
}

func (s *Store) pullOne(ctx context.Context, named reference.Named, auth *Auth) (_ Image, retErr error) {
	log := s.log.With(slog.String("image", named.String()))
	start := time.Now()
	sys := s.systemContext()
	if loopback(reference.Domain(named)) {
		// As Docker does: registries on loopback are reached over plain HTTP.
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	if auth != nil {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken}
		sys.DockerBearerRegistryToken = auth.RegistryToken
	}
	src, err := docker.NewReference(named)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s: %v", ErrInvalidReference, named, err)
	}
	dst, err := istorage.Transport.NewStoreReference(s.store, named, "")
	if err != nil {
		return Image{}, fmt.Errorf("storage reference for %s: %w", named, err)
	}
	pc, err := signature.NewPolicyContext(s.policy)
	if err != nil {
		return Image{}, fmt.Errorf("signature policy: %w", err)
	}
	defer pc.Destroy()

	before, err := s.layerIDs()
	if err != nil {
		return Image{}, err
	}
	defer func() {
		if retErr != nil {
			s.dropNewLayers(before)
		}
	}()
	// The watch cancels the copy, with its own cause, when the registry
	// stalls; the cause tells that apart from the caller giving up.
	copyCtx, cancelCopy := context.WithCancelCause(ctx)
	defer cancelCopy(nil)
	progress, stopWatch := newPullWatch(log, s.cfg.PullProgressTimeout, cancelCopy).start()
	err = s.pullDirect(copyCtx, named, sys, pc, progress)
	if errors.Is(err, errNeedsCopy) {
		_, err = copy.Image(copyCtx, pc, dst, src, &copy.Options{
			SourceCtx: sys, DestinationCtx: sys, Progress: progress, ProgressInterval: progressEveryRead,
		})
	}
	stopWatch()
	if err != nil {
		if cause := context.Cause(copyCtx); ctx.Err() == nil && errors.Is(cause, ErrPullStalled) {
			err = fmt.Errorf("pull %s: %w", named, cause)
		} else {
			err = classifyPullError(named, err)
		}
		log.Info("pull failed", slog.Any(logkey.Err, err), slog.Duration(logkey.Took, time.Since(start)))
		return Image{}, err
	}
	s.usageChanged()
	stored, err := istorage.Transport.GetStoreImage(s.store, dst)
	if err != nil {
		return Image{}, fmt.Errorf("find pulled image %s: %w", named, err)
	}
	img, err := s.describe(ctx, stored)
	if err != nil {
		return Image{}, err
	}
	log.Info("pulled", slog.String("id", img.ID), slog.Uint64("size", img.Size), slog.Duration(logkey.Took, time.Since(start)))
	return img, nil
}

// classifyPullError wraps registry answers in the package's sentinels, by
// type and status code, never by message text.
func classifyPullError(named reference.Named, err error) error {
	var unauth docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauth) {
		return fmt.Errorf("pull %s: %w: %v", named, ErrUnauthorized, err)
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) && status.StatusCode == http.StatusNotFound {
		return fmt.Errorf("pull %s: %w: %v", named, ErrImageNotFound, err)
	}
	switch registryErrorCode(err) {
	case v2.ErrorCodeManifestUnknown, v2.ErrorCodeNameUnknown:
		return fmt.Errorf("pull %s: %w: %v", named, ErrImageNotFound, err)
	case errcode.ErrorCodeUnauthorized, errcode.ErrorCodeDenied:
		return fmt.Errorf("pull %s: %w: %v", named, ErrUnauthorized, err)
	}
	return fmt.Errorf("pull %s: %w", named, err)
}

// registryErrorCode is the first error code of a registry's JSON error
// answer within err, if any.
func registryErrorCode(err error) errcode.ErrorCode {
	var code errcode.ErrorCode
	if errors.As(err, &code) {
		return code
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		return ec.Code
	}
	var ecs errcode.Errors
	if errors.As(err, &ecs) {
		for _, e := range ecs {
			if ec, ok := e.(errcode.Error); ok {
				return ec.Code
			}
		}
	}
	return 0
}

// layerIDs is the set of layers in the store now.
func (s *Store) layerIDs() (map[string]bool, error) {
	layers, err := s.store.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	ids := make(map[string]bool, len(layers))
	for _, l := range layers {
		ids[l.ID] = true
	}
	return ids, nil
}

// dropNewLayers deletes layers that appeared since before and that no
// image or container uses: what a failed pull left behind. While another
// pull is in flight its layers look the same, so then nothing is dropped
// (the next failed or successful pull tidies up).
func (s *Store) dropNewLayers(before map[string]bool) {
	s.mu.Lock()
	busy := s.busy > 1
	s.mu.Unlock()
	if busy {
		return
	}
	used := map[string]bool{}
	if imgs, err := s.store.Images(); err == nil {
		for _, img := range imgs {
			used[img.TopLayer] = true
			for _, l := range img.MappedTopLayers {
				used[l] = true
			}
		}
	}
	layers, err := s.store.Layers()
	if err != nil {
		return
	}
	parents := map[string]bool{}
	for _, l := range layers {
		parents[l.Parent] = true
	}
	// Delete from the top of each new chain down: a parent goes once its
	// children are gone, so repeat until nothing changes.
	for changed := true; changed; {
		changed = false
		layers, _ = s.store.Layers()
		parents = map[string]bool{}
		for _, l := range layers {
			parents[l.Parent] = true
		}
		for _, l := range layers {
			if before[l.ID] || used[l.ID] || parents[l.ID] {
				continue
			}
			if err := s.store.DeleteLayer(l.ID); err == nil {
				s.log.Debug("dropped layer of a failed pull", slog.String("layer", l.ID))
				changed = true
			}
		}
	}
}
