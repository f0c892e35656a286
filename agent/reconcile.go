package agent

import (
	"context"
	"errors"
	"fmt"
)

// reconcile runs the reconcile of one key, for the worker pool: the only
// place a reconcile starts. A one-off dry run on a live agent (a dry key)
// counts towards neither status nor metrics.
func (a *Agent) reconcile(ctx context.Context, k key, it item, attempt int) (Result, error) {
	h := how{cause: a.work.causeOf(it), dry: a.opts.DryRun || k.dry, verify: it.verify, attempt: attempt, pre: it.pre}
	res, err := a.users.reconcile(ctx, k.uid, h)
	if err == nil && (!k.dry || a.opts.DryRun) {
		a.tally.add(res.Outcome)
		a.metrics.observeReconcile(res)
	}
	return res, err
}

// reconcileNow reconciles uids through the work queue, comparing with
// the server's own copy, and returns their results in the order asked.
// A uid named twice is reconciled once. With anyAnswer a failed attempt
// is its uid's answer (an operator's request); else only a final result.
func (a *Agent) reconcileNow(ctx context.Context, uids []uint32, cause string, dry, anyAnswer bool) ([]Result, error) {
	keys := make([]key, 0, len(uids))
	seen := make(map[uint32]bool, len(uids))
	for _, uid := range uids {
		if !seen[uid] {
			seen[uid] = true
			keys = append(keys, key{kind: kindUser, uid: uid, dry: dry})
		}
	}
	req := a.work.ask(keys, cause, true, anyAnswer)
	if err := a.work.wait(ctx, req); err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(uids))
	answered := make(map[uint32]bool, len(uids))
	for _, uid := range uids {
		res, ok := req.Result(key{kind: kindUser, uid: uid, dry: dry})
		switch {
		case answered[uid]:
			res = Result{UID: uid, Outcome: Skipped, Detail: "named twice"}
		case !ok:
			res = Result{UID: uid, Outcome: Failed, Detail: "no answer"}
		}
		answered[uid] = true
		out = append(out, res)
	}
	return out, nil
}

// SyncNow reconciles uids through the running agent's workers (so no uid
// is ever reconciled twice at once), comparing with the server's own
// copy, and returns their results in the order asked. A dry run sends and
// saves nothing; the real reconciles of the same uids go on beside it.
func (a *Agent) SyncNow(ctx context.Context, uids []uint32, dryRun bool) ([]Result, error) {
	cause := "sync"
	if dryRun {
		cause = "sync --dry-run"
	}
	return a.reconcileNow(ctx, uids, cause, dryRun, true)
}

// ReconcileAll reconciles uids now, without Run (for the sync and retry
// commands when no agent is running), with the configured number of
// workers, and returns the results in the order asked. It fails only when
// the reconciles cannot run at all; a user's own failure is its Result.
func (a *Agent) ReconcileAll(ctx context.Context, uids []uint32, dryRun bool) ([]Result, error) {
	if err := a.scim.connect(ctx); err != nil {
		return nil, fmt.Errorf("read the SCIM server's ServiceProviderConfig: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := a.startWorkers(wctx)
	defer func() {
		a.work.close()
		<-done
	}()
	results, err := a.reconcileNow(ctx, uids, "manual", dryRun, true)
	if err != nil {
		return nil, err
	}
	// A create that waited for another uid of the list to release its
	// userName (a deletion done meanwhile) is tried once more.
	var again []uint32
	for _, res := range results {
		if res.Outcome == Waiting {
			again = append(again, res.UID)
		}
	}
	if len(again) > 0 {
		retried, err := a.reconcileNow(ctx, again, "manual", dryRun, true)
		if err != nil {
			return nil, err
		}
		byUID := make(map[uint32]Result, len(retried))
		for _, res := range retried {
			byUID[res.UID] = res
		}
		for i, res := range results {
			if r, ok := byUID[res.UID]; ok && res.Outcome == Waiting {
				results[i] = r
			}
		}
	}
	// No saver runs here: what the guard held, sent or dropped is saved
	// now, or held deletions would be lost with this process, and so are
	// the records the results report.
	return results, errors.Join(a.guard.Flush(), a.store.Flush(), ctx.Err())
}

// ApproveDeletes releases the deletion guard and queues every held uid
// again; it returns how many were held.
func (a *Agent) ApproveDeletes() int {
	uids := a.guard.Approve()
	for _, uid := range uids {
		a.work.requeue(userKey(uid), "approve-deletes")
	}
	return len(uids)
}
