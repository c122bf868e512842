package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// Subcommands of the test binary, which plays crispd: the first runs
// RunMonitor, as `crispd monitor` does; the second creates and starts one
// container, then exits, as a crispd that goes away would.
const (
	testMonitorCmd = "crisp-test-monitor"
	testLaunchCmd  = "crisp-test-launch"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case testMonitorCmd:
			a, err := ParseMonitorArgs(os.Args[2:])
			if err == nil {
				err = RunMonitor(a)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case testLaunchCmd:
			if err := launchMain(os.Args[2]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	// The monitor's first stage is this binary, and Create waits for it
	// to exit: under -race, not a second later (the race runtime's
	// default atexit_sleep_ms). Races in monitors end up in monitor.log,
	// which cleanupContainer checks.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	code := m.Run()
	// runsc --network=none (these tests' only use of it) pins an empty
	// network namespace in its root, kept for the next sandbox.
	if err := unix.Unmount(filepath.Join(testRoot, TypeRunsc, "null-netns"), unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		fmt.Fprintln(os.Stderr, "unmount runsc's null-netns:", err)
	}
	os.Exit(code)
}

// launchJob is what testLaunchCmd gets, as JSON.
type launchJob struct {
	Handler Handler
	Conmon  string
	RunDir  string // the launcher's layout, as crispd's would be after a restart
	Opts    CreateOpts
}

func launchMain(job string) error {
	var j launchJob
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := New(j.Handler, j.Conmon, layout.New(j.RunDir), nil)
	if _, err := rt.Create(ctx, j.Opts); err != nil {
		return err
	}
	return rt.Start(ctx, j.Opts.ID)
}

// testMonitor is Handler.Monitor for the test binary.
func testMonitor(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, testMonitorCmd}
}
