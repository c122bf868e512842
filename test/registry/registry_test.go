package registry

import (
	"github.com/crisp-cri/crisp/test/harness"

	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/crisp-cri/crisp/test/images"
)

// testImage is a small two-layer image that needs nothing from the host.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := images.Scratch()
	if err == nil {
		img, err = images.WithPayload(img, 32<<10, 1)
	}
	if err == nil {
		img, err = images.WithPayload(img, 64<<10, 2)
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pull(t *testing.T, r *Registry, repoRef string, auth authn.Authenticator) (v1.Image, error) {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoRef))
	if err != nil {
		t.Fatal(err)
	}
	return remote.Image(ref, remote.WithAuth(auth))
}

// download fetches the config and every layer of img exactly once.
func download(t *testing.T, img v1.Image) {
	t.Helper()
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPushPullCounts(t *testing.T) {
	r := Start(t)
	img := testImage(t)
	want := r.Push(t, "crisp/test:v1", img)
	r.ResetCounts()

	got, err := pull(t, r, "crisp/test:v1", authn.Anonymous)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if d, err := got.Digest(); err != nil || d.String() != want {
		t.Fatalf("pulled digest %v (%v), pushed %s", d, err, want)
	}
	download(t, got)

	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, b := range blobs {
		if n := r.BlobGets(b.String()); n != 1 {
			t.Errorf("BlobGets(%s) = %d, want 1", b, n)
		}
	}
	if n := r.TotalBlobGets(); n != len(blobs) {
		t.Errorf("TotalBlobGets = %d, want %d", n, len(blobs))
	}
	if n := r.ManifestGets("v1"); n != 1 {
		t.Errorf("ManifestGets(v1) = %d, want 1", n)
	}
}

func TestBasicAuth(t *testing.T) {
	r := Start(t, WithBasicAuth("crisp", "s3cret"))
	want := r.Push(t, "crisp/private:v1", testImage(t))

	for _, auth := range []authn.Authenticator{
		authn.Anonymous,
		&authn.Basic{Username: "crisp", Password: "wrong"},
	} {
		_, err := pull(t, r, "crisp/private:v1", auth)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Errorf("pull with %v: err %v, want transport error with status 401", auth, err)
		}
	}

	resp, err := http.Get("http://" + r.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized ||
		resp.Header.Get("WWW-Authenticate") != `Basic realm="crisp-test"` {
		t.Errorf("GET /v2/ without credentials: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	got, err := pull(t, r, "crisp/private:v1", r.Auth())
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if d, err := got.Digest(); err != nil || d.String() != want {
		t.Fatalf("pulled digest %v (%v), pushed %s", d, err, want)
	}
	download(t, got)
}

func TestLatencyConcurrentGets(t *testing.T) {
	const latency, clients = 300 * time.Millisecond, 8
	r := Start(t, WithLatency(latency))
	img := testImage(t)
	r.Push(t, "crisp/slow:v1", img)
	r.ResetCounts()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			resp, err := http.Get("http://" + r.Addr() + "/v2/crisp/slow/blobs/" + blob.String())
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	// Only the lower bound is certain: on a loaded machine overlap is not.
	if elapsed < latency {
		t.Errorf("%d concurrent GETs took %v with latency %v: not delayed", clients, elapsed, latency)
	}
	if n := r.BlobGets(blob.String()); n != clients {
		t.Errorf("BlobGets = %d, want %d", n, clients)
	}
}

func TestSkopeoInspect(t *testing.T) {
	harness.RequireTool(t, "skopeo")
	for _, tc := range []struct {
		name string
		opts []Option
		args []string
	}{
		{"anonymous", nil, nil},
		{"basic-auth", []Option{WithBasicAuth("crisp", "s3cret")}, []string{"--creds", "crisp:s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Start(t, tc.opts...)
			want := r.Push(t, "crisp/skopeo:v1", testImage(t))
			args := append([]string{"inspect", "--tls-verify=false"}, tc.args...)
			args = append(args, "docker://"+r.Ref("crisp/skopeo:v1"))
			out, err := exec.Command("skopeo", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo %v: %v\n%s", args, err, out)
			}
			var got struct{ Digest string }
			if err := json.Unmarshal(out, &got); err != nil || got.Digest != want {
				t.Fatalf("skopeo inspect: digest %q (%v), want %s\n%s", got.Digest, err, want, out)
			}
			if len(tc.args) > 0 {
				// Without the credentials skopeo must be refused.
				bare := []string{"inspect", "--tls-verify=false", "docker://" + r.Ref("crisp/skopeo:v1")}
				if out, err := exec.Command("skopeo", bare...).CombinedOutput(); err == nil {
					t.Errorf("skopeo without credentials succeeded:\n%s", out)
				}
			}
		})
	}
}

// firstLayer is the digest of img's first layer.
func firstLayer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestStall(t *testing.T) {
	const after = 1000
	r := Start(t, WithStall(after))
	img := testImage(t)
	r.Push(t, "crisp/stall:v1", img)
	blob := firstLayer(t, img)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr()+"/v2/crisp/stall/blobs/"+blob.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength <= after {
		t.Fatalf("blob is %d bytes; the test needs one longer than %d", resp.ContentLength, after)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, after)); err != nil {
		t.Fatalf("reading the first %d bytes: %v", after, err)
	}
	// The next byte never comes: the client gives up, and the registry
	// sees it go.
	cancel()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Errorf("read past the stall succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stalled, abandoned := r.Stalls()
		if stalled == 1 && abandoned == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stalls() = %d, %d; want 1 stalled and abandoned", stalled, abandoned)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestThrottle(t *testing.T) {
	const rate = 64 << 10 // the 64 KiB payload layer takes about a second
	r := Start(t, WithThrottle(rate))
	img := testImage(t)
	r.Push(t, "crisp/slow:v1", img)
	got, err := pull(t, r, "crisp/slow:v1", authn.Anonymous)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	download(t, got) // verifies every digest
	// Only the lower bound is certain.
	if elapsed := time.Since(start); elapsed < 500*time.Millisecond {
		t.Errorf("downloading ~96 KiB at %d B/s took %v: not throttled", rate, elapsed)
	}
	if stalled, _ := r.Stalls(); stalled != 0 {
		t.Errorf("throttled registry stalled %d times", stalled)
	}
}
