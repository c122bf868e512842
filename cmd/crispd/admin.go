package main

import (
	"context"

	"github.com/crisp-cri/crisp/cri/adminpb"
	"github.com/crisp-cri/crisp/reconciler"
)

// adminReconciler adapts the reconciler to the admin service, which does
// not import it.
type adminReconciler struct{ r *reconciler.Reconciler }

func (a adminReconciler) ReconcileNow(ctx context.Context, dryRun bool) (*adminpb.ReconcileNowResponse, error) {
	rep, err := a.r.Reconcile(ctx, reconciler.TriggerAdmin, dryRun)
	if err != nil {
		return nil, err
	}
	resp := &adminpb.ReconcileNowResponse{
		DryRun: rep.DryRun, StartedUnixNano: rep.Started.UnixNano(), DurationNs: int64(rep.Duration),
		Counts: map[string]int32{},
	}
	for key, n := range rep.Counts() {
		resp.Counts[key] = int32(n)
	}
	for _, o := range rep.Outcomes {
		act := &adminpb.ReconcileAction{Kind: string(o.Kind), Object: string(o.Object), Id: o.ID,
			Reason: o.Reason, Handler: o.Handler, Name: o.Name}
		if o.Err != nil {
			act.Error = o.Err.Error()
		}
		resp.Actions = append(resp.Actions, act)
	}
	return resp, nil
}
