package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crisp-cri/crisp/test/harness"
)

// node is one look at everything crisp keeps on the node, from every
// source of truth at once, taken while no CRI call is in flight.
type node struct {
	sandboxes    map[string]sandboxRow
	containers   map[string]containerRow
	names        []nameRow
	stored       map[string]storageRecord // crisp's container storage records
	live         map[string]liveContainer // containers of every runtime root
	procs                                 // monitors and infra processes
	infraRecords map[string]infraRecord   // by pod id
	pins         map[string]bool          // netns pin files by pod id: is it mounted
	mounts       []string                 // mount points under the daemon's dirs
	podDirs      map[string]bool
	bundles      map[string]bool
	exitFiles    map[string]bool
	ips          map[string]string // host-local allocations: IP → pod id
	cniCache     map[string]bool   // pod ids with a cached CNI result
	cgroups      map[string]bool   // ids with a cgroup crisp/<id>, any crisp's on the node
	// signalled are the containers and pods the workload asked to stop
	// or remove: their containers may have died of that.
	signalled map[string]bool
}

type sandboxRow struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state"`
	NetNSPath string `json:"netns_path"`
	IPs       string `json:"ips"` // a JSON array
	InfraID   string `json:"infra_id"`
}

type containerRow struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandbox_id"`
	Name      string `json:"name"`
	KubeName  string `json:"kube_name"`
	State     string `json:"state"`
	PID       int    `json:"pid"`
	ExitCode  *int   `json:"exit_code"`
	StartedAt int64  `json:"started_at"`
}

type nameRow struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	OwnerID string `json:"owner_id"`
}

type storageRecord struct {
	ID        string
	Layer     string
	Kind      string // crisp's metadata: pod or container
	SandboxID string
}

// liveContainer is what an OCI runtime says of a container.
type liveContainer struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Status  string `json:"status"`
	Handler string `json:"-"`
}

// observe reads the database (through crispctl, read-only), container
// storage, the runtimes' state roots, the mount table, /proc and the
// daemon's directories.
func observe(d *harness.Daemon) (node, error) {
	n := node{sandboxes: map[string]sandboxRow{}, containers: map[string]containerRow{}}
	var sbs []sandboxRow
	if err := sql(d, &sbs, "SELECT id, name, state, netns_path, ips, infra_id FROM sandboxes"); err != nil {
		return n, err
	}
	for _, s := range sbs {
		n.sandboxes[s.ID] = s
	}
	var cs []containerRow
	if err := sql(d, &cs, "SELECT id, sandbox_id, name, kube_name, state, pid, exit_code, started_at FROM containers"); err != nil {
		return n, err
	}
	for _, c := range cs {
		n.containers[c.ID] = c
	}
	if err := sql(d, &n.names, "SELECT kind, name, owner_id FROM names"); err != nil {
		return n, err
	}
	var err error
	if n.stored, err = storageRecords(d); err != nil {
		return n, err
	}
	if n.live, err = runtimeContainers(d); err != nil {
		return n, err
	}
	if n.procs, err = scanProcs(d); err != nil {
		return n, err
	}
	n.infraRecords = infraRecords(filepath.Join(d.RunDir, "pods"))
	if n.mounts, err = mountsUnder(d.RunDir, d.Dir); err != nil {
		return n, err
	}
	n.pins = map[string]bool{}
	for id := range entries(filepath.Join(d.RunDir, "netns")) {
		n.pins[id] = isMount(n.mounts, filepath.Join(d.RunDir, "netns", id))
	}
	n.podDirs = entries(filepath.Join(d.RunDir, "pods"))
	n.bundles = entries(filepath.Join(d.RunDir, "c"))
	n.exitFiles = entries(filepath.Join(d.RunDir, "exits"))
	if n.ips, err = ipamAllocations(filepath.Join(d.Dir, "cni-ipam", "crisp-e2e")); err != nil {
		return n, err
	}
	if n.cgroups, err = cgroupIDs(); err != nil {
		return n, err
	}
	n.cniCache = map[string]bool{}
	for f := range entries(filepath.Join(d.StateDir, "cni", "cache", "results")) {
		id := strings.TrimSuffix(strings.TrimPrefix(f, "crisp-e2e-"), "-eth0")
		n.cniCache[id] = true
	}
	return n, nil
}

// sql runs a read-only query through crispctl and decodes its JSON rows.
func sql(d *harness.Daemon, into any, query string) error {
	out, errOut, err := d.Crispctl("sql", "--json", query)
	if err != nil {
		return fmt.Errorf("crispctl sql %q: %v: %s", query, err, errOut)
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		return fmt.Errorf("crispctl sql %q: %v: %s", query, err, out)
	}
	return nil
}

// storageRecords reads crisp's records from container storage's own
// indexes: containers.json, and volatile-containers.json for volatile
// records (under the run root with a transient store). Storage replaces
// them atomically, so reading them is safe while crispd runs, and needs no
// second store open on the same roots.
func storageRecords(d *harness.Daemon) (map[string]storageRecord, error) {
	out := map[string]storageRecord{}
	for _, index := range []string{
		filepath.Join(d.StateDir, "storage", "overlay-containers", "containers.json"),
		filepath.Join(d.StateDir, "storage", "overlay-containers", "volatile-containers.json"),
		filepath.Join(d.RunDir, "storage", "overlay-containers", "volatile-containers.json"),
	} {
		b, err := os.ReadFile(index)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var recs []struct {
			ID       string `json:"id"`
			Layer    string `json:"layer"`
			Metadata string `json:"metadata"`
		}
		if err := json.Unmarshal(b, &recs); err != nil {
			return nil, fmt.Errorf("container storage index %s: %w", index, err)
		}
		for _, r := range recs {
			var m struct {
				Crisp     bool   `json:"crisp"`
				Kind      string `json:"kind"`
				SandboxID string `json:"sandbox_id"`
			}
			if json.Unmarshal([]byte(r.Metadata), &m) != nil || !m.Crisp {
				continue
			}
			out[r.ID] = storageRecord{ID: r.ID, Layer: r.Layer, Kind: m.Kind, SandboxID: m.SandboxID}
		}
	}
	return out, nil
}

// runtimeContainers lists the containers under crisp's runc and runsc
// state roots.
func runtimeContainers(d *harness.Daemon) (map[string]liveContainer, error) {
	out := map[string]liveContainer{}
	for _, h := range []string{"runc", "runsc"} {
		root := filepath.Join(d.RunDir, h)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		var stdout, stderr bytes.Buffer
		// A runtime process the killed crispd left running may delete a
		// container while list reads the root: list again.
		var err error
		for try := 0; try < 5; try++ {
			stdout.Reset()
			stderr.Reset()
			cmd := exec.Command(h, "--root", root, "list", "--format", "json")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err = cmd.Run(); err == nil || !strings.Contains(stderr.String(), "no such file or directory") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("%s list: %v: %s", h, err, stderr.String())
		}
		var l []liveContainer
		if err := json.Unmarshal(stdout.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s list: %v: %s", h, err, stdout.String())
		}
		for _, c := range l {
			c.Handler = h
			out[c.ID] = c
		}
	}
	return out, nil
}

// procs is what /proc says of this daemon's long-lived helpers.
type procs struct {
	monitors map[string]int // monitor pid (conmon, or crispd monitor under runsc) by container id
	infras   map[string]int // infra process (crispd pause) pid by pod id
}

// scanProcs finds this daemon's monitors and infra processes by the paths
// under its run dir on their command lines. Zombies have no command line
// and are not counted: they are gone but for their exit status.
func scanProcs(d *harness.Daemon) (procs, error) {
	ps := procs{monitors: map[string]int{}, infras: map[string]int{}}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return ps, err
	}
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		var id, path string
		switch {
		case filepath.Base(args[0]) == "conmon":
			id, path = argAfter(args, "-c"), argAfter(args, "-b")
		case slices.Contains(args, "monitor"): // crispd monitor --id=<id> --run-dir=<run dir> ...
			id = argValue(args, "--id=")
			path = filepath.Join(argValue(args, "--run-dir="), "c", id)
		case slices.Contains(args, "pause"):
			path = argAfter(args, "--isolate") // <run dir>/pods/<id>/infra-root
			id = filepath.Base(filepath.Dir(path))
		default:
			continue
		}
		if !strings.HasPrefix(path, d.RunDir+"/") {
			continue
		}
		if strings.HasPrefix(path, filepath.Join(d.RunDir, "pods")+"/") {
			ps.infras[id] = pid
		} else {
			ps.monitors[id] = pid
		}
	}
	return ps, nil
}

func argAfter(args []string, flag string) string {
	for i := 1; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func argValue(args []string, prefix string) string {
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			return v
		}
	}
	return ""
}

// infraRecord is what crisp wrote in a pod dir of the pod's infra
// process: its pid and start time; alive says whether that process runs.
type infraRecord struct {
	pid   int
	start uint64
	alive bool
}

// infraRecords reads the infra record of every pod dir that has one.
func infraRecords(podsDir string) map[string]infraRecord {
	out := map[string]infraRecord{}
	for id := range entries(podsDir) {
		b, err := os.ReadFile(filepath.Join(podsDir, id, "infra"))
		if err != nil {
			continue
		}
		var r infraRecord
		if _, err := fmt.Sscanf(string(b), "%d %d", &r.pid, &r.start); err == nil {
			r.alive = procStart(r.pid) == r.start
			out[id] = r
		}
	}
	return out
}

// procStart is a live process's start time (field 22 of /proc/<pid>/stat),
// 0 when it is gone or a zombie.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// mountsUnder lists the mount points under any of dirs.
func mountsUnder(dirs ...string) ([]string, error) {
	out, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	if err != nil {
		return nil, fmt.Errorf("findmnt: %w", err)
	}
	var ms []string
	for _, m := range strings.Split(string(out), "\n") {
		for _, dir := range dirs {
			if strings.HasPrefix(m, dir+"/") {
				ms = append(ms, m)
				break
			}
		}
	}
	return ms, nil
}

func isMount(mounts []string, path string) bool {
	for _, m := range mounts {
		if m == path {
			return true
		}
	}
	return false
}

// entries is the set of names in dir; a missing dir is empty.
func entries(dir string) map[string]bool {
	es, _ := os.ReadDir(dir)
	out := map[string]bool{}
	for _, e := range es {
		out[e.Name()] = true
	}
	return out
}

// cgroupIDs lists the ids that have a container cgroup of crisp's,
// crisp/<id>, in any cgroup hierarchy. Every crisp on the node shares
// them: they tell nothing of whose they are.
func cgroupIDs() (map[string]bool, error) {
	out, err := exec.Command("findmnt", "-rn", "-t", "cgroup,cgroup2", "-o", "TARGET").Output()
	if err != nil {
		return nil, fmt.Errorf("findmnt cgroups: %w", err)
	}
	ids := map[string]bool{}
	for _, root := range strings.Fields(string(out)) {
		for id := range entries(filepath.Join(root, "crisp")) {
			if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
				ids[id] = true
			}
		}
	}
	return ids, nil
}

// ipamAllocations reads host-local's files: one per allocated IP, holding
// the CNI container id (crisp's pod id) and the interface.
func ipamAllocations(dir string) (map[string]string, error) {
	out := map[string]string{}
	for name := range entries(dir) {
		if name == "lock" || strings.HasPrefix(name, "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		owner, _, _ := strings.Cut(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
		out[name] = strings.TrimSpace(owner)
	}
	return out, nil
}
