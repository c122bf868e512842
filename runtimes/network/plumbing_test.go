package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the fake plugin and need neither root nor real plugins.

func fakePod() Attachment {
	return Attachment{PodID: "pod-c", Name: "web", Namespace: "ns1", UID: "u-1", NetNS: "/nonexistent/netns/pod-c",
		PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80}, {ContainerPort: 9090}}}
}

var wantMappings = []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}

func commands(calls []fakeCall) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Command)
	}
	return out
}

func TestPluginArguments(t *testing.T) {
	capture, cache := t.TempDir(), t.TempDir()
	m := fakeManager(t, capture, cache, "")
	ctx := context.Background()
	a := fakePod()
	if _, err := m.Setup(ctx, a); err != nil {
		t.Fatalf("Setup() error = %v", err)
	}
	// A caller that no longer knows the mappings (the reconciler after a
	// restart) still gets them to CHECK and DEL, from libcni's cache.
	bare := a
	bare.PortMappings = nil
	if err := m.Check(ctx, bare); err != nil {
		t.Fatalf("Check() error = %v", err)
	}
	if err := m.Teardown(ctx, bare); err != nil {
		t.Fatalf("Teardown() error = %v", err)
	}
	if err := m.Teardown(ctx, bare); err != nil {
		t.Fatalf("second Teardown() error = %v", err)
	}
	if err := m.Check(ctx, bare); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Check() after Teardown = %v, want ErrNotAttached", err)
	}

	calls := fakeCalls(t, capture)
	if got, want := commands(calls), []string{"ADD", "CHECK", "DEL", "DEL"}; !slices.Equal(got, want) {
		t.Fatalf("plugin calls = %v, want %v", got, want)
	}
	wantArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod-c;K8S_POD_UID=u-1"
	for i, c := range calls {
		if c.Args != wantArgs || c.ContainerID != "pod-c" || c.IfName != "eth0" || c.NetNS != a.NetNS {
			t.Errorf("call %d %s: args %q id %q if %q netns %q; want %q pod-c eth0 %q",
				i, c.Command, c.Args, c.ContainerID, c.IfName, c.NetNS, wantArgs, a.NetNS)
		}
		want := wantMappings
		if i == 3 { // the cache went with the first DEL
			want = nil
		}
		if got := c.Conf.RuntimeConfig.PortMappings; !slices.Equal(got, want) {
			t.Errorf("call %d %s: portMappings = %v, want %v", i, c.Command, got, want)
		}
	}
}

func TestTeardownUsesCachedConfList(t *testing.T) {
	capture, cache := t.TempDir(), t.TempDir()
	ctx := context.Background()
	if _, err := fakeManager(t, capture, cache, "").Setup(ctx, fakePod()); err != nil {
		t.Fatalf("Setup() error = %v", err)
	}
	// The daemon restarts with a changed conflist: DEL must still reach the
	// plugins as they were configured at ADD time.
	other := t.TempDir()
	if err := fakeManager(t, other, cache, "").Teardown(ctx, fakePod()); err != nil {
		t.Fatalf("Teardown() error = %v", err)
	}
	if got := commands(fakeCalls(t, capture)); !slices.Equal(got, []string{"ADD", "DEL"}) {
		t.Errorf("calls under the ADD-time config = %v, want [ADD DEL]", got)
	}
	if got := fakeCalls(t, other); len(got) != 0 {
		t.Errorf("calls under the new config = %v, want none", commands(got))
	}
}

func TestSetupFailureRunsDel(t *testing.T) {
	tests := []struct {
		name    string
		failOn  string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr []string
	}{
		{"plugin fails", "ADD", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Minute)
		}, []string{"told to fail on ADD"}},
		{"plugin and undo fail", "ADD DEL", nil, []string{"told to fail on ADD", "undo cni add pod-c", "told to fail on DEL"}},
		{"caller's context done", "", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, []string{"context canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			capture := t.TempDir()
			m := fakeManager(t, capture, t.TempDir(), tt.failOn)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			ips, err := m.Setup(ctx, fakePod())
			if err == nil {
				t.Fatalf("Setup() = %v, nil; want an error", ips)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Setup() error = %q, want it to contain %q", err, want)
				}
			}
			calls := fakeCalls(t, capture)
			if tt.name == "caller's context done" {
				// ADD never started; the undo DEL ran on a fresh context.
				if got := commands(calls); !slices.Equal(got, []string{"DEL"}) {
					t.Fatalf("plugin calls = %v, want [DEL]", got)
				}
			} else if got := commands(calls); !slices.Equal(got, []string{"ADD", "DEL"}) {
				t.Fatalf("plugin calls = %v, want [ADD DEL]", got)
			}
			if got := calls[len(calls)-1].Conf.RuntimeConfig.PortMappings; !slices.Equal(got, wantMappings) {
				t.Errorf("undo DEL portMappings = %v, want %v", got, wantMappings)
			}
		})
	}
}

func TestConcurrentFakePods(t *testing.T) {
	capture := t.TempDir()
	m := fakeManager(t, capture, t.TempDir(), "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a := fakePod()
			a.PodID = fmt.Sprintf("pod-%d", i)
			if _, err := m.Setup(context.Background(), a); err != nil {
				t.Errorf("Setup(%s) error = %v", a.PodID, err)
			}
			if err := m.Check(context.Background(), a); err != nil {
				t.Errorf("Check(%s) error = %v", a.PodID, err)
			}
			if err := m.Teardown(context.Background(), a); err != nil {
				t.Errorf("Teardown(%s) error = %v", a.PodID, err)
			}
		})
	}
	wg.Wait()
	if got := len(fakeCalls(t, capture)); got != 8*3 {
		t.Errorf("plugin calls = %d, want %d", got, 8*3)
	}
}

func TestSetupTwice(t *testing.T) {
	capture := t.TempDir()
	m := fakeManager(t, capture, t.TempDir(), "")
	ctx := context.Background()
	if _, err := m.Setup(ctx, fakePod()); err != nil {
		t.Fatalf("Setup() error = %v", err)
	}
	// A second Setup must not ADD again, nor undo the first one.
	if _, err := m.Setup(ctx, fakePod()); !errors.Is(err, ErrAlreadyAttached) {
		t.Errorf("second Setup() error = %v, want ErrAlreadyAttached", err)
	}
	if got := commands(fakeCalls(t, capture)); !slices.Equal(got, []string{"ADD"}) {
		t.Errorf("plugin calls = %v, want [ADD]", got)
	}
	if err := m.Teardown(ctx, fakePod()); err != nil {
		t.Fatalf("Teardown() error = %v", err)
	}
	if _, err := m.Setup(ctx, fakePod()); err != nil {
		t.Errorf("Setup() after Teardown error = %v", err)
	}
}

// A pin whose mount is gone is a plain file: plugins refuse it ("unknown FS
// magic") on every try, so DEL goes without a netns and still releases.
func TestTeardownOfStalePinDropsNetNS(t *testing.T) {
	capture, cache := t.TempDir(), t.TempDir()
	m := fakeManager(t, capture, cache, "")
	a := fakePod()
	a.NetNS = filepath.Join(t.TempDir(), "pod-c") // a file, not a namespace
	if err := os.WriteFile(a.NetNS, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(context.Background(), a); err != nil {
		t.Fatalf("Teardown() error = %v", err)
	}
	calls := fakeCalls(t, capture)
	if len(calls) != 1 || calls[0].Command != "DEL" || calls[0].NetNS != "" {
		t.Errorf("plugin calls = %+v, want one DEL without a netns", calls)
	}
}
