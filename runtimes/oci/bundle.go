package oci

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations by which runsc tells a pod's sandbox container from the
// containers that join it: containerd's, then CRI-O's, as runsc reads them.
var containerTypeAnnotations = []string{
	"io.kubernetes.cri.container-type",
	"io.kubernetes.cri-o.ContainerType",
}

// readSpec reads the bundle's config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &spec, nil
}

// isSubcontainer reports whether the bundle's spec makes runsc run the
// container inside an existing sandbox: the first container-type
// annotation present says "container". An unreadable spec is not one.
func isSubcontainer(bundle string) bool {
	spec, err := readSpec(bundle)
	if err != nil {
		return false
	}
	for _, key := range containerTypeAnnotations {
		if t, ok := spec.Annotations[key]; ok {
			return t == "container"
		}
	}
	return false
}

// specCgroupsPath returns linux.cgroupsPath from the bundle's config.json,
// or "" if it cannot.
func specCgroupsPath(bundle string) string {
	spec, err := readSpec(bundle)
	if err != nil || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// isConmon reports whether pid is a live conmon process (a zombie is not).
func isConmon(pid int) bool {
	if _, ok := procAlive(pid); !ok {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "conmon"
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}

// tailOf returns "; conmon.log: <last bytes>" for error messages, or "".
func tailOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	const max = 512
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return fmt.Sprintf(" (%s: %s)", filepath.Base(path), strings.TrimSpace(string(b)))
}

// writeFileAtomic writes data to dir/name through a temporary file
// "<name>.XXXXXX" (six random letters or digits, as conmon's exit files
// get, which WatchExits skips) renamed over name.
func writeFileAtomic(dir, name string, data []byte) error {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for range 100 {
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		tmp := filepath.Join(dir, name+"."+string(b))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, name))
		}
		if err != nil {
			os.Remove(tmp)
		}
		return err
	}
	return fmt.Errorf("write %s: no free temporary name", filepath.Join(dir, name))
}

// procAlive reports whether pid exists and is not a zombie, and returns
// its command line (arguments separated by NULs).
func procAlive(pid int) (cmdline string, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i < 0 || strings.HasPrefix(s[i+1:], " Z") {
		return "", false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return string(b), err == nil
}

// InitPID is the container's init pid as its monitor recorded it at
// create, read from the bundle without asking the runtime.
func InitPID(bundle string) (int, error) {
	return readPidFile(filepath.Join(bundle, pidFileName))
}
