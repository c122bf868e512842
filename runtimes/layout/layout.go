// Package layout is where crisp keeps things under its run dir, and the
// one place that says so: every path of a container (its bundle and the
// files its monitor leaves there, its exit file, its attach socket) is a
// method of Container, and the run dir's sub-directories are methods of
// Layout. A container's leftovers are removed here too, so that the CRI
// server and the reconciler cannot disagree about what they are.
//
// It imports nothing from crisp. A pod's own directory and its files
// belong to package pod, below Pods().
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Layout is the run dir's layout. The zero value is unusable; build one
// with New once, at start.
type Layout struct{ runDir string }

// New returns the layout under runDir.
func New(runDir string) Layout { return Layout{runDir: filepath.Clean(runDir)} }

// RunDir is the run dir itself.
func (l Layout) RunDir() string { return l.runDir }

// Bundles holds one bundle directory per container, named by its id. The
// name is short on purpose: conmon's attach socket lives in the bundle,
// and a socket path must fit in 108 bytes.
func (l Layout) Bundles() string { return filepath.Join(l.runDir, "c") }

// Exits holds the exit file every monitor writes when its container exits
// (conmon's --exit-dir), named by the container's id.
func (l Layout) Exits() string { return filepath.Join(l.runDir, "exits") }

// Attach is conmon's --socket-dir-path. With --full-attach the attach
// socket is in the bundle instead, but conmon wants the dir to exist.
func (l Layout) Attach() string { return filepath.Join(l.runDir, "attach") }

// Pods holds one directory per pod (see package pod).
func (l Layout) Pods() string { return filepath.Join(l.runDir, "pods") }

// NetNS holds the pinned network namespaces (see package network).
func (l Layout) NetNS() string { return filepath.Join(l.runDir, "netns") }

// Features holds each runtime's answer to `<runtime> features`, by
// handler name, so that a restart in the same boot need not ask again.
func (l Layout) Features() string { return filepath.Join(l.runDir, "features") }

// Dirs are the directories crispd creates at start.
func (l Layout) Dirs() []string {
	return []string{l.Bundles(), l.Exits(), l.Attach(), l.Pods(), l.NetNS(), l.Features()}
}

// Container returns the paths of container id. The id is not checked
// here: ids are crisp's own (64 hex digits) or the runtime's, never a
// client's name; CheckID refuses one that could leave the run dir.
func (l Layout) Container(id string) Container {
	return Container{ID: id, Bundle: filepath.Join(l.Bundles(), id), ExitFile: filepath.Join(l.Exits(), id)}
}

// CheckID refuses an id that is no single path element.
func CheckID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// Container is where one container's files are.
type Container struct {
	ID       string
	Bundle   string // the OCI bundle: config.json, and the monitor's files
	ExitFile string // the monitor writes the exit code here
}

// Files in a container's bundle.
const (
	specName        = "config.json"  // the OCI spec
	rootfsName      = "rootfs"       // an infra container's empty rootfs
	initPidName     = "pidfile"      // the container's init pid (conmon -p)
	conmonPidName   = "conmon.pid"   // conmon's own pid (-P)
	conmonLogName   = "conmon.log"   // conmon's stderr until it daemonises
	ctlFifoName     = "ctl"          // conmon's control FIFO (log reopen, resize)
	attachSockName  = "attach"       // conmon's attach socket (--full-attach)
	monitorPidName  = "monitor.pid"  // crisp's own monitor's pid (gVisor sub-containers)
	monitorLogName  = "monitor.log"  // its stderr
	monitorSockName = "monitor.sock" // its start requests
	persistExitName = "exit"         // the exit code again (--persist-dir is the bundle)
	persistOOMName  = "oom"          // left after an OOM kill
	consoleLogName  = "console.log"  // output of a container kubelet asked no log for
	infraLogName    = "infra.log"    // an infra container's output
)

// Spec is the container's OCI spec.
func (c Container) Spec() string { return c.file(specName) }

// Rootfs is the empty rootfs of an infra container.
func (c Container) Rootfs() string { return c.file(rootfsName) }

// InitPidFile holds the init pid the monitor recorded at create.
func (c Container) InitPidFile() string { return c.file(initPidName) }

// ConmonPidFile holds conmon's own pid.
func (c Container) ConmonPidFile() string { return c.file(conmonPidName) }

// ConmonLog gets conmon's stderr.
func (c Container) ConmonLog() string { return c.file(conmonLogName) }

// CtlFifo is conmon's control FIFO.
func (c Container) CtlFifo() string { return c.file(ctlFifoName) }

// AttachSocket is conmon's attach socket.
func (c Container) AttachSocket() string { return c.file(attachSockName) }

// MonitorPidFile holds crisp's own monitor's pid.
func (c Container) MonitorPidFile() string { return c.file(monitorPidName) }

// MonitorLog gets crisp's own monitor's stderr.
func (c Container) MonitorLog() string { return c.file(monitorLogName) }

// MonitorSocket is where crisp's own monitor takes start requests.
func (c Container) MonitorSocket() string { return c.file(monitorSockName) }

// PersistDir is the monitor's --persist-dir: the bundle.
func (c Container) PersistDir() string { return c.Bundle }

// PersistExitFile is the exit code as the monitor keeps it in the bundle.
func (c Container) PersistExitFile() string { return c.file(persistExitName) }

// OOMFile exists after the container was OOM-killed.
func (c Container) OOMFile() string { return c.file(persistOOMName) }

// ConsoleLog is the log of a container kubelet asked no log for: conmon
// needs one.
func (c Container) ConsoleLog() string { return c.file(consoleLogName) }

// InfraLog is an infra container's log.
func (c Container) InfraLog() string { return c.file(infraLogName) }

func (c Container) file(name string) string { return filepath.Join(c.Bundle, name) }

// MonitorPidFiles are the files a monitor may have left its pid in: a
// stale one must go before a new monitor starts.
func (c Container) MonitorPidFiles() []string {
	return []string{c.InitPidFile(), c.ConmonPidFile(), c.MonitorPidFile()}
}

// RemoveFiles removes the container's bundle and exit file. What is
// already gone is no error. Kill its monitor first (oci.RemoveLeftovers
// does both): a live monitor would write the exit file again.
func (c Container) RemoveFiles() error {
	if err := CheckID(c.ID); err != nil {
		return err
	}
	var errs []error
	if err := os.RemoveAll(c.Bundle); err != nil {
		errs = append(errs, fmt.Errorf("remove bundle of container %s: %w", c.ID, err))
	}
	if err := os.Remove(c.ExitFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove exit file of container %s: %w", c.ID, err))
	}
	return errors.Join(errs...)
}

// SpecFileName is the spec's name in a bundle, and beside a container's
// storage record, where a copy outlives a reboot.
const SpecFileName = specName

// ReadSpec reads the container's OCI spec.
func (c Container) ReadSpec() (*specs.Spec, error) { return ReadSpec(c.Spec()) }

// WriteSpec writes the container's OCI spec (and, for each of also, a
// copy in that directory), readable by root alone: it holds the
// container's environment.
func (c Container) WriteSpec(spec *specs.Spec, also ...string) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode OCI spec of container %s: %w", c.ID, err)
	}
	for _, p := range append([]string{c.Spec()}, specPaths(also)...) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return fmt.Errorf("write OCI spec of container %s: %w", c.ID, err)
		}
	}
	return nil
}

func specPaths(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Join(d, specName)
	}
	return out
}

// ReadSpec reads an OCI spec file.
func ReadSpec(path string) (*specs.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("decode OCI spec %s: %w", path, err)
	}
	return &spec, nil
}
