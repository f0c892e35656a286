package agent

import (
	"context"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// gone reconciles a uid whose users row no longer exists: DELETE, or
// deactivate with on_delete: deactivate. Only accounts the agent
// provisioned are touched.
func (r *userRun) gone(ctx context.Context) (Result, *failure) {
	r.explain.decide(r.prov.OnDelete, "the Drupal user is gone (provisioning.on_delete: %s)", r.prov.OnDelete)
	if r.prov.OnDelete == config.OpDeactivate {
		return r.deprovision(ctx, r.deactivateGone)
	}
	return r.deprovision(ctx, r.deleteGone)
}

// deprovision ends the account the agent manages for uid with end (a
// deletion or a deactivation), once it knows the account: a POST whose
// outcome was never saved is looked up first. A uid with no account is
// unchanged.
func (r *userRun) deprovision(ctx context.Context, end func(context.Context, Result) (Result, *failure)) (Result, *failure) {
	res := Result{UserName: r.rec.UserName, SCIMID: r.rec.SCIMID}
	if !r.known || (r.rec.SCIMID == "" && !r.rec.Creating) {
		r.explain.decide(actionNothing, "the agent provisioned no account for uid %d", r.uid)
		res.Outcome = Unchanged
		return res, nil
	}
	if r.rec.SCIMID == "" {
		// Deleted while its POST's outcome was unknown: find what the
		// POST made, if anything.
		id, detail, f := r.findLostCreate(ctx)
		if f != nil {
			return res, f
		}
		if id == "" {
			res.Outcome, res.Detail = Unchanged, detail
			if err := r.forget(); err != nil {
				return res, retry(OpDelete, err)
			}
			return res, nil
		}
		r.rec.SCIMID = id
		res.SCIMID = id
	}
	return end(ctx, res)
}

// findLostCreate looks for the account a POST whose outcome was never
// saved may have made. It returns its id, or "" with why none is ours to
// touch: an account found by userName without our externalId is one the
// POST never made (somebody else's namesake), and deleting it would
// destroy what the agent does not own.
func (r *userRun) findLostCreate(ctx context.Context) (id, detail string, f *failure) {
	user := mapping.User{Values: map[string]any{"userName": r.rec.UserName, "externalId": r.rec.ExternalID}}
	found, f := r.lookup(ctx, OpDelete, user)
	if f != nil || found == nil {
		return "", "", f
	}
	if ext, _ := found["externalId"].(string); r.rec.ExternalID != "" && ext != r.rec.ExternalID {
		other, _ := found["id"].(string)
		r.log.Warn(MsgSCIMRequest, zap.String("op", OpDelete), zap.String("userName", r.rec.UserName), zap.String("scim_id", other),
			zap.String("detail", "the account found by userName does not carry this user's externalId: left alone"))
		return "", "", nil
	}
	id, owner, f := r.claim(r.rec.UserName, r.rec.ExternalID, found)
	switch {
	case f != nil && f.park:
		// Somebody else's account: never ours to delete.
		return "", f.detail, nil
	case f != nil:
		return "", "", f
	case owner != 0:
		return "", fmt.Sprintf("the account found is %s, which the agent provisions for uid %d", id, owner), nil
	}
	return id, "", nil
}

// deactivateGone deactivates the account of a deleted user
// (on_delete: deactivate); it stays on the server, marked gone.
func (r *userRun) deactivateGone(ctx context.Context, res Result) (Result, *failure) {
	switch {
	case r.rec.Gone:
		r.explain.decide(actionNothing, "the Drupal user is gone and its account was deactivated already")
		res.Outcome = Unchanged
		return res, nil
	case r.rec.OutOfScope && !r.rec.Active:
		// Deactivated already, for leaving the scope.
		r.rec.Gone = true
		res.Outcome = Unchanged
		if err := r.save(); err != nil {
			return res, retry(OpDeactivate, err)
		}
		return res, nil
	case !r.prov.Allows(config.OpDeactivate):
		res.Outcome, res.Detail = Skipped, "deactivate is switched off in provisioning.operations"
		return res, nil
	case !r.allowDeprovision(OpDeactivate):
		res.Outcome, res.Op = Held, OpDeactivate
		return res, nil
	}
	user := mapping.User{UID: r.uid, Values: map[string]any{"active": false, "userName": r.rec.UserName}}
	r.explain.diffed(user, r.rec.Pushed, mapping.Changes{Set: []string{"active"}})
	if f := r.send(ctx, OpDeactivate, user, mapping.Changes{Set: []string{"active"}}); f.notFound() {
		res.Outcome = Deleted // already gone: nothing left to deactivate
		if err := r.forget(); err != nil {
			return res, retry(OpDeactivate, err)
		}
		return res, nil
	} else if f != nil {
		return res, f
	}
	r.rec.Gone, r.rec.Active, r.rec.Parked = true, false, nil
	res.Outcome = Deactivated
	if err := r.save(); err != nil {
		return res, retry(OpDeactivate, err)
	}
	return res, nil
}

// deleteGone DELETEs the account of a deleted user; a 404 means the goal
// is met.
func (r *userRun) deleteGone(ctx context.Context, res Result) (Result, *failure) {
	switch {
	case !r.prov.Allows(config.OpDelete):
		res.Outcome, res.Detail = Skipped, "delete is switched off in provisioning.operations"
		return res, nil
	case !r.allowDeprovision(OpDelete):
		res.Outcome, res.Op = Held, OpDelete
		return res, nil
	}
	path := "/Users/" + r.rec.SCIMID
	res.Outcome = Deleted
	if r.dry {
		r.dryRun(OpDelete, http.MethodDelete, path, nil)
		return res, nil
	}
	if f := r.delete(ctx, path); f != nil {
		return res, f
	}
	if err := r.forget(); err != nil {
		return res, retry(OpDelete, err)
	}
	return res, nil
}

// delete DELETEs the account; a SCIM 404 means it is already gone. With
// ETags the DELETE carries If-Match; a 412 (changed since the version
// known) reads the account for its version and deletes again, a few
// times.
func (r *userRun) delete(ctx context.Context, path string) *failure {
	for try := 1; ; try++ {
		version := r.ifMatch()
		cr, err := r.scim.client.DeleteUser(ctx, r.rec.SCIMID, scimclient.IfMatch(version))
		if scimclient.IsNotFound(err) {
			err = nil // already gone: the goal is met
		}
		r.logCall(OpDelete, r.rec.UserName, http.MethodDelete, path, nil, cr, err)
		switch {
		case err == nil:
			return nil
		case !scimclient.IsPreconditionFailed(err):
			return classify(OpDelete, err)
		case try == maxPreconditionTries:
			return retry(OpDelete, fmt.Errorf("the account changed on the server between each read and DELETE (%d tries; if nothing "+
				"else writes it, the server's ETags may be broken: scim.capabilities.etag: false): %w", try, err))
		}
		if _, f := r.read(ctx, OpDelete, r.rec.UserName); f.notFound() {
			return nil
		} else if f != nil {
			return f
		}
	}
}
