package record

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
)

// PodFile is the name of a pod's record in its pod dir.
const PodFile = "sandbox.json"

// Pod is a pod's record: its row as created, and what the node should
// still have of it. A pod without an infra container leaves nothing else
// on the node that names it.
type Pod struct {
	Version int     `json:"version"` // the format ReadPod read; WritePod writes Version
	Sandbox Sandbox `json:"sandbox"`
	Infra   bool    `json:"infra"` // the pod has an infra container, whose id is the pod's
	NetNS   bool    `json:"netns"` // the pod has a network namespace of its own
}

// Sandbox is the part of a sandbox row that a pod record keeps. The state,
// netns path, IPs and infra id are left out, and the update time: the
// reconciler reads them off the node and the runtime, which know them
// better than a copy made at creation.
type Sandbox struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	KubeName      string            `json:"kube_name"`
	KubeNamespace string            `json:"kube_namespace"`
	KubeUID       string            `json:"kube_uid"`
	Attempt       uint32            `json:"attempt"`
	Handler       string            `json:"handler"`
	Trust         string            `json:"trust"`
	TrustReason   string            `json:"trust_reason"`
	Privileged    bool              `json:"privileged"`
	LogDir        string            `json:"log_dir"`
	CreatedAt     int64             `json:"created_at"` // Unix nanoseconds
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
	Config        []byte            `json:"config"` // PodSandboxConfig, deterministic protobuf (base64 in JSON)
	ConfigHash    string            `json:"config_hash"`
}

// NewPod returns the record of a pod whose row is row.
func NewPod(row db.Sandbox, infra, netns bool) Pod {
	return Pod{Version: Version, Infra: infra, NetNS: netns, Sandbox: Sandbox{
		ID: row.ID, Name: row.Name, KubeName: row.KubeName, KubeNamespace: row.KubeNamespace, KubeUID: row.KubeUID,
		Attempt: row.Attempt, Handler: row.Handler, Trust: row.Trust, TrustReason: row.TrustReason,
		Privileged: row.Privileged, LogDir: row.LogDir, CreatedAt: row.CreatedAt,
		Labels: row.Labels, Annotations: row.Annotations, Config: row.Config, ConfigHash: row.ConfigHash,
	}}
}

// Row returns the pod's row as recorded. Its state, netns path, IPs, infra
// id and update time are zero, for the caller to set.
func (p Pod) Row() db.Sandbox {
	s := p.Sandbox
	return db.Sandbox{
		ID: s.ID, Name: s.Name, KubeName: s.KubeName, KubeNamespace: s.KubeNamespace, KubeUID: s.KubeUID,
		Attempt: s.Attempt, Handler: s.Handler, Trust: s.Trust, TrustReason: s.TrustReason,
		Privileged: s.Privileged, LogDir: s.LogDir, CreatedAt: s.CreatedAt,
		Labels: s.Labels, Annotations: s.Annotations, Config: s.Config, ConfigHash: s.ConfigHash,
	}
}

// WritePod writes p, in the current format, as the record in the pod dir
// dir, which must exist. It refuses a record ReadPod would refuse. The
// write is atomic (a temporary file renamed over the record) but not
// synced: the run dir does not outlive a reboot, and a record lost to a
// crash belongs to a row still creating, which the reconciler rolls back
// anyway.
func WritePod(dir string, p Pod) error {
	p.Version = Version
	if err := p.Sandbox.check(v1Keys); err != nil {
		return fmt.Errorf("pod record of %q: %w", p.Sandbox.ID, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pod record of %q: %w", p.Sandbox.ID, err)
	}
	tmp := filepath.Join(dir, "."+PodFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write pod record of %q: %w", p.Sandbox.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, PodFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pod record of %q: %w", p.Sandbox.ID, err)
	}
	return nil
}

// ReadPod reads the record in the pod dir dir, of any version up to
// Version. A dir without one is an error wrapping fs.ErrNotExist; a record
// with a required field missing or malformed is an error naming the field.
func ReadPod(dir string) (Pod, error) {
	path := filepath.Join(dir, PodFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Pod{}, fmt.Errorf("read pod record: %w", err)
	}
	p, err := decodePod(b)
	if err != nil {
		return Pod{}, fmt.Errorf("pod record %s: %w", path, err)
	}
	return p, nil
}

// HasPod reports whether the pod dir dir holds a record. One that cannot
// be looked at counts as there, so that reading it fails and is reported.
func HasPod(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, PodFile))
	return !errors.Is(err, fs.ErrNotExist)
}

// podFile is a pod record as stored, of any version.
type podFile struct {
	Version int        `json:"version"`
	Sandbox *sandboxV1 `json:"sandbox"` // version 1
	Row     *sandboxV0 `json:"row"`     // version 0
	Infra   *bool      `json:"infra"`
	NetNS   *bool      `json:"netns"`
}

// sandboxV1 reads Sandbox, its config decoded apart so that an error
// names it.
type sandboxV1 struct {
	Sandbox
	Config string `json:"config"`
}

// sandboxV0 is the row of a version 0 pod record: db.Sandbox marshalled
// as it was, under its Go field names. The fields a record leaves out
// (State, NetNSPath, IPs, InfraID, UpdatedAt) are there too, and ignored.
type sandboxV0 struct {
	ID            string            `json:"ID"`
	Name          string            `json:"Name"`
	KubeName      string            `json:"KubeName"`
	KubeNamespace string            `json:"KubeNamespace"`
	KubeUID       string            `json:"KubeUID"`
	Attempt       uint32            `json:"Attempt"`
	Handler       string            `json:"Handler"`
	Trust         string            `json:"Trust"`
	TrustReason   string            `json:"TrustReason"`
	Privileged    bool              `json:"Privileged"`
	LogDir        string            `json:"LogDir"`
	CreatedAt     int64             `json:"CreatedAt"`
	Labels        map[string]string `json:"Labels"`
	Annotations   map[string]string `json:"Annotations"`
	Config        string            `json:"Config"` // base64
	ConfigHash    string            `json:"ConfigHash"`
}

// sandboxKeys name a version's required fields in errors.
type sandboxKeys struct{ id, name, config string }

var (
	v0Keys = sandboxKeys{"row.ID", "row.Name", "row.Config"}
	v1Keys = sandboxKeys{"sandbox.id", "sandbox.name", "sandbox.config"}
)

// decodePod reads a pod record of any version. The version is read first:
// a later version's fields may not decode at all.
func decodePod(b []byte) (Pod, error) {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Pod{}, err
	}
	if err := checkVersion(head.Version); err != nil {
		return Pod{}, err
	}
	var f podFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Pod{}, err
	}
	p := Pod{Version: f.Version}
	keys, config := v1Keys, ""
	switch {
	case f.Version == 0 && f.Row == nil && f.Sandbox != nil:
		return Pod{}, errors.New("version is missing")
	case f.Version == 0 && f.Row == nil:
		return Pod{}, errors.New("row is missing")
	case f.Version == 0:
		r := f.Row
		keys, config, p.Sandbox = v0Keys, r.Config, Sandbox{
			ID: r.ID, Name: r.Name, KubeName: r.KubeName, KubeNamespace: r.KubeNamespace, KubeUID: r.KubeUID,
			Attempt: r.Attempt, Handler: r.Handler, Trust: r.Trust, TrustReason: r.TrustReason,
			Privileged: r.Privileged, LogDir: r.LogDir, CreatedAt: r.CreatedAt,
			Labels: r.Labels, Annotations: r.Annotations, ConfigHash: r.ConfigHash,
		}
	case f.Sandbox == nil:
		return Pod{}, errors.New("sandbox is missing")
	default:
		config, p.Sandbox = f.Sandbox.Config, f.Sandbox.Sandbox
	}
	var err error
	if p.Sandbox.Config, err = base64.StdEncoding.DecodeString(config); err != nil {
		return Pod{}, fmt.Errorf("%s: %w", keys.config, err)
	}
	if f.Infra == nil {
		return Pod{}, errors.New("infra is missing")
	}
	if f.NetNS == nil {
		return Pod{}, errors.New("netns is missing")
	}
	p.Infra, p.NetNS = *f.Infra, *f.NetNS
	if err := p.Sandbox.check(keys); err != nil {
		return Pod{}, err
	}
	return p, nil
}

// check refuses a sandbox that could not be rebuilt into a row, naming the
// field by keys.
func (s Sandbox) check(keys sandboxKeys) error {
	switch {
	case s.ID == "":
		return fmt.Errorf("%s is missing", keys.id)
	case s.Name == "":
		return fmt.Errorf("%s is missing", keys.name)
	case len(s.Config) == 0:
		return fmt.Errorf("%s is missing", keys.config)
	}
	if err := proto.Unmarshal(s.Config, &runtimeapi.PodSandboxConfig{}); err != nil {
		return fmt.Errorf("%s: %w", keys.config, err)
	}
	return nil
}
