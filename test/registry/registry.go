// Package registry runs an in-process OCI registry on 127.0.0.1 for crisp's
// image tests. It wraps go-containerregistry's registry with optional basic
// authentication, an artificial blob latency, stalled or throttled blob
// downloads, and per-blob request counters.
package registry

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Realm is the realm of the WWW-Authenticate challenge sent when basic
// authentication is enabled.
const Realm = "crisp-test"

// Option configures a Registry started by Start.
type Option func(*Registry)

// WithBasicAuth makes every request without exactly these basic credentials
// fail with 401 and `WWW-Authenticate: Basic realm="crisp-test"`, including
// the /v2/ ping.
func WithBasicAuth(user, pass string) Option {
	return func(r *Registry) { r.user, r.pass = user, pass }
}

// WithLatency delays the start of every blob GET response by d.
func WithLatency(d time.Duration) Option {
	return func(r *Registry) { r.latency = d }
}

// WithBlobGate holds every blob GET until gate is closed, so a test can
// line up concurrent clients before any download finishes.
func WithBlobGate(gate <-chan struct{}) Option {
	return func(r *Registry) { r.gate = gate }
}

// WithStall makes every blob GET of a blob longer than after bytes send
// its headers and its first after bytes, then send nothing more until the
// client goes away or the registry closes: a stalled connection. Shorter
// blobs are served whole.
func WithStall(after int64) Option {
	return func(r *Registry) { r.stallAfter = after }
}

// WithThrottle sends every blob at about bytesPerSecond, in a write every
// 100 ms: a slow link that never stops moving.
func WithThrottle(bytesPerSecond int) Option {
	return func(r *Registry) { r.throttle = bytesPerSecond }
}

// Registry is a running test registry. Its methods are goroutine-safe.
type Registry struct {
	user, pass string
	latency    time.Duration
	gate       <-chan struct{}
	stallAfter int64 // 0: no stall
	throttle   int   // bytes per second; 0: full speed
	handler    http.Handler
	srv        *httptest.Server
	closing    chan struct{} // closed by Close: stalled handlers return
	closeOnce  sync.Once

	stalled   int // blob GETs that stalled
	abandoned int // stalled GETs whose client then went away

	mu        sync.Mutex
	blobs     map[string]int // digest -> successful GETs
	manifests map[string]int // tag or digest -> successful GETs
}

// Start serves a new, empty registry over plain HTTP on 127.0.0.1 at a free
// port. It is closed by t.Cleanup.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{blobs: map[string]int{}, manifests: map[string]int{}, closing: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	quiet := log.New(io.Discard, "", 0)
	r.handler = ggcrregistry.New(ggcrregistry.Logger(quiet))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry: listen on 127.0.0.1: %v", err)
	}
	r.srv = &httptest.Server{
		Listener: ln,
		Config:   &http.Server{Handler: r, ErrorLog: quiet},
	}
	r.srv.Start()
	t.Cleanup(r.Close)
	return r
}

// Addr returns the registry's "127.0.0.1:PORT".
func (r *Registry) Addr() string { return r.srv.Listener.Addr().String() }

// Ref returns the full reference of repoRef (e.g. "busybox:latest") in this
// registry: "127.0.0.1:PORT/busybox:latest".
func (r *Registry) Ref(repoRef string) string { return r.Addr() + "/" + repoRef }

// Close stops the registry, releasing stalled requests first. It is safe
// to call more than once.
func (r *Registry) Close() {
	r.closeOnce.Do(func() { close(r.closing) })
	r.srv.Close()
}

// Stalls returns how many blob GETs stalled (WithStall) and how many of
// those the client then abandoned, closing its request: a client that
// gives up on a stall leaves no connection open.
func (r *Registry) Stalls() (stalled, abandoned int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stalled, r.abandoned
}

// Auth returns the credentials the registry accepts (authn.Anonymous when
// basic authentication is off).
func (r *Registry) Auth() authn.Authenticator {
	if r.user == "" && r.pass == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.user, Password: r.pass}
}

// Push uploads img as repoRef ("repo:tag", without the registry address)
// and returns the manifest digest ("sha256:..."). It fails t on error.
func (r *Registry) Push(t testing.TB, repoRef string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoRef), name.Insecure)
	if err != nil {
		t.Fatalf("registry: parse %q: %v", repoRef, err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(r.Auth())); err != nil {
		t.Fatalf("registry: push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("registry: digest of %s: %v", ref, err)
	}
	return d.String()
}

// BlobGets returns how many GET requests for blob digest ("sha256:...") in
// any repository the registry answered with a 2xx status.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[digest]
}

// TotalBlobGets returns the number of blob GETs answered with a 2xx status,
// over all digests and repositories.
func (r *Registry) TotalBlobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.blobs {
		n += c
	}
	return n
}

// ManifestGets returns how many GET requests for manifest ref (a tag or a
// digest, as it appears in the URL) in any repository the registry answered
// with a 2xx status.
func (r *Registry) ManifestGets(ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifests[ref]
}

// ResetCounts sets every request counter back to zero.
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.blobs)
	clear(r.manifests)
}

// ServeHTTP authenticates, delays and counts req, then hands it to the
// go-containerregistry handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.user != "" || r.pass != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.user || p != r.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
	}
	kind, key := classify(req.URL.Path)
	if req.Method != http.MethodGet || kind == "" {
		r.handler.ServeHTTP(w, req)
		return
	}
	if kind == "blobs" {
		w = r.shape(w, req)
	}
	if kind == "blobs" && r.latency > 0 {
		select {
		case <-time.After(r.latency):
		case <-req.Context().Done():
			return
		}
	}
	// Count when the status is written, before the client can see the
	// answer, so a client that has its response is always counted.
	if kind == "blobs" && r.gate != nil {
		select {
		case <-r.gate:
		case <-req.Context().Done():
			return
		}
	}
	sw := &statusWriter{ResponseWriter: w, onStatus: func(code int) {
		if code < 200 || code > 299 {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if kind == "blobs" {
			r.blobs[key]++
		} else {
			r.manifests[key]++
		}
	}}
	r.handler.ServeHTTP(sw, req)
}

// classify splits "/v2/<repo>/blobs/<digest>" and
// "/v2/<repo>/manifests/<ref>" into kind and key; other paths (including
// blob uploads) give kind "".
func classify(path string) (kind, key string) {
	elem := strings.Split(strings.TrimSuffix(path, "/"), "/")
	// "", "v2", repo components (at least one), kind, key
	if len(elem) < 5 || elem[1] != "v2" {
		return "", ""
	}
	kind, key = elem[len(elem)-2], elem[len(elem)-1]
	if kind != "blobs" && kind != "manifests" {
		return "", ""
	}
	return kind, key
}

// statusWriter records the status code a handler sends.
type statusWriter struct {
	http.ResponseWriter
	wrote    bool
	onStatus func(code int) // called once, before the status reaches the client
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		s.onStatus(code)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// shape wraps a blob response in the configured stall or throttle.
func (r *Registry) shape(w http.ResponseWriter, req *http.Request) http.ResponseWriter {
	if r.stallAfter > 0 {
		w = &stallWriter{ResponseWriter: w, left: r.stallAfter, stall: func() { r.stall(req) }}
	}
	if r.throttle > 0 {
		w = &throttleWriter{ResponseWriter: w, chunk: max(r.throttle/10, 1), every: 100 * time.Millisecond, req: req, closing: r.closing}
	}
	return w
}

// stall blocks a stalled response until its client goes away (counted)
// or the registry closes.
func (r *Registry) stall(req *http.Request) {
	r.mu.Lock()
	r.stalled++
	r.mu.Unlock()
	select {
	case <-req.Context().Done():
		r.mu.Lock()
		r.abandoned++
		r.mu.Unlock()
	case <-r.closing:
	}
}

// errStalled ends a stalled response's handler.
var errStalled = errors.New("registry: blob response stalled on purpose")

// stallWriter passes the first left bytes of a body, flushed, then stalls.
type stallWriter struct {
	http.ResponseWriter
	left  int64
	stall func()
}

func (s *stallWriter) Write(b []byte) (int, error) {
	if int64(len(b)) <= s.left {
		s.left -= int64(len(b))
		return s.ResponseWriter.Write(b)
	}
	n, err := s.ResponseWriter.Write(b[:s.left])
	s.left = 0
	if err != nil {
		return n, err
	}
	http.NewResponseController(s.ResponseWriter).Flush()
	s.stall()
	return n, errStalled
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// throttleWriter writes a body chunk bytes at a time, flushed, one chunk
// every interval.
type throttleWriter struct {
	http.ResponseWriter
	chunk   int
	every   time.Duration
	req     *http.Request
	closing <-chan struct{}
}

func (t *throttleWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(t.chunk, len(b))
		m, err := t.ResponseWriter.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		http.NewResponseController(t.ResponseWriter).Flush()
		b = b[n:]
		select {
		case <-time.After(t.every):
		case <-t.req.Context().Done():
			return written, t.req.Context().Err()
		case <-t.closing:
			return written, errStalled
		}
	}
	return written, nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *throttleWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
