package agent

import (
	"context"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/mapping"
)

// outOfScope reconciles a user provisioning.scope leaves out. A user
// never provisioned stays so. The account of one who left is handled per
// provisioning.out_of_scope: deactivated (like a blocked user: counted by
// the deletion guard, and its record remembers why, so that coming back
// reactivates it), deleted (like a Drupal deletion, through the guard),
// or left as it is and no longer managed (ignore: the record goes; a
// return adopts the account).
func (r *userRun) outOfScope(ctx context.Context, user mapping.User) (Result, *failure) {
	res := Result{UserName: user.UserName(), SCIMID: r.rec.SCIMID}
	if !r.known || r.rec.SCIMID == "" && !r.rec.Creating {
		// Never provisioned: nothing to send. A record left by a parked
		// create goes, so that the user is not listed as parked.
		if r.known {
			if err := r.forget(); err != nil {
				return res, retry(OpCreate, err)
			}
		}
		r.explain.decide(actionNothing, "outside provisioning.scope, and never provisioned")
		r.quiet = true
		res.Outcome, res.Detail = Skipped, "outside provisioning.scope"
		return res, nil
	}
	r.explain.decide(r.prov.OutOfScope, "the user left provisioning.scope (out_of_scope: %s)", r.prov.OutOfScope)
	switch r.prov.OutOfScope {
	case config.OutOfScopeIgnore:
		r.explain.decide(actionRelease, "the user left provisioning.scope (out_of_scope: ignore): its account is left as it is and no longer managed")
		return r.release(res)
	case config.OutOfScopeDelete:
		res, f := r.deprovision(ctx, r.deleteGone)
		if f == nil && res.Outcome == Deleted {
			r.scopeChanged = true
		}
		return res, f
	}
	return r.deprovision(ctx, func(ctx context.Context, res Result) (Result, *failure) {
		return r.deactivateOutOfScope(ctx, res, user)
	})
}

// release stops managing the account of a user who left the scope with
// out_of_scope: ignore: the account stays as it is on the server, and
// the agent forgets it.
func (r *userRun) release(res Result) (Result, *failure) {
	if err := r.forget(); err != nil {
		return res, retry(OpUpdate, err)
	}
	r.scopeChanged = true
	res.Outcome = Skipped
	res.Detail = "left provisioning.scope (out_of_scope: ignore): its account is left as it is and no longer managed"
	return res, nil
}

// deactivateOutOfScope deactivates the account of a user who left the
// scope and marks its record so. Once marked it is left alone, but for a
// verifying reconcile (sync, drift repair), which deactivates it again
// if it was reactivated on the server, and forgets it if it is gone.
func (r *userRun) deactivateOutOfScope(ctx context.Context, res Result, user mapping.User) (Result, *failure) {
	res.Detail = "outside provisioning.scope"
	switch {
	case r.rec.OutOfScope && !r.verify:
		r.explain.decide(actionNothing, "outside provisioning.scope: its account was deactivated for it and is no longer updated")
		res.Outcome = Unchanged
		return res, nil
	case !r.prov.Allows(config.OpDeactivate):
		res.Outcome, res.Detail = Skipped, "outside provisioning.scope, and deactivate is switched off in provisioning.operations"
		return res, nil
	}
	if r.verify {
		current, f := r.read(ctx, OpDeactivate, r.rec.UserName)
		switch {
		case f.notFound():
			// Deleted on the server: nothing to create for a user outside
			// the scope.
			r.explain.decide(actionNothing, "outside provisioning.scope, and its account is gone from the server: nothing to create")
			r.scopeChanged = true
			res.Outcome, res.Detail = Unchanged, "outside provisioning.scope, and its account is gone from the server: nothing to create"
			if err := r.forget(); err != nil {
				return res, retry(OpDeactivate, err)
			}
			return res, nil
		case f != nil:
			return res, f
		case !mapping.Active(current):
			r.explain.decide(actionNothing, "outside provisioning.scope, and its account is inactive on the server")
			return r.markOutOfScope(res)
		}
	} else if !r.rec.Active {
		// Pushed inactive already (a blocked user): nothing to send.
		r.explain.decide(actionNothing, "outside provisioning.scope, and its account was pushed inactive already")
		return r.markOutOfScope(res)
	}
	off := mapping.User{UID: r.uid, Values: map[string]any{}}
	for p, v := range user.Values {
		off.Values[p] = v
	}
	off.Values["active"] = false
	changes := mapping.Changes{Set: []string{"active"}}
	if r.current != nil {
		r.explain.compared(off, r.current, changes)
	} else {
		r.explain.diffed(off, r.rec.Pushed, changes)
	}
	if !r.allowDeprovision(OpDeactivate) {
		res.Outcome, res.Op = Held, OpDeactivate
		return res, nil
	}
	if f := r.send(ctx, OpDeactivate, off, changes); f.notFound() {
		res.Outcome = Deleted // already gone: nothing left to deactivate
		r.scopeChanged = true
		if err := r.forget(); err != nil {
			return res, retry(OpDeactivate, err)
		}
		return res, nil
	} else if f != nil {
		return res, f
	}
	res.Outcome = Deactivated
	if r.dry {
		return res, nil
	}
	// Only active was sent: the other values the server holds are still
	// those last pushed, and what changed meanwhile goes at the return.
	return r.markOutOfScope(res)
}

// markOutOfScope records that the account, now inactive, is the one of a
// user outside the scope: active is pushed false (so that the return
// reactivates it), and the account is a member of no group.
func (r *userRun) markOutOfScope(res Result) (Result, *failure) {
	if res.Outcome == "" {
		res.Outcome = Unchanged
	}
	if r.rec.OutOfScope && !r.rec.Active {
		return res, nil
	}
	if r.rec.Pushed == nil {
		r.rec.Pushed = map[string]uint64{}
	}
	r.rec.Pushed["active"] = inactive.Fingerprints()["active"]
	r.rec.OutOfScope, r.rec.Active, r.rec.Parked, r.scopeChanged = true, false, nil, true
	if err := r.save(); err != nil {
		return res, retry(OpDeactivate, err)
	}
	return res, nil
}

// inactive is a user whose one value is active = false, for its
// fingerprint.
var inactive = mapping.User{Values: map[string]any{"active": false}}
