package oci

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

// Annotations by which runsc tells a pod's sandbox container from the
// containers that join it: containerd's, then CRI-O's, as runsc reads them.
var containerTypeAnnotations = []string{
	"io.kubernetes.cri.container-type",
	"io.kubernetes.cri-o.ContainerType",
}

// isSubcontainer reports whether the bundle's spec makes runsc run the
// container inside an existing sandbox: the first container-type
// annotation present says "container". An unreadable spec is not one.
func isSubcontainer(files layout.Container) bool {
	spec, err := files.ReadSpec()
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
func specCgroupsPath(files layout.Container) string {
	spec, err := files.ReadSpec()
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

// writeFileAtomic writes data to path through a temporary file
// "<path>.XXXXXX" (six random letters or digits, as conmon's exit files
// get, which WatchExits skips) renamed over path.
func writeFileAtomic(path string, data []byte) error {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for range 100 {
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		tmp := path + "." + string(b)
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
			err = os.Rename(tmp, path)
		}
		if err != nil {
			os.Remove(tmp)
		}
		return err
	}
	return fmt.Errorf("write %s: no free temporary name", path)
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
func InitPID(files layout.Container) (int, error) {
	return readPidFile(files.InitPidFile())
}
