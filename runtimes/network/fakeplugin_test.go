package network

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakePlugin is the name under which the test binary acts as a CNI plugin
// (through a symlink in a temporary plugin directory). It records each call
// and passes prevResult through, so tests can see exactly what a plugin is
// given without root, iptables or a real plugin.
const fakePlugin = "crisp-capture"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == fakePlugin {
		os.Exit(runFakePlugin())
	}
	// A -race binary sleeps a second at exit (atexit_sleep_ms); spare the
	// fake plugin runs, which are this binary. Read only by children.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// fakeCall is one recorded plugin call.
type fakeCall struct {
	Command, ContainerID, IfName, NetNS, Args string
	Conf                                      struct {
		CaptureDir    string          `json:"captureDir"`
		FailOn        string          `json:"failOn"` // commands to fail, space-separated
		PrevResult    json.RawMessage `json:"prevResult"`
		RuntimeConfig struct {
			PortMappings []PortMapping `json:"portMappings"`
		} `json:"runtimeConfig"`
	}
}

func runFakePlugin() int {
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		return 1
	}
	c := fakeCall{Command: os.Getenv("CNI_COMMAND"), ContainerID: os.Getenv("CNI_CONTAINERID"),
		IfName: os.Getenv("CNI_IFNAME"), NetNS: os.Getenv("CNI_NETNS"), Args: os.Getenv("CNI_ARGS")}
	if err := json.Unmarshal(stdin, &c.Conf); err != nil {
		return 1
	}
	line, _ := json.Marshal(c)
	f, err := os.OpenFile(filepath.Join(c.Conf.CaptureDir, "calls.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 1
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s\n", line); err != nil {
		return 1
	}
	switch {
	case slices.Contains(strings.Fields(c.Conf.FailOn), c.Command):
		fmt.Printf(`{"cniVersion": "1.0.0", "code": 999, "msg": "told to fail on %s"}`, c.Command)
		return 1
	case c.Command != "ADD":
		return 0
	case len(c.Conf.PrevResult) > 0:
		os.Stdout.Write(c.Conf.PrevResult)
	default:
		fmt.Print(`{"cniVersion": "1.0.0"}`)
	}
	return 0
}

// fakeManager returns a Manager whose network is the fake plugin alone,
// recording into captureDir, with its cache in cacheDir.
func fakeManager(t *testing.T, captureDir, cacheDir, failOn string) *Manager {
	t.Helper()
	plugins := fakePluginDir(t)
	conf := fmt.Appendf(nil, `{"cniVersion": "1.0.0", "name": %q, "plugins": [{"type": %q,
	  "captureDir": %q, "failOn": %q, "capabilities": {"portMappings": true}}]}`, testNet, fakePlugin, captureDir, failOn)
	m, err := New(Config{ConfDir: confDir(t, conf), PluginDirs: []string{plugins}, CacheDir: cacheDir, NetNSDir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if err := m.Status(); err != nil {
		t.Fatalf("Status() error = %v", err)
	}
	return m
}

// fakeCalls reads the calls recorded in dir, oldest first.
func fakeCalls(t *testing.T, dir string) []fakeCall {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "calls.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []fakeCall
	s := bufio.NewScanner(f)
	for s.Scan() {
		var c fakeCall
		if err := json.Unmarshal(s.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, c)
	}
	return calls
}
