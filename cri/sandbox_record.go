package cri

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crisp-cri/crisp/db"
	"github.com/crisp-cri/crisp/db/record"
)

// writePodRecord keeps the pod's row in its pod dir, so that the
// reconciler can rebuild it if the database is lost: a pod without an
// infra container leaves nothing else on the node that describes it. The
// state, netns, IPs and infra id are left to what the node says then.
func (s *Server) writePodRecord(row db.Sandbox, cfg *runtimeapi.PodSandboxConfig, infra bool) error {
	if row.CreatedAt == 0 {
		row.CreatedAt = time.Now().UnixNano() // the row's own stamp is a few µs earlier
	}
	rec := record.NewPod(row, infra,
		nsOptions(cfg).Network != runtimeapi.NamespaceMode_NODE)
	return record.WritePod(s.pods.Dir(row.ID), rec)
}
