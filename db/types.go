package db

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// Sandbox is one row of the sandboxes table.
type Sandbox struct {
	ID            string       `db:"id"`
	Name          string       `db:"name"`
	KubeName      string       `db:"kube_name"`
	KubeNamespace string       `db:"kube_namespace"`
	KubeUID       string       `db:"kube_uid"`
	Attempt       uint32       `db:"attempt"`
	State         SandboxState `db:"state"`
	Handler       string       `db:"handler"`
	Trust         string       `db:"trust"`
	TrustReason   string       `db:"trust_reason"`
	Privileged    bool         `db:"privileged"`
	NetNSPath     string       `db:"netns_path"`
	IPs           StringList   `db:"ips"`
	InfraID       string       `db:"infra_id"`
	LogDir        string       `db:"log_dir"`
	CreatedAt     int64        `db:"created_at"` // Unix nanoseconds
	UpdatedAt     int64        `db:"updated_at"`
	Labels        StringMap    `db:"labels"`
	Annotations   StringMap    `db:"annotations"`
	Config        []byte       `db:"config"`
	ConfigHash    string       `db:"config_hash"`
}

// Container is one row of the containers table.
type Container struct {
	ID          string         `db:"id"`
	SandboxID   string         `db:"sandbox_id"`
	Name        string         `db:"name"`
	KubeName    string         `db:"kube_name"`
	Attempt     uint32         `db:"attempt"`
	Image       string         `db:"image"`
	ImageRef    string         `db:"image_ref"`
	State       ContainerState `db:"state"`
	PID         int            `db:"pid"`
	PIDStart    uint64         `db:"pid_start"`
	ExitCode    *int32         `db:"exit_code"` // nil until the container exited
	Reason      string         `db:"reason"`
	Message     string         `db:"message"`
	CreatedAt   int64          `db:"created_at"`
	StartedAt   int64          `db:"started_at"`
	FinishedAt  int64          `db:"finished_at"`
	UpdatedAt   int64          `db:"updated_at"`
	LogPath     string         `db:"log_path"`
	Labels      StringMap      `db:"labels"`
	Annotations StringMap      `db:"annotations"`
	Config      []byte         `db:"config"`
	ConfigHash  string         `db:"config_hash"`
	// Resolved by CreateContainer (see schema/0004_container_process.sql).
	RunUser    string `db:"run_user"`    // JSON of ProcessUser; "" = unknown
	Resources  string `db:"resources"`   // protojson of CRI LinuxContainerResources; "" = unknown
	StopSignal int    `db:"stop_signal"` // 0 = unknown
}

// Name is one reservation in the names table.
type Name struct {
	Kind       NameKind `db:"kind"`
	Name       string   `db:"name"`
	OwnerID    string   `db:"owner_id"`
	ReservedAt int64    `db:"reserved_at"`
}

// Event is one entry of the events journal.
type Event struct {
	Seq      int64  `db:"seq"`
	At       int64  `db:"at"`
	Kind     string `db:"kind"` // pod, container, name, node
	ObjectID string `db:"object_id"`
	Type     string `db:"type"`
	Detail   string `db:"detail"`
}

// ReconcileRun is one row of reconcile_runs: a reconciler pass.
type ReconcileRun struct {
	ID         int64  `db:"id"`
	Trigger    string `db:"trigger"` // startup, periodic, admin
	DryRun     bool   `db:"dry_run"`
	StartedAt  int64  `db:"started_at"`
	DurationNS int64  `db:"duration_ns"`
	Actions    int    `db:"actions"`
	Counts     IntMap `db:"counts"` // actions by kind
	Errors     string `db:"errors"`
}

// Time converts a stored Unix-nanosecond value; 0 is the zero time.
func Time(nanos int64) time.Time {
	if nanos == 0 {
		return time.Time{}
	}
	return time.Unix(0, nanos)
}

// StringMap is a map stored as a JSON object (labels, annotations).
type StringMap map[string]string

// Value implements driver.Valuer.
func (m StringMap) Value() (driver.Value, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(map[string]string(m))
	return string(b), err
}

// Scan implements sql.Scanner.
func (m *StringMap) Scan(src any) error { return scanJSON(src, m) }

// StringList is a list stored as a JSON array (pod IPs).
type StringList []string

// Value implements driver.Valuer.
func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		return "[]", nil
	}
	b, err := json.Marshal([]string(l))
	return string(b), err
}

// Scan implements sql.Scanner.
func (l *StringList) Scan(src any) error { return scanJSON(src, l) }

func scanJSON(src, dst any) error {
	switch v := src.(type) {
	case string:
		return json.Unmarshal([]byte(v), dst)
	case []byte:
		return json.Unmarshal(v, dst)
	case nil:
		return nil
	default:
		return fmt.Errorf("scan JSON column: unexpected %T", src)
	}
}

// IntMap is a map of counts stored as a JSON object.
type IntMap map[string]int

// Value implements driver.Valuer.
func (m IntMap) Value() (driver.Value, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(map[string]int(m))
	return string(b), err
}

// Scan implements sql.Scanner.
func (m *IntMap) Scan(src any) error { return scanJSON(src, m) }
