// Package pod owns a pod's own corner of the node: its directory under the
// run dir with the files its containers mount (resolv.conf, hostname,
// hosts), its /dev/shm, and pinned IPC and UTS namespaces that outlive any
// one container, so that a runc pod needs no infra process. The network
// namespace belongs to package network. It imports nothing from crisp.
package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crisp-cri/crisp/runtimes/host"
)

// DNS is a pod's DNS configuration, as kubelet sends it.
type DNS struct {
	Servers, Searches, Options []string
}

// Options describe the pod to prepare.
type Options struct {
	ID       string
	Hostname string
	DNS      *DNS // nil: copy the host's resolv.conf
	HostIPC  bool // share the host's IPC namespace and /dev/shm
	HostUTS  bool // host network: the host's UTS namespace
	ShmSize  int64
}

// Pod is what Create made; paths are empty for what the pod does not have.
type Pod struct {
	Dir        string
	ResolvConf string
	HostnameF  string
	Hosts      string
	Shm        string // tmpfs mount point, bind-mounted at the containers' /dev/shm
	IPCNS      string // pinned IPC namespace
	UTSNS      string // pinned UTS namespace, its hostname set
}

// DefaultShmSize is a pod's /dev/shm size, as Docker and kubelet default it.
const DefaultShmSize = 64 << 20

// hostResolvConf is read when a pod has no DNS config of its own.
var hostResolvConf = "/etc/resolv.conf"

var validID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Dir returns the directory of pod id under root.
func Dir(root, id string) string { return filepath.Join(root, id) }

// Create makes pod o's directory, files, /dev/shm and pinned namespaces
// under root. On failure it removes whatever it made.
func Create(root string, o Options) (_ Pod, retErr error) {
	if !validID.MatchString(o.ID) {
		return Pod{}, fmt.Errorf("pod id %q is not 64 hex characters", o.ID)
	}
	p := Pod{Dir: Dir(root, o.ID)}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return Pod{}, fmt.Errorf("create pod dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			Remove(root, o.ID)
		}
	}()
	var err error
	if p.ResolvConf, err = writeResolvConf(p.Dir, o.DNS); err != nil {
		return Pod{}, err
	}
	p.HostnameF = filepath.Join(p.Dir, "hostname")
	if err := os.WriteFile(p.HostnameF, []byte(o.Hostname+"\n"), 0o644); err != nil {
		return Pod{}, fmt.Errorf("write hostname: %w", err)
	}
	p.Hosts = filepath.Join(p.Dir, "hosts")
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if o.Hostname != "" {
		hosts += "127.0.1.1\t" + o.Hostname + "\n"
	}
	if err := os.WriteFile(p.Hosts, []byte(hosts), 0o644); err != nil {
		return Pod{}, fmt.Errorf("write hosts: %w", err)
	}
	if !o.HostIPC {
		size := o.ShmSize
		if size <= 0 {
			size = DefaultShmSize
		}
		p.Shm = filepath.Join(p.Dir, "shm")
		if err := os.Mkdir(p.Shm, 0o755); err != nil {
			return Pod{}, fmt.Errorf("create shm dir: %w", err)
		}
		if err := unix.Mount("shm", p.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
			return Pod{}, fmt.Errorf("mount pod /dev/shm: %w", err)
		}
		if p.IPCNS, err = pin(filepath.Join(p.Dir, "ipcns"), unix.CLONE_NEWIPC, ""); err != nil {
			return Pod{}, err
		}
	}
	if !o.HostUTS {
		if p.UTSNS, err = pin(filepath.Join(p.Dir, "utsns"), unix.CLONE_NEWUTS, o.Hostname); err != nil {
			return Pod{}, err
		}
	}
	return p, nil
}

// writeResolvConf writes the pod's resolv.conf from its DNS config, or
// copies the host's.
func writeResolvConf(dir string, dns *DNS) (string, error) {
	path := filepath.Join(dir, "resolv.conf")
	var body []byte
	if dns == nil || len(dns.Servers)+len(dns.Searches)+len(dns.Options) == 0 {
		b, err := os.ReadFile(hostResolvConf)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("read host resolv.conf: %w", err)
		}
		body = b
	} else {
		var sb strings.Builder
		if len(dns.Searches) > 0 {
			sb.WriteString("search " + strings.Join(dns.Searches, " ") + "\n")
		}
		for _, s := range dns.Servers {
			sb.WriteString("nameserver " + s + "\n")
		}
		if len(dns.Options) > 0 {
			sb.WriteString("options " + strings.Join(dns.Options, " ") + "\n")
		}
		body = []byte(sb.String())
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return "", fmt.Errorf("write resolv.conf: %w", err)
	}
	return path, nil
}

// Remove undoes Create: unpins the namespaces, unmounts /dev/shm and
// removes the directory. Removing what is not there succeeds.
func Remove(root, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("pod id %q is not 64 hex characters", id)
	}
	dir := Dir(root, id)
	var errs []error
	for _, m := range []string{"ipcns", "utsns", "shm"} {
		if err := host.Unmount(filepath.Join(dir, m)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove pod dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// List returns the ids of the pods that have a directory under root.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && validID.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Lookup returns the paths of what Create made for pod id under root;
// paths of things the pod does not have are empty.
func Lookup(root, id string) Pod {
	dir := Dir(root, id)
	p := Pod{Dir: dir}
	for path, dst := range map[string]*string{
		"resolv.conf": &p.ResolvConf, "hostname": &p.HostnameF, "hosts": &p.Hosts,
		"shm": &p.Shm, "ipcns": &p.IPCNS, "utsns": &p.UTSNS,
	} {
		if _, err := os.Stat(filepath.Join(dir, path)); err == nil {
			*dst = filepath.Join(dir, path)
		}
	}
	return p
}
