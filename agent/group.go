package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// Operation labels of group calls (field op of scim.request).
const (
	OpGroupCreate   = "group_create"
	OpGroupUpdate   = "group_update"
	OpGroupDelete   = "group_delete"
	OpMembersAdd    = "members_add"
	OpMembersRemove = "members_remove"
)

// groups reconciles Drupal roles with the server's Groups, one role at a
// time, level-triggered like users: it reads the role's label and holders
// now and makes the group match: displayName the label, externalId the
// machine name, members the SCIM ids of the provisioned users holding it.
// What was pushed is kept in the state file, since some servers never
// return a group's members.
type groups struct {
	cfg      config.Groups
	prov     config.Provisioning
	scope    *mapping.Scope // provisioning.scope: only users in it are members
	log      *zap.Logger
	reader   *drupal.Reader
	store    *state.Store
	scim     *scimServer
	guard    *guard
	parked   *parkedSet // parked roles, for metrics and status
	noteCall func(method string, cr scimclient.Result, err error)
}

// groupRun is one role's reconcile in progress.
type groupRun struct {
	*groups
	how
	role  string
	log   *zap.Logger
	rec   state.Group
	known bool // rec came from the store
	// claimExternalID: the group was adopted without an externalId; the
	// first write sets it to the role's machine name.
	claimExternalID bool
	// against says where push's members come from, for an explanation:
	// "" (what was pushed) or the server's copy.
	against string
}

// reconcile makes the server's group of role equal to Drupal's role now.
// Like users.reconcile, a permanent failure parks the role (outcome
// Failed) and a returned error is one to try again later.
func (g *groups) reconcile(ctx context.Context, role string, h how) (Result, error) {
	log := g.log.With(zap.String("role", role), zap.String("binlog_pos", h.cause))
	ctx = scimclient.ContextWithLogger(ctx, log)
	r := &groupRun{groups: g, how: h, role: role, log: log}
	var err error
	if r.rec, r.known, err = g.store.Group(role); err != nil {
		return Result{}, err
	}
	if !r.known {
		r.rec = state.Group{Role: role}
	}
	h.explainRole.record(r.rec, r.known)
	selected := g.cfg.Selects(role)
	h.explainRole.selected(selected)
	if !selected {
		return r.finish(r.unselected())
	}
	dr, exists, err := g.reader.Role(ctx, role)
	var res Result
	var f *failure
	switch {
	case err != nil && exists:
		return Result{}, err
	case err != nil:
		// The role's row is there but does not decode: its own problem.
		if derr := ctx.Err(); derr != nil {
			return Result{}, derr
		}
		h.explainRole.drupal(true, "", err)
		h.explainRole.decide(actionNothing, "the role's config row does not decode as a role: its group is not written")
		res, f = Result{}, refused(OpGroupCreate, err.Error())
	case exists:
		h.explainRole.drupal(true, dr.Label, nil)
		res, f = r.present(ctx, dr)
	default:
		h.explainRole.drupal(false, "", nil)
		res, f = r.gone(ctx)
	}
	if f != nil {
		if f.invalid && h.attempt >= maxInvalidAnswerAttempts {
			f.park, f.detail = true, fmt.Sprintf("the server's answer is not valid SCIM (%d attempts): %v", h.attempt, f.err)
		}
		if !f.park || ctx.Err() != nil {
			return res, f
		}
		return r.park(res, f)
	}
	return r.finish(res, nil)
}

// unselected stops managing a group whose role groups.roles or
// groups.exclude_roles no longer select: the group is left as it is.
func (r *groupRun) unselected() (Result, error) {
	res := Result{Outcome: Skipped, Detail: "the role is not provisioned (groups.enabled, groups.roles, groups.exclude_roles)"}
	if r.known {
		r.explainRole.decide(actionRelease, "%s: its group is left as it is and no longer managed", res.Detail)
	} else {
		r.explainRole.decide(actionNothing, "%s", res.Detail)
	}
	if r.known && !r.dry {
		if err := r.store.DeleteGroup(r.role); err != nil {
			return res, err
		}
		r.parked.set(roleKey(r.role), false)
		res.Detail += ": its group is left as it is and no longer managed"
	}
	return res, nil
}

// finish completes the result of a reconcile that reached its goal (or
// waits), tells the guard how it ended and logs it.
func (r *groupRun) finish(res Result, err error) (Result, error) {
	if err != nil {
		return res, err
	}
	res.Role = r.role
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	if !r.dry {
		switch res.Outcome {
		case Held, Failed, Waiting:
		case Deleted:
			r.guard.Sent(roleKey(r.role))
		default:
			r.guard.Forget(roleKey(r.role))
		}
	}
	switch res.Outcome {
	case Unchanged:
		r.log.Debug(MsgReconcileUnchanged)
	case Skipped:
		r.log.Info(MsgReconcileSkipped, zap.String("detail", res.Detail))
	case Waiting:
		r.log.Info(MsgReconcileWaiting, zap.String("detail", res.Detail))
	}
	return res, nil
}

// present reconciles a role that exists in Drupal. Holders not yet
// provisioned (their POST is pending) make it wait, after what can be
// pushed is: the group is complete once they are members.
func (r *groupRun) present(ctx context.Context, role drupal.Role) (Result, *failure) {
	want, pending, f := r.members(ctx)
	if f != nil {
		return Result{}, f
	}
	r.explainRole.desired(role.Label, r.role, want)
	res, f := r.converge(ctx, role, want)
	// A dry run creates nobody, so nobody is worth waiting for.
	if f == nil && pending > 0 && !r.dry && res.Outcome != Held && res.Outcome != Skipped {
		res.Outcome = Waiting
		res.Detail = fmt.Sprintf("%d holders of the role are not provisioned yet: they become members once their accounts exist", pending)
	}
	return res, f
}

// converge creates, adopts or updates the role's group; after a 412
// the next try verifies: it reads the group's version and members again
// and sends what is still needed.
func (r *groupRun) converge(ctx context.Context, role drupal.Role, want []string) (Result, *failure) {
	return whileStale(func() (Result, *failure) { return r.write(ctx, role, want) },
		func() *failure { r.verify = true; return nil })
}

// whileStale runs write, a write to a server with ETags, again after
// reread each time the server refuses it with 412 (the resource changed
// since its version was read), up to maxPreconditionTries; after the
// last the reconcile is retried with backoff, like an outage, not
// parked.
func whileStale(write func() (Result, *failure), reread func() *failure) (Result, *failure) {
	for try := 1; ; try++ {
		res, f := write()
		if f == nil || !scimclient.IsPreconditionFailed(f.err) {
			return res, f
		}
		if try == maxPreconditionTries {
			return res, retry(f.op, fmt.Errorf("the group changed on the server between each read and write (%d tries; if nothing else "+
				"writes it, the server's ETags may be broken: scim.capabilities.etag: false): %w", try, f.err))
		}
		if f := reread(); f != nil {
			return res, f
		}
	}
}

// write is one try of converge.
func (r *groupRun) write(ctx context.Context, role drupal.Role, want []string) (res Result, f *failure) {
	switch {
	case r.rec.SCIMID == "" && r.rec.Creating:
		// A POST started and its outcome was never saved: look first.
		r.explainRole.decide(OpCreate, "a POST /Groups started and its outcome was never saved: the group is looked up before posting again")
		found, f := r.lookup(ctx, role)
		if f != nil {
			return Result{}, f
		}
		if found == nil {
			res, f = r.create(ctx, role, want)
		} else {
			res, f = r.adopt(ctx, role, want, found)
		}
	case r.rec.SCIMID == "":
		res, f = r.create(ctx, role, want)
	default:
		res, f = r.update(ctx, role, want, r.verify)
	}
	return res, f
}

// members returns the SCIM ids of the users holding the role who are
// members (provisioned: a SCIM id known), sorted, and how many holders
// will be once their pending create is done. Excluded and parked users
// are not members, nor are users whose create is switched off, nor users
// outside provisioning.scope (an account deactivated for leaving it, or a
// holder never provisioned for being outside it); a blocked user stays
// one.
func (r *groupRun) members(ctx context.Context) (ids []string, pending int, f *failure) {
	uids, err := r.reader.RoleHolders(ctx, r.role)
	if err != nil {
		return nil, 0, retry(OpGroupUpdate, err)
	}
	var unprovisioned []uint32
	for _, uid := range uids {
		if r.prov.Excluded(uid) {
			r.explainRole.holder(uid, "", "excluded (provisioning.exclude_uids)")
			continue
		}
		acc, ok, err := r.store.Account(uid)
		switch {
		case err != nil:
			return nil, 0, retry(OpGroupUpdate, err)
		case ok && acc.OutOfScope:
			r.explainRole.holder(uid, "", "outside provisioning.scope: its account was deactivated for it")
		case ok && acc.SCIMID != "":
			ids = append(ids, acc.SCIMID)
			r.explainRole.holder(uid, acc.SCIMID, "")
		case ok && acc.Parked != nil:
			if r.explainRole != nil {
				r.explainRole.holder(uid, "", fmt.Sprintf("parked before its account exists (%s: %s)", acc.Parked.Op, acc.Parked.Detail))
			}
		case !r.prov.Allows(config.OpCreate):
			r.explainRole.holder(uid, "", "no account, and create is switched off in provisioning.operations")
		default:
			unprovisioned = append(unprovisioned, uid)
		}
	}
	waiting, err := r.inScope(ctx, unprovisioned)
	if err != nil {
		return nil, 0, retry(OpGroupUpdate, err)
	}
	if r.explainRole != nil {
		r.explainUnprovisioned(unprovisioned, waiting)
	}
	slices.Sort(ids)
	return slices.Compact(ids), len(waiting), nil
}

// explainUnprovisioned records, of the holders without an account,
// those waiting for their create and those the scope leaves out, and
// puts the holders in uid order.
func (r *groupRun) explainUnprovisioned(unprovisioned, waiting []uint32) {
	pending := make(map[uint32]bool, len(waiting))
	for _, uid := range waiting {
		pending[uid] = true
	}
	for _, uid := range unprovisioned {
		if pending[uid] {
			r.explainRole.holder(uid, "", "no account yet: a member once its create is done")
		} else {
			r.explainRole.holder(uid, "", "outside provisioning.scope: never provisioned")
		}
	}
	r.explainRole.sortHolders()
}

// inScope returns the holders not provisioned yet whose create is
// pending: those provisioning.scope takes (read in one query; only when
// there is a scope).
func (r *groupRun) inScope(ctx context.Context, uids []uint32) ([]uint32, error) {
	if r.scope.Everyone() || len(uids) == 0 {
		return uids, nil
	}
	accounts, err := r.reader.LoadMany(ctx, uids)
	if err != nil {
		return nil, err
	}
	var in []uint32
	for _, a := range accounts {
		if a.Values != nil && r.scope.In(a) {
			in = append(in, a.UID)
		}
	}
	return in, nil
}

// gone reconciles a role deleted in Drupal: its group is deleted
// (counted by the deletion guard), or with on_role_delete: keep emptied
// and kept.
func (r *groupRun) gone(ctx context.Context) (Result, *failure) {
	res := Result{SCIMID: r.rec.SCIMID}
	if !r.known || r.rec.SCIMID == "" && !r.rec.Creating {
		r.explainRole.decide(actionNothing, "the role is not in Drupal, and no group of it is known")
		res.Outcome = Unchanged
		return res, nil
	}
	if r.rec.SCIMID == "" {
		found, f := r.lookup(ctx, drupal.Role{ID: r.role})
		if f != nil {
			return res, f
		}
		id, _ := found["id"].(string)
		if found == nil || id == "" {
			r.explainRole.decide(actionNothing, "the role is not in Drupal, and the group whose POST was never saved is not on the server")
			res.Outcome = Unchanged
			return res, r.forget(OpGroupDelete)
		}
		r.rec.SCIMID = id
	}
	if r.cfg.OnRoleDelete == config.RoleKeepGroup {
		r.explainRole.decide(actionKeep, "the role is not in Drupal and groups.on_role_delete is keep: the members pushed are removed and the group %s stays", r.rec.SCIMID)
		return r.keep(ctx)
	}
	r.explainRole.decide(OpDelete, "the role is not in Drupal: its group %s is deleted", r.rec.SCIMID)
	switch {
	case !r.prov.Allows(config.OpDelete):
		res.Outcome, res.Detail = Skipped, "delete is switched off in provisioning.operations"
		return res, nil
	case !r.dry && !r.guard.Allow(roleKey(r.role), OpDelete):
		res.Outcome, res.Op = Held, OpDelete
		return res, nil
	}
	path := "/Groups/" + r.rec.SCIMID
	res.Outcome = Deleted
	if r.dry {
		r.dryRun(OpGroupDelete, http.MethodDelete, path, nil)
		return res, nil
	}
	return whileStale(func() (Result, *failure) {
		cr, err := r.scim.client.DeleteGroup(ctx, r.rec.SCIMID, scimclient.IfMatch(r.version()))
		if scimclient.IsNotFound(err) {
			err = nil // already gone: the goal is met
		}
		r.logCall(OpGroupDelete, http.MethodDelete, path, nil, cr, err)
		if err != nil {
			return res, classify(OpDelete, err)
		}
		return res, r.forget(OpDelete)
	}, func() *failure { return r.rereadVersion(ctx, OpDelete) })
}

// rereadVersion reads the group's version again after a 412. A group
// gone meanwhile has no version: the next write says so.
func (r *groupRun) rereadVersion(ctx context.Context, op string) *failure {
	res, cr, err := r.scim.client.GetGroup(ctx, r.rec.SCIMID)
	r.logCall(OpLookup, http.MethodGet, "/Groups/"+r.rec.SCIMID, nil, cr, err)
	r.explainRole.got(r.rec.SCIMID, res, cr, err)
	if err != nil && !scimclient.IsNotFound(err) {
		return classify(op, err)
	}
	r.rec.Version = cr.Version
	return nil
}

// keep empties the group of a deleted role of the members the agent
// pushed, and keeps it on the server (a 412 reads its version again).
func (r *groupRun) keep(ctx context.Context) (Result, *failure) {
	res, f := whileStale(func() (Result, *failure) {
		return r.push(ctx, drupal.Role{ID: r.role, Label: r.rec.DisplayName}, nil, r.rec.Members)
	}, func() *failure { return r.rereadVersion(ctx, OpGroupUpdate) })
	if f != nil {
		return res, f
	}
	if !r.rec.Kept {
		r.rec.Kept = true
		if err := r.save(); err != nil {
			return res, retry(OpGroupUpdate, err)
		}
	}
	return res, nil
}

// version is the group's version to send with If-Match, where the
// server has ETags.
func (r *groupRun) version() string {
	if !r.scim.caps.ETag {
		return ""
	}
	return r.rec.Version
}

// park records a permanent failure of the role's reconcile.
func (r *groupRun) park(res Result, f *failure) (Result, error) {
	p := f.parked(r.rec.Parked)
	r.rec.Parked = p
	r.rec.Creating = f.stillCreating(r.rec.Creating, r.rec.SCIMID)
	if err := r.save(); err != nil {
		return res, err
	}
	parkedLogger(r.log, r.dry)(MsgReconcileParked, zap.String("op", f.op), zap.String("scim_id", r.rec.SCIMID), zap.Int("status", f.status),
		zap.String("scim_type", f.scimType), zap.String("detail", f.detail), zap.Int("failures", p.Failures), zap.Bool("dry_run", r.dry))
	res.Role, res.Op, res.Outcome, res.Detail = r.role, f.op, Failed, f.detail
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	return res, nil
}

// save stores the record, unless this is a dry run.
func (r *groupRun) save() error {
	if r.dry {
		return nil
	}
	r.known = true
	if err := r.store.PutGroup(r.rec); err != nil {
		return err
	}
	r.parked.set(roleKey(r.role), r.rec.Parked != nil)
	return nil
}

// forget drops the record of a deleted group.
func (r *groupRun) forget(op string) *failure {
	if r.dry {
		return nil
	}
	if err := r.store.DeleteGroup(r.role); err != nil {
		return retry(op, err)
	}
	r.known = false
	r.parked.set(roleKey(r.role), false)
	return nil
}

// logCall writes the one line per SCIM call of a group's reconcile
// (body is what was sent, for an explanation).
func (r *groupRun) logCall(op, method, path string, body any, cr scimclient.Result, err error) {
	r.explainRole.request(op, method, path, body, cr, err)
	fields := []zap.Field{
		zap.String("op", op), zap.String("scim_id", r.rec.SCIMID),
		zap.String("method", method), zap.String("path", path), zap.Int("status", cr.Status),
		zap.Int("attempt", cr.Attempts), zap.Int64("duration_ms", cr.Duration.Milliseconds()),
	}
	r.noteCall(method, cr, err)
	if err != nil {
		r.log.Warn(MsgSCIMRequest, append(fields, zap.Error(err))...)
		return
	}
	r.log.Info(MsgSCIMRequest, fields...)
}

// dryRun logs a write that --dry-run does not send.
func (r *groupRun) dryRun(op, method, path string, body any) {
	r.explainRole.unsent(op, method, path, body)
	b, _ := json.Marshal(body)
	r.log.Info(MsgSCIMDryRun, zap.String("op", op), zap.String("method", method), zap.String("path", path),
		zap.String("body", string(b)))
}
