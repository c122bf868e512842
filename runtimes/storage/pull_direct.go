package storage

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	cstorage "go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"

	"github.com/crisp-cri/crisp/runtimes/storage/unpack"
)

// errNeedsCopy: the image uses something the direct pull does not handle
// (a schema 1 manifest, foreign or encrypted layers, a driver other than
// overlay); go.podman.io/image's copy pulls it instead. It is returned
// before anything is written.
var errNeedsCopy = errors.New("image needs the general copy")

// pullDirect pulls named into the store the way containerd does: each
// layer streams from the registry through its digest check and its
// decompression straight into unpack.Layer, in this process, and becomes
// a c/storage layer through the staged-layer API. go.podman.io/image's
// copy instead keeps the blob in a file, decompresses it twice and has
// c/storage re-execute crispd to untar it in a chroot, which made a small
// pull several times slower (docs/bench-scale.md). The manifest, the
// signature policy, the platform choice and the records written (layer
// IDs, the image's big data) are go.podman.io/image's, so either path
// reads and reuses what the other wrote.
func (s *Store) pullDirect(ctx context.Context, named reference.Named, sys *types.SystemContext, pc *signature.PolicyContext, progress chan<- types.ProgressProperties) error {
	if !s.directPulls() {
		return errNeedsCopy
	}
	ref, err := docker.NewReference(named)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidReference, named, err)
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return err
	}
	defer src.Close()

	top := image.UnparsedInstance(src, nil)
	topBlob, topType, err := top.Manifest(ctx) // checked against a digest in the reference
	if err != nil {
		return err
	}
	if err := allowed(ctx, pc, top); err != nil {
		return err
	}
	instance := top
	if manifest.MIMETypeIsMultiImage(topType) {
		list, err := manifest.ListFromBlob(topBlob, topType)
		if err != nil {
			return fmt.Errorf("parse manifest list: %w", err)
		}
		d, err := list.ChooseInstance(sys)
		if err != nil {
			return err
		}
		instance = image.UnparsedInstance(src, &d)
		if err := allowed(ctx, pc, instance); err != nil {
			return err
		}
	}
	instBlob, instType, err := instance.Manifest(ctx)
	if err != nil {
		return err
	}
	if t := manifest.NormalizedMIMEType(instType); t != manifest.DockerV2Schema2MediaType && t != imgspecv1.MediaTypeImageManifest {
		return errNeedsCopy
	}
	img, err := image.FromUnparsedImage(ctx, sys, instance)
	if err != nil {
		return err
	}
	config, err := img.ConfigBlob(ctx) // checked against its digest
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	oci, err := img.OCIConfig(ctx)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers := img.LayerInfos()
	for _, l := range layers {
		if len(l.URLs) > 0 || !plainLayer(l.MediaType) {
			return errNeedsCopy
		}
	}
	if len(oci.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("config lists %d layer diff IDs for the manifest's %d layers", len(oci.RootFS.DiffIDs), len(layers))
	}

	parent := ""
	for i, l := range layers {
		if parent, err = s.directLayer(ctx, src, l, oci.RootFS.DiffIDs[i], parent, progress); err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}

	opts := &cstorage.ImageOptions{}
	if oci.Created != nil {
		opts.CreationDate = *oci.Created
	}
	// (For these manifest types a manifest's digest is that of its bytes.)
	add := func(key string, data []byte) {
		opts.BigData = append(opts.BigData, cstorage.ImageBigDataOption{Key: key, Data: data, Digest: digest.Canonical.FromBytes(data)})
	}
	// The keys go.podman.io/image's storage destination writes: the config
	// under its digest, every manifest under "manifest-<digest>", and the
	// image's own manifest also under "manifest".
	add(img.ConfigInfo().Digest.String(), config)
	instDigest, err := manifest.Digest(instBlob)
	if err != nil {
		return err
	}
	if !slices.Equal(topBlob, instBlob) {
		topDigest, err := manifest.Digest(topBlob)
		if err != nil {
			return err
		}
		add("manifest-"+topDigest.String(), topBlob)
	}
	add("manifest-"+instDigest.String(), instBlob)
	add(cstorage.ImageDigestBigDataKey, instBlob)
	return s.directImage(img.ConfigInfo().Digest.Encoded(), parent, named.String(), opts)
}

// directPulls: the staged-layer API needs the overlay driver, and a
// force_mask changes how layers are written.
func (s *Store) directPulls() bool {
	if s.cfg.Driver != "overlay" {
		return false
	}
	for _, o := range s.cfg.DriverOptions {
		if strings.Contains(o, "force_mask") {
			return false
		}
	}
	return true
}

func allowed(ctx context.Context, pc *signature.PolicyContext, img types.UnparsedImage) error {
	if ok, err := pc.IsRunningImageAllowed(ctx, img); !ok || err != nil {
		return fmt.Errorf("source image rejected: %w", err)
	}
	return nil
}

// plainLayer: a tar layer, uncompressed, gzip or zstd (what registries
// serve); not foreign, non-distributable or encrypted.
func plainLayer(mediaType string) bool {
	switch mediaType {
	case manifest.DockerV2Schema2LayerMediaType, manifest.DockerV2SchemaLayerMediaTypeUncompressed,
		imgspecv1.MediaTypeImageLayer, imgspecv1.MediaTypeImageLayerGzip, imgspecv1.MediaTypeImageLayerZstd:
		return true
	}
	return false
}

// layerID is the storage ID go.podman.io/image gives a layer: its diff ID
// at the bottom, above that a digest of its parent's ID and its diff ID.
func layerID(parent string, diffID digest.Digest) string {
	if parent == "" {
		return diffID.Encoded()
	}
	return digest.Canonical.FromString(parent + "+" + diffID.Encoded()).Encoded()
}

// directLayer makes sure the layer l with diffID sits on parent in the
// store and returns its ID.
func (s *Store) directLayer(ctx context.Context, src types.ImageSource, l types.BlobInfo, diffID digest.Digest, parent string, progress chan<- types.ProgressProperties) (string, error) {
	if err := diffID.Validate(); err != nil {
		return "", fmt.Errorf("diff ID %q: %w", diffID, err)
	}
	id := layerID(parent, diffID)
	if _, err := s.store.Layer(id); err == nil {
		sendProgress(ctx, progress, types.ProgressProperties{Event: types.ProgressEventSkipped, Artifact: l})
		return id, nil
	}
	sendProgress(ctx, progress, types.ProgressProperties{Event: types.ProgressEventNewArtifact, Artifact: l})
	blob, _, err := src.GetBlob(ctx, l, none.NoCache)
	if err != nil {
		return "", err
	}
	defer blob.Close()

	read := &progressReader{ctx: ctx, r: blob, ch: progress, info: l}
	d := &layerDiffer{blob: read, digest: l.Digest, size: l.Size, diffID: diffID}
	opts := &drivers.ApplyDiffWithDifferOpts{}
	out, err := s.store.PrepareStagedLayer(opts, d)
	if out != nil && out.Target != "" {
		// After an apply, this removes what the staging left (its lock).
		defer func() { _ = s.store.CleanupStagedLayer(out) }()
	}
	if err != nil {
		return "", err
	}
	sendProgress(ctx, progress, types.ProgressProperties{Event: types.ProgressEventDone, Artifact: l, Offset: uint64(read.n)})

	// Applying a staged layer over an existing ID replaces that layer's
	// files, so the check and the apply must not interleave with another
	// pull's of the same layer.
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	if _, err := s.store.Layer(id); err == nil {
		return id, nil // another pull stored it meanwhile
	}
	if _, err := s.store.ApplyStagedLayer(cstorage.ApplyStagedLayerOptions{ID: id, ParentLayer: parent, DiffOutput: out, DiffOptions: opts}); err != nil {
		return "", err
	}
	return id, nil
}

// directImage records the image id on top, named name, or adds name and
// the manifests to the image already recorded under id.
func (s *Store) directImage(id, top, name string, opts *cstorage.ImageOptions) (err error) {
	img, err := s.store.CreateImage(id, nil, top, "", opts)
	created := err == nil
	if errors.Is(err, cstorage.ErrDuplicateID) {
		if img, err = s.store.Image(id); err != nil {
			return fmt.Errorf("read image %s: %w", id, err)
		}
		if img.TopLayer != top {
			return fmt.Errorf("image %s already exists with other layers: %w", id, cstorage.ErrDuplicateID)
		}
		for _, b := range opts.BigData {
			if err := s.store.SetImageBigData(id, b.Key, b.Data, manifest.Digest); err != nil {
				return fmt.Errorf("save %s of image %s: %w", b.Key, id, err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("create image %s: %w", id, err)
	}
	if err := s.store.AddNames(id, []string{name}); err != nil {
		if created {
			_, _ = s.store.DeleteImage(id, true)
		}
		return fmt.Errorf("name image %s %s: %w", id, name, err)
	}
	return nil
}

// layerDiffer is the c/storage Differ of one layer: it unpacks the blob
// into the staging directory c/storage made for it, and checks the blob
// against its digest and the tar against the config's diff ID.
type layerDiffer struct {
	blob   io.Reader
	digest digest.Digest
	size   int64 // -1 when unknown
	diffID digest.Digest
}

func (d *layerDiffer) ApplyDiff(dest string, _ *archive.TarOptions, _ *drivers.DifferOptions) (drivers.DriverWithDifferOutput, error) {
	if err := d.digest.Validate(); err != nil {
		return drivers.DriverWithDifferOutput{}, fmt.Errorf("blob digest %q: %w", d.digest, err)
	}
	blobHash := d.digest.Algorithm().Hash()
	blob := &countingReader{r: io.TeeReader(d.blob, blobHash)}
	tarStream, _, err := compression.AutoDecompress(blob)
	if err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	defer tarStream.Close()
	tarHash := d.diffID.Algorithm().Hash()
	tarBytes := &countingReader{r: io.TeeReader(tarStream, tarHash)}

	root, err := os.OpenRoot(dest)
	if err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	defer root.Close()
	res, err := unpack.Layer(root, tarBytes)
	if err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	// The decompressor may stop at the end of its stream; what the
	// registry sent after it still counts towards the blob's digest.
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return drivers.DriverWithDifferOutput{}, fmt.Errorf("read blob: %w", err)
	}
	if err := check("blob", d.digest, blobHash, d.size, blob.n); err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	if err := check("uncompressed layer", d.diffID, tarHash, -1, tarBytes.n); err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	return drivers.DriverWithDifferOutput{
		Size:               tarBytes.n,
		UIDs:               res.UIDs,
		GIDs:               res.GIDs,
		UncompressedDigest: d.diffID,
		CompressedDigest:   d.digest,
		RootDirMode:        res.RootMode,
	}, nil
}

func (d *layerDiffer) Close() error { return nil }

func check(what string, want digest.Digest, h hash.Hash, wantSize, size int64) error {
	if wantSize >= 0 && size != wantSize {
		return fmt.Errorf("%s is %d bytes, the manifest says %d", what, size, wantSize)
	}
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return fmt.Errorf("%s digest is %s, expected %s", what, got, want)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// progressReader reports each read of a blob to the pull's watch, as
// go.podman.io/image's copy does, so that a stalled registry is caught.
type progressReader struct {
	ctx  context.Context
	r    io.Reader
	ch   chan<- types.ProgressProperties
	info types.BlobInfo
	n    int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		sendProgress(p.ctx, p.ch, types.ProgressProperties{Event: types.ProgressEventRead, Artifact: p.info, Offset: uint64(p.n), OffsetUpdate: uint64(n)})
	}
	return n, err
}

func sendProgress(ctx context.Context, ch chan<- types.ProgressProperties, p types.ProgressProperties) {
	if ch == nil {
		return
	}
	select {
	case ch <- p:
	case <-ctx.Done():
	}
}
