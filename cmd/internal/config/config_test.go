package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if err == nil {
		t.Fatalf("Load(missing file) = nil error, want one naming the file")
	}
	c, err = Load("")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"socket": "/run/crisp/crisp.sock", "admin": "/run/crisp/admin.sock", "db": "/var/lib/crisp/state.db",
		"runc root": "/run/crisp/runc", "runsc class": "untrusted",
	}
	got := map[string]string{
		"socket": c.Socket, "admin": c.AdminSocket, "db": c.Database,
		"runc root": c.Runtimes["runc"].Root, "runsc class": c.Runtimes["runsc"].Class,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults = %v, want %v", got, want)
	}
	if c.Reconciler.Interval.Duration != 30*time.Second {
		t.Errorf("reconciler.interval = %v, want 30s", c.Reconciler.Interval)
	}
	// containerd's default: five minutes without a byte.
	if c.Storage.PullProgressTimeout.Duration != 5*time.Minute || c.Storage.UsageRefreshInterval.Duration != time.Minute || len(c.PinnedImages) != 0 {
		t.Errorf("image_pull_progress_timeout = %v, usage_refresh_interval = %v, pinned_images = %v; want 5m, 1m, none",
			c.Storage.PullProgressTimeout, c.Storage.UsageRefreshInterval, c.PinnedImages)
	}
}

// What `crispd config` prints loads back to the same config.
func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.toml")
	os.WriteFile(in, []byte("state_dir = \"/tmp/x\"\npinned_images = [\"registry.k8s.io/*\"]\n[storage]\nimage_pull_progress_timeout = \"0s\"\n[reconciler]\ngrace = \"5s\"\n[runtimes.kata]\npath = \"/bin/kata\"\ntype = \"runsc\"\nclass = \"untrusted\"\n"), 0o644)
	c, err := Load(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "# Time limit of each repair.") {
		t.Errorf("printed config has no help comments:\n%s", buf.String())
	}
	out := filepath.Join(dir, "out.toml")
	os.WriteFile(out, buf.Bytes(), 0o644)
	back, err := Load(out)
	if err != nil {
		t.Fatalf("Load(printed) = %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
}

func TestRejects(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown key", "sockett = \"/x\"\n", "unknown keys"},
		{"bad class", "[runtimes.runc]\nclass = \"maybe\"\n", "class must be trusted or untrusted"},
		{"bad level", "log_level = \"loud\"\n", "log_level"},
		{"bad duration", "[reconciler]\ninterval = \"soon\"\n", "interval"},
		{"untrusted default runtime", "[trust]\ndefault_runtime = \"runsc\"\n", "default_runtime"},
		{"unknown untrusted runtime", "[trust]\nuntrusted_runtime = \"kata\"\n", "untrusted_runtime"},
		{"bad fallback", "[trust]\nuntrusted_fallback = \"maybe\"\n", "untrusted_fallback"},
		{"bad type", "[runtimes.runc]\ntype = \"crun\"\n", "type must be runc or runsc"},
		{"unknown network", "[runtimes.runsc]\nnetwork = \"none\"\n", "runtimes.runsc.network must be sandbox or host"},
		{"network on runc", "[runtimes.runc]\nnetwork = \"host\"\n", "only a handler of type runsc has a network mode"},
		{"network on a new runc handler", "[runtimes.fast]\npath = \"/bin/runc\"\ntype = \"runc\"\nclass = \"trusted\"\nnetwork = \"sandbox\"\n",
			"runtimes.fast.network"},
		{"--network in extra_args", "[runtimes.runsc]\nextra_args = [\"--oci-seccomp\", \"--network=host\"]\n",
			`runtimes.runsc.extra_args[1] = "--network=host": set runtimes.runsc.network`},
		{"-network in extra_args", "[runtimes.runsc]\nextra_args = [\"-network\", \"none\"]\n", "set runtimes.runsc.network"},
		{"unknown platform", "[runtimes.runsc]\nplatform = \"xen\"\n", "runtimes.runsc.platform must be systrap, ptrace or kvm"},
		{"platform on runc", "[runtimes.runc]\nplatform = \"ptrace\"\n", "only a handler of type runsc has a platform"},
		{"--platform in extra_args", "[runtimes.runsc]\nextra_args = [\"--platform=ptrace\"]\n", "set runtimes.runsc.platform"},
		{"untrusted handler that does not sandbox", "[runtimes.runc]\nclass = \"untrusted\"\n", "runtimes.runc.class is untrusted but its type runc does not sandbox"},
		{"bad host access", "[trust]\nuntrusted_host_access = \"sometimes\"\n", "untrusted_host_access"},
		{"annotation pattern with an inner *", "[runtimes.runsc]\npod_annotations = [\"a*b\"]\n", `annotation pattern "a*b"`},
		{"empty annotation pattern", "[runtimes.runc]\ncontainer_annotations = [\"\"]\n", "annotation pattern"},
		{"no request slots", "max_concurrent_requests = 0\n", "max_concurrent_requests"},
		{"no events buffer", "events_buffer = 0\n", "events_buffer"},
		{"negative pull progress timeout", "[storage]\nimage_pull_progress_timeout = \"-1s\"\n", "image_pull_progress_timeout"},
		{"no usage refresh", "[storage]\nusage_refresh_interval = \"0s\"\n", "usage_refresh_interval"},
		{"relative conf dir", "[network]\nconf_dir = \"net.d\"\n", "network.conf_dir"},
		{"unknown network fallback", "[network]\nfallback = \"loopback\"\n", "network.fallback must be bridge or none"},
		{"no fallback and no conf dir", "[network]\nconf_dir = \"\"\nfallback = \"none\"\n", "pods could never have a network"},
		{"bridge subnet not a CIDR", "[network.bridge]\nsubnet = \"10.0.0.0\"\n", "network.bridge.subnet"},
		{"unknown egress", "[network.bridge]\negress = \"nat\"\n", "network.bridge.egress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(p, []byte(tt.body), 0o644)
			c, err := Load(p)
			if err == nil {
				err = c.Resolve()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load+Resolve = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// A file that sets one key of a handler keeps the handler's other defaults.
func TestPartialHandlerOverride(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(p, []byte("[runtimes.runsc]\nextra_args = [\"--debug\"]\n"), 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	h := c.Runtimes["runsc"]
	if h.Path != "/usr/local/sbin/runsc" || h.Platform != "systrap" || h.Class != "untrusted" || h.Type != "runsc" || h.Network != "sandbox" ||
		len(h.ExtraArgs) != 1 || h.ExtraArgs[0] != "--debug" {
		t.Errorf("runsc after partial override = %+v, want the defaults with extra_args [--debug]", h)
	}
	if c.Runtimes["runc"].Path != "/usr/sbin/runc" {
		t.Errorf("runc lost its defaults: %+v", c.Runtimes["runc"])
	}
}

// runsc's network mode: sandbox unless the file says host, for the
// built-in handler and for one the file adds; runc has none.
func TestHandlerNetwork(t *testing.T) {
	tests := []struct {
		name, body string
		want       map[string]string // handler -> network
	}{
		{"defaults", "", map[string]string{"runc": "", "runsc": "sandbox"}},
		{"host mode", "[runtimes.runsc]\nnetwork = \"host\"\n", map[string]string{"runc": "", "runsc": "host"}},
		{"new runsc handler", "[runtimes.gvisor]\npath = \"/usr/local/bin/runsc\"\ntype = \"runsc\"\nclass = \"untrusted\"\n",
			map[string]string{"runc": "", "runsc": "sandbox", "gvisor": "sandbox"}},
		{"flags that only start alike stay", "[runtimes.runsc]\nextra_args = [\"--oci-seccomp\", \"--net-raw\"]\n",
			map[string]string{"runc": "", "runsc": "sandbox"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(p, []byte(tt.body), 0o644)
			c, err := Load(p)
			if err == nil {
				err = c.Resolve()
			}
			if err != nil {
				t.Fatalf("Load+Resolve = %v", err)
			}
			got := map[string]string{}
			for name, h := range c.Runtimes {
				got[name] = h.Network
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("networks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDefaultRunscArgs(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if h := c.Runtimes["runsc"]; !reflect.DeepEqual(h.ExtraArgs, []string{"--oci-seccomp"}) || h.Network != NetworkSandbox {
		t.Errorf("default runsc handler = %+v, want network sandbox and extra_args [--oci-seccomp]", h)
	}
}
