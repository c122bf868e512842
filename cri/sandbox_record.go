package cri

import (
	"encoding/json"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/runtimes/pod"
)

// writePodRecord keeps the pod's row in its pod dir, so that the
// reconciler can rebuild it if the database is lost: a pod without an
// infra container leaves nothing else on the node that describes it. The
// state, netns, IPs and infra id are left to what the node says then.
func (s *Server) writePodRecord(row db.Sandbox, cfg *runtimeapi.PodSandboxConfig, infra bool) error {
	if row.CreatedAt == 0 {
		row.CreatedAt = time.Now().UnixNano() // the row's own stamp is a few µs earlier
	}
	b, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("encode pod record: %w", err)
	}
	rec := pod.Record{Row: b, Infra: infra,
		NetNS: nsOptions(cfg).Network != runtimeapi.NamespaceMode_NODE}
	return pod.WriteRecord(s.podRoot, row.ID, rec)
}
