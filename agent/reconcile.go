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
	var res Result
	var err error
	if k.kind == kindRole {
		if it.explain {
			h.explainRole = &RoleExplanation{Role: k.role, DryRun: h.dry, Server: []ServerStep{}, Requests: []RequestStep{}}
		}
		res, err = a.kinds.groups.reconcile(ctx, k.role, h)
		if h.explainRole != nil {
			h.explainRole.finish(res, err)
			res.ExplainRole = h.explainRole
		}
	} else {
		if it.explain {
			h.explain = &Explanation{UID: k.uid, DryRun: h.dry, Server: []ServerStep{}, Requests: []RequestStep{}}
		}
		res, err = a.kinds.users.reconcile(ctx, k.uid, h)
		if h.explain != nil {
			h.explain.finish(res, err)
			res.Explain = h.explain
		}
	}
	if err == nil && (!k.dry || a.opts.DryRun) {
		a.tally.add(res.Outcome)
		a.metrics.observeReconcile(res)
	}
	return res, err
}

// Selection names what a sync or retry reconciles: users by uid, groups
// by role.
type Selection struct {
	UIDs  []uint32
	Roles []string
	// Explain records each reconcile step by step in its Result (sync
	// --explain).
	Explain bool
}

// keys returns the selection's keys, each once, users first; dry marks
// them a one-off dry run.
func (s Selection) keys(dry bool) []key {
	keys := make([]key, 0, len(s.UIDs)+len(s.Roles))
	seen := map[key]bool{}
	add := func(k key) {
		k.dry = dry
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, uid := range s.UIDs {
		add(userKey(uid))
	}
	for _, role := range s.Roles {
		add(roleKey(role))
	}
	return keys
}

// reconcileNow reconciles a selection through the work queue, comparing
// with the server's own copies, and returns the results in the order
// asked (users, then roles); a key named twice is reconciled once. With
// anyAnswer a failed attempt is its key's answer (an operator's request);
// else only a final result.
func (a *Agent) reconcileNow(ctx context.Context, sel Selection, cause string, dry, anyAnswer bool) ([]Result, error) {
	req := a.work.askItem(sel.keys(dry), item{cause: cause, verify: true, explain: sel.Explain}, anyAnswer)
	if err := a.work.wait(ctx, req); err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(sel.UIDs)+len(sel.Roles))
	answered := map[key]bool{}
	answer := func(k key, none Result) {
		res, ok := req.Result(k)
		switch {
		case answered[k]:
			res = none
			res.Outcome, res.Detail = Skipped, "named twice"
		case !ok:
			res = none
			res.Outcome, res.Detail = Failed, "no answer"
		}
		answered[k] = true
		out = append(out, res)
	}
	for _, uid := range sel.UIDs {
		answer(key{kind: kindUser, uid: uid, dry: dry}, Result{UID: uid})
	}
	for _, role := range sel.Roles {
		answer(key{kind: kindRole, role: role, dry: dry}, Result{Role: role})
	}
	return out, nil
}

// SyncNow reconciles a selection through the running agent's workers (so
// no key is ever reconciled twice at once), comparing with the server's
// own copies, and returns the results in the order asked. A dry run sends
// and saves nothing; the real reconciles of the same keys go on beside
// it.
func (a *Agent) SyncNow(ctx context.Context, sel Selection, dryRun bool) ([]Result, error) {
	cause := "sync"
	if dryRun {
		cause = "sync --dry-run"
	}
	return a.reconcileNow(ctx, sel, cause, dryRun, true)
}

// Complete adds to sel what only the state file can list: with allRoles
// every role provisioned or with a group, with parked every parked uid
// and role.
func (a *Agent) Complete(ctx context.Context, sel Selection, allRoles, parked bool) (Selection, error) {
	if allRoles {
		keys, err := a.roleKeys(ctx)
		if err != nil {
			return sel, err
		}
		for _, k := range keys {
			sel.Roles = append(sel.Roles, k.role)
		}
	}
	if parked {
		p, err := ParkedSelection(a.store)
		if err != nil {
			return sel, err
		}
		sel.UIDs, sel.Roles = append(sel.UIDs, p.UIDs...), append(sel.Roles, p.Roles...)
	}
	return sel, nil
}

// ReconcileAll reconciles a selection now, without Run (for the sync and
// retry commands when no agent is running), with the configured number of
// workers, and returns the results in the order asked. It fails only when
// the reconciles cannot run at all; a key's own failure is its Result.
func (a *Agent) ReconcileAll(ctx context.Context, sel Selection, dryRun bool) ([]Result, error) {
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
	// Users first: a group's members are the users' accounts.
	users, err := a.reconcileNow(ctx, Selection{UIDs: sel.UIDs, Explain: sel.Explain}, "manual", dryRun, true)
	if err != nil {
		return nil, err
	}
	groups, err := a.reconcileNow(ctx, Selection{Roles: sel.Roles, Explain: sel.Explain}, "manual", dryRun, true)
	if err != nil {
		return nil, err
	}
	results := append(users, groups...)
	// A create that waited for another key of the selection (a deletion
	// done meanwhile) is tried once more.
	again := Selection{Explain: sel.Explain}
	for _, res := range results {
		if res.Outcome == Waiting && res.Role == "" {
			again.UIDs = append(again.UIDs, res.UID)
		} else if res.Outcome == Waiting {
			again.Roles = append(again.Roles, res.Role)
		}
	}
	if len(again.UIDs)+len(again.Roles) > 0 {
		retried, err := a.reconcileNow(ctx, again, "manual", dryRun, true)
		if err != nil {
			return nil, err
		}
		for _, r := range retried {
			for i, res := range results {
				if res.Outcome == Waiting && res.UID == r.UID && res.Role == r.Role {
					results[i] = r
				}
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
	keys := a.guard.Approve()
	for _, k := range keys {
		a.work.requeue(k, "approve-deletes")
	}
	return len(keys)
}
