package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// Outcome is what one reconcile did.
type Outcome string

// Outcomes of a reconcile.
const (
	Created     Outcome = "created"     // POSTed
	Adopted     Outcome = "adopted"     // found on the server after a 409 (or a crash mid-POST) and taken over
	Updated     Outcome = "updated"     // PATCHed or PUT
	Deactivated Outcome = "deactivated" // active=false (blocked, or deleted with on_delete: deactivate)
	Reactivated Outcome = "reactivated" // active=true again
	Deleted     Outcome = "deleted"     // DELETEd (or already gone)
	Unchanged   Outcome = "unchanged"   // nothing mapped differs: no request
	Skipped     Outcome = "skipped"     // excluded uid, operation switched off, or nothing to map yet
	Failed      Outcome = "failed"      // a permanent error: the uid is parked
	Held        Outcome = "held"        // held back by the deletion guard until approved
	// Waiting: the create waits for another uid's account to release the
	// userName (its deletion or rename is pending) and is tried again.
	Waiting Outcome = "waiting"
)

// Result is the outcome of reconciling one uid.
type Result struct {
	UID     uint32  `json:"uid"`
	Outcome Outcome `json:"outcome"`
	// Op is the operation tried: create, update, deactivate, reactivate,
	// delete, or "" when none was needed.
	Op       string `json:"op,omitempty"`
	UserName string `json:"userName,omitempty"`
	SCIMID   string `json:"scim_id,omitempty"`
	// Detail explains a skip or failure (the server's own detail for a
	// failure).
	Detail string `json:"detail,omitempty"`
}

// Reconcile makes the server's copy of uid equal to Drupal's user now,
// outside the binlog stream, checking the server's own copy (a GET), not
// only what the agent last pushed. The caller must make sure no Run
// reconciles the same uid at the same time.
func (a *Agent) Reconcile(ctx context.Context, uid uint32, dryRun bool) (Result, error) {
	return a.reconcile(ctx, uid, how{cause: "manual", dry: dryRun, verify: true})
}

// how says how one reconcile runs.
type how struct {
	cause  string // the binlog position (or command) that caused it, for logs
	dry    bool   // --dry-run: send no write, save nothing
	verify bool   // compare with the server's copy (GET), not only the pushed fingerprints
	// attempt counts the worker's tries of this reconcile (1 for the
	// first, 0 when nobody retries it).
	attempt int
}

// maxInvalidAnswerAttempts is how many times a reconcile is tried while
// the server answers something that is not SCIM (a proxy's HTML page, a
// body over the size limit) before the user is parked: such an answer may
// be a passing fault, but one user's must not hold everything back.
const maxInvalidAnswerAttempts = 3

// run is one reconcile in progress: the uid, its logger (every line
// carries uid and the binlog position that caused it) and its state.
type run struct {
	a      *Agent
	uid    uint32
	cause  string
	dry    bool // --dry-run: send no write, save nothing
	verify bool // compare with the server's copy
	log    *zap.Logger
	ctx    context.Context
	rec    state.Account
	known  bool   // rec came from the store
	uuid   string // the Drupal user's uuid now ("" while gone)
}

func (a *Agent) reconcile(ctx context.Context, uid uint32, h how) (res Result, err error) {
	defer func() {
		// A one-off dry run on a live agent (sync --dry-run) did nothing:
		// it counts towards neither status nor metrics.
		if err == nil && (!h.dry || a.dryRun) {
			a.counts.add(res.Outcome)
			a.metrics.observeReconcile(res)
		}
	}()
	if a.cfg.Provisioning.Excluded(uid) {
		return Result{UID: uid, Outcome: Skipped, Detail: "uid is excluded"}, nil
	}
	if h.dry && !a.dryRun {
		// A one-off dry run on a live agent leaves the request for the
		// real reconcile it was made for.
		if _, asked := a.verify.Load(uid); asked {
			h.verify = true
		}
	} else if _, asked := a.verify.LoadAndDelete(uid); asked {
		h.verify = true
	}
	log := a.log.With(zap.Uint32("uid", uid), zap.String("binlog_pos", h.cause))
	r := &run{a: a, uid: uid, cause: h.cause, dry: h.dry, verify: h.verify, log: log, ctx: scimclient.ContextWithLogger(ctx, log)}
	if r.rec, r.known, err = a.store.Account(uid); err != nil {
		return Result{}, err
	}
	if !r.known {
		r.rec = state.Account{UID: uid}
	}
	acct, exists, err := a.reader.Load(ctx, uid)
	if err != nil {
		return Result{}, err
	}
	if !exists {
		res, err = r.gone()
	} else {
		res, err = r.present(acct)
	}
	if err != nil {
		var se *scimclient.Error
		if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			// The token, not this user: parking would turn a revoked or
			// rotated token into every user parked. Hold the position
			// and retry like an outage; /readyz says why.
			return res, fmt.Errorf("the SCIM server refuses the token: %s", se.Error())
		}
		if errors.As(err, &se) && ctx.Err() == nil {
			detail := se.Detail
			if detail == "" {
				detail = se.Error()
			}
			return r.park(res, parkReason{status: se.Status, scimType: se.ScimType, detail: detail})
		}
		if invalidAnswer(err) && h.attempt >= maxInvalidAnswerAttempts && ctx.Err() == nil {
			return r.park(res, parkReason{detail: fmt.Sprintf("the server's answer is not valid SCIM (%d attempts): %v", h.attempt, err)})
		}
		return res, err
	}
	res.UID = uid
	if !h.dry {
		a.settleGuard(uid, res.Outcome)
	}
	if res.Op == "" && res.Outcome != Unchanged && res.Outcome != Skipped {
		res.Op = opOf(res.Outcome)
	}
	if res.UserName == "" {
		res.UserName = r.rec.UserName
	}
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	switch res.Outcome {
	case Unchanged:
		log.Debug(MsgReconcileUnchanged)
	case Skipped:
		log.Info(MsgReconcileSkipped, zap.String("userName", res.UserName), zap.String("detail", res.Detail))
	case Waiting:
		log.Info(MsgReconcileWaiting, zap.String("userName", res.UserName), zap.String("detail", res.Detail))
	}
	return res, nil
}

// settleGuard tells the deletion guard how uid's reconcile ended: a
// deprovisioning sent uses up its approval; an end without one (the user
// was unblocked, or is already gone) drops it from the held and approved
// sets, so neither lingers to let a later deletion bypass the guard.
func (a *Agent) settleGuard(uid uint32, o Outcome) {
	switch o {
	case Held, Failed, Waiting:
		// Still waiting for an approval, or parked: tried again later.
	case Deleted, Deactivated:
		a.guard.Sent(uid)
	default:
		a.guard.Forget(uid)
	}
}

// present reconciles a uid whose users row exists.
func (r *run) present(acct drupal.Account) (Result, error) {
	if acct.Values == nil {
		return Result{Outcome: Skipped, Detail: "the users row has no users_field_data row yet"}, nil
	}
	user := r.a.mapper.Map(acct)
	res := Result{UserName: user.UserName()}
	r.uuid = acct.UUID
	if prev := r.previousUUID(); r.known && prev != "" && prev != acct.UUID {
		return r.replacePrevious(user, prev)
	}
	if user.UserName() == "" {
		return res, r.permanent(OpCreate, "the account has no userName (its mapped source is empty)")
	}
	if r.rec.Creating && r.rec.SCIMID == "" {
		// A POST started and its outcome was never saved: look before
		// posting again.
		found, err := r.lookup(user)
		if err != nil {
			return res, err
		}
		if found != nil {
			return r.adopt(user, found)
		}
	}
	if r.rec.SCIMID == "" {
		return r.create(user)
	}
	var changes mapping.Changes
	if r.verify {
		current, cr, err := r.a.client.GetUser(r.ctx, r.rec.SCIMID)
		r.logCall(OpLookup, user.UserName(), http.MethodGet, "/Users/"+r.rec.SCIMID, cr, err)
		if scimclient.IsNotFound(err) {
			r.log.Warn(MsgSCIMRequest, zap.String("op", OpCreate), zap.String("userName", user.UserName()), zap.String("scim_id", r.rec.SCIMID),
				zap.String("detail", "the account is gone from the server; creating it again"))
			r.rec.SCIMID, r.rec.Pushed = "", nil
			return r.create(user)
		}
		if err != nil {
			return res, err
		}
		changes = r.a.mapper.Compare(user, current)
	} else {
		changes = r.a.mapper.Diff(user, r.rec.Pushed)
	}
	if r.rec.Gone && !changes.Has("active") && user.Active() {
		// Deleted-then-deactivated copy of an account that is back.
		changes.Set = append(changes.Set, "active")
	}
	if changes.Empty() {
		if r.rec.Parked != nil {
			r.rec.Parked = nil
			if err := r.save(); err != nil {
				return res, err
			}
		}
		return Result{Outcome: Unchanged, UserName: user.UserName()}, nil
	}
	return r.update(user, changes)
}

// previousUUID returns the uuid of the person uid's account was made for,
// or "" when unknown. Records older than state.Account.UUID have it as
// their externalId when the mapping takes externalId from the uuid.
func (r *run) previousUUID() string {
	if r.rec.UUID != "" {
		return r.rec.UUID
	}
	if r.a.mapper.FromUUID("externalId") {
		return r.rec.ExternalID
	}
	return ""
}

// replacePrevious handles a uid that came back as somebody else (another
// uuid than the one its account was made for): the previous person's
// account is deprovisioned as a deletion would be (the deletion guard
// counts it; with on_delete: deactivate it stays, inactive, and is no
// longer managed) and the newcomer gets an account of its own. A held
// deprovisioning holds the creation too.
func (r *run) replacePrevious(user mapping.User, prev string) (Result, error) {
	r.log.Info(MsgSCIMRequest, zap.String("op", OpDelete), zap.String("userName", r.rec.UserName), zap.String("scim_id", r.rec.SCIMID),
		zap.String("detail", fmt.Sprintf("uid %d now belongs to uuid %s, not %s: the previous account is deprovisioned and a new one created", r.uid, r.uuid, prev)))
	uuid := r.uuid
	r.uuid = "" // gone() deprovisions the previous person
	res, err := r.gone()
	r.uuid = uuid
	if err != nil || res.Outcome == Held {
		res.UserName = user.UserName()
		return res, err
	}
	if r.known {
		if err := r.forget(); err != nil {
			return res, err
		}
	}
	r.rec, r.known = state.Account{UID: r.uid}, false
	return r.create(user)
}

// op names the change an update makes: deactivate, reactivate or update.
func op(user mapping.User, c mapping.Changes) string {
	if !c.Has("active") {
		return OpUpdate
	}
	if user.Active() {
		return OpReactivate
	}
	return OpDeactivate
}

// opOf is the operation an outcome comes from.
func opOf(o Outcome) string {
	switch o {
	case Created, Adopted:
		return OpCreate
	case Deactivated:
		return OpDeactivate
	case Reactivated:
		return OpReactivate
	case Deleted:
		return OpDelete
	}
	return OpUpdate
}

func outcomeOf(op string) Outcome {
	switch op {
	case OpDeactivate:
		return Deactivated
	case OpReactivate:
		return Reactivated
	case OpCreate:
		return Created
	}
	return Updated
}

// update sends the changes, minus those whose operation is switched off.
func (r *run) update(user mapping.User, changes mapping.Changes) (Result, error) {
	res := Result{UserName: user.UserName()}
	prov := r.a.cfg.Provisioning
	if changes.Has("active") && !prov.Allows(config.OpDeactivate) {
		changes = changes.Without("active")
	}
	if !prov.Allows(config.OpUpdate) {
		active := changes.Has("active")
		changes = mapping.Changes{}
		if active {
			changes.Set = []string{"active"}
		}
	}
	if changes.Empty() {
		res.Outcome, res.Detail = Skipped, "the operation is switched off in provisioning.operations"
		return res, nil
	}
	name := op(user, changes)
	if name == OpDeactivate && !r.allowDeprovision(name) {
		return Result{Outcome: Held, Op: name, UserName: user.UserName()}, nil
	}
	err := r.send(name, user, changes)
	if scimclient.IsNotFound(err) {
		// Deleted on the server behind our back: provision it again.
		r.log.Warn(MsgSCIMRequest, zap.String("op", name), zap.String("scim_id", r.rec.SCIMID),
			zap.String("detail", "the account is gone from the server; creating it again"))
		r.rec.SCIMID, r.rec.Pushed = "", nil
		return r.create(user)
	}
	if err != nil {
		res.Outcome = outcomeOf(name)
		return res, err
	}
	r.recordPush(user, changes)
	if err := r.save(); err != nil {
		return res, err
	}
	res.Outcome = outcomeOf(name)
	return res, nil
}

// send applies changes to the server's copy: a PATCH where the server has
// PATCH, else a GET and a PUT of the server's copy with the changes
// applied (so attributes the agent does not manage survive).
func (r *run) send(name string, user mapping.User, changes mapping.Changes) error {
	id := r.rec.SCIMID
	path := "/Users/" + id
	if r.a.usePatch.Load() {
		var current scimclient.Resource
		if r.a.mapper.MergesTyped(changes) {
			// A PATCH replaces the whole list: read the server's values
			// first so those of other types (a home address) survive.
			var cr scimclient.Result
			var err error
			current, cr, err = r.a.client.GetUser(r.ctx, id)
			r.logCall(OpLookup, user.UserName(), http.MethodGet, path, cr, err)
			if err != nil {
				return err
			}
		}
		ops := r.a.patchOps(user, changes, current)
		if r.dry {
			r.dryRun(name, http.MethodPatch, path, map[string]any{"schemas": []string{scimclient.PatchOpSchema}, "Operations": ops})
			return nil
		}
		_, cr, err := r.a.client.PatchUser(r.ctx, id, ops)
		r.logCall(name, user.UserName(), http.MethodPatch, path, cr, err)
		if !scimclient.IsStatus(err, http.StatusMethodNotAllowed) {
			return err
		}
		r.a.usePatch.Store(false)
		r.log.Warn(MsgSCIMRequest, zap.String("op", name), zap.String("detail", "the server has no PATCH (405): using PUT from now on"))
	}
	current, cr, err := r.a.client.GetUser(r.ctx, id)
	r.logCall(OpLookup, user.UserName(), http.MethodGet, path, cr, err)
	if err != nil {
		return err
	}
	r.a.mapper.Apply(current, user, changes)
	if r.dry {
		r.dryRun(name, http.MethodPut, path, current)
		return nil
	}
	_, cr, err = r.a.client.ReplaceUser(r.ctx, id, current)
	r.logCall(name, user.UserName(), http.MethodPut, path, cr, err)
	return err
}

// patchOps are the operations that make the server's copy equal user on
// the changed paths; current, when known, is the server's copy, whose
// values of other types a typed list keeps.
func (a *Agent) patchOps(user mapping.User, c mapping.Changes, current scimclient.Resource) []scimclient.PatchOp {
	ops := make([]scimclient.PatchOp, 0, len(c.Set)+len(c.Remove))
	for _, p := range c.Set {
		ops = append(ops, scimclient.PatchOp{Op: "replace", Path: p, Value: mapping.ValueFor(current, user, p)})
	}
	for _, p := range c.Remove {
		if rest := a.mapper.Remaining(current, p); rest != nil {
			// The agent's value goes, the others stay.
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: p, Value: rest})
			continue
		}
		ops = append(ops, scimclient.PatchOp{Op: "remove", Path: p})
	}
	return ops
}

// recordPush notes what the server now holds.
func (r *run) recordPush(user mapping.User, c mapping.Changes) {
	fp := user.Fingerprints()
	if r.rec.Pushed == nil {
		r.rec.Pushed = map[string]uint64{}
	}
	for _, p := range c.Set {
		if v, ok := fp[p]; ok {
			r.rec.Pushed[p] = v
		} else {
			delete(r.rec.Pushed, p)
		}
	}
	for _, p := range c.Remove {
		delete(r.rec.Pushed, p)
	}
	if c.Has("active") {
		r.rec.Active = user.Active()
		if user.Active() {
			r.rec.Gone = false
		}
	}
	r.rec.UserName, r.rec.ExternalID = user.UserName(), user.ExternalID()
	if r.uuid != "" {
		r.rec.UUID = r.uuid
	}
	r.rec.Parked = nil
}

// holdsAll records that the server holds every managed value of user,
// and saves.
func (r *run) holdsAll(user mapping.User) error {
	r.recordPush(user, mapping.Changes{Set: r.a.mapper.Paths()})
	r.rec.Active = user.Active()
	return r.save()
}

// create POSTs the user, adopting the server's account on a 409.
func (r *run) create(user mapping.User) (Result, error) {
	res := Result{UserName: user.UserName()}
	if !r.a.cfg.Provisioning.Allows(config.OpCreate) {
		res.Outcome, res.Detail = Skipped, "create is switched off in provisioning.operations"
		return res, nil
	}
	body := user.Resource()
	if r.dry {
		r.dryRun(OpCreate, http.MethodPost, "/Users", body)
		res.Outcome = Created
		return res, nil
	}
	r.rec.Creating, r.rec.UserName, r.rec.ExternalID, r.rec.UUID = true, user.UserName(), user.ExternalID(), r.uuid
	if err := r.save(); err != nil {
		return res, err
	}
	created, cr, err := r.a.client.CreateUser(r.ctx, body)
	if scimclient.IsStatus(err, http.StatusConflict) {
		r.logCall(OpCreate, user.UserName(), http.MethodPost, "/Users", cr, err)
		found, lerr := r.lookup(user)
		if lerr != nil {
			return res, lerr
		}
		if found == nil {
			res.Outcome = Created
			return res, err // a 409 for something we cannot find: park with the server's detail
		}
		return r.adopt(user, found)
	}
	if err != nil {
		r.logCall(OpCreate, user.UserName(), http.MethodPost, "/Users", cr, err)
		res.Outcome = Created
		return res, err
	}
	id, _ := created["id"].(string)
	r.rec.SCIMID = id
	r.logCall(OpCreate, user.UserName(), http.MethodPost, "/Users", cr, nil)
	if id == "" {
		return res, r.permanent(OpCreate, "the server's answer to POST /Users holds no id")
	}
	r.rec.Creating, r.rec.Pushed = false, nil
	if err := r.holdsAll(user); err != nil {
		return res, err
	}
	res.Outcome, res.SCIMID = Created, id
	return res, nil
}

// lookup finds the server's account of user: by userName (as Entra
// does), then by externalId (our uuid). It returns nil when neither finds
// one.
func (r *run) lookup(user mapping.User) (scimclient.Resource, error) {
	for _, f := range []struct{ attr, value string }{{"userName", user.UserName()}, {"externalId", user.ExternalID()}} {
		if f.value == "" {
			continue
		}
		filter := scimclient.FilterEq(f.attr, f.value)
		list, cr, err := r.a.client.ListUsers(r.ctx, filter, 1, 2)
		r.logCall(OpLookup, user.UserName(), http.MethodGet, "/Users?filter="+filter, cr, err)
		if err != nil {
			return nil, err
		}
		for _, res := range list.Resources {
			// A server that ignores or loosens the filter must not hand
			// us somebody else's account.
			if got, _ := res[f.attr].(string); matches(f.attr, got, f.value) {
				return res, nil
			}
		}
	}
	return nil, nil
}

// matches reports whether a looked-up attribute is the value asked for:
// userName is case-insensitive in SCIM (RFC 7643 §4.1.1), externalId is
// not.
func matches(attr, got, want string) bool {
	if attr == "userName" {
		return strings.EqualFold(got, want)
	}
	return got == want
}

// claim checks whether an account found on the server may become uid's.
// owner, when not 0, is another uid whose record holds the account: the
// caller decides. Otherwise a permanent error says why it may not (it
// carries another identity's externalId, or has no id).
func (r *run) claim(userName, externalID string, found scimclient.Resource) (id string, owner uint32, err error) {
	id, _ = found["id"].(string)
	if id == "" {
		return "", 0, r.permanent(OpCreate, "the server's matching account has no id")
	}
	if other, err := r.a.managedBy(id); err != nil {
		return "", 0, err
	} else if other != 0 && other != r.uid {
		return id, other, nil
	}
	if ext, _ := found["externalId"].(string); ext != "" && externalID != "" && ext != externalID {
		return "", 0, r.permanent(OpCreate, fmt.Sprintf("userName %q is taken on the server by account %s, which belongs to externalId %s",
			userName, id, ext))
	}
	return id, 0, nil
}

// waitForOwner decides what a create does whose userName another uid's
// account holds: when that uid's deprovisioning or rename is pending (its
// Drupal user is gone, or no longer has this name), the create waits for
// it; when that failed, or the name is still rightly the other uid's, the
// create is parked naming it.
func (r *run) waitForOwner(user mapping.User, id string, owner uint32) (Result, error) {
	res := Result{UserName: user.UserName(), Op: OpCreate, Outcome: Created}
	taken := fmt.Sprintf("userName %q is taken on the server by account %s, which the agent provisions for uid %d", user.UserName(), id, owner)
	acct, exists, err := r.a.reader.Load(r.ctx, owner)
	if err != nil {
		return res, err
	}
	if exists && acct.Values != nil && strings.EqualFold(r.a.mapper.Map(acct).UserName(), user.UserName()) {
		return res, r.permanent(OpCreate, taken)
	}
	rec, _, err := r.a.store.Account(owner)
	if err != nil {
		return res, err
	}
	if rec.Parked != nil {
		return res, r.permanent(OpCreate, fmt.Sprintf("%s, whose %s failed: %s", taken, rec.Parked.Op, rec.Parked.Detail))
	}
	// The owner's reconcile releases the name; make sure it runs.
	r.a.work.Requeue(owner, fmt.Sprintf("releases userName for uid %d", r.uid))
	res.Outcome = Waiting
	res.Detail = fmt.Sprintf("%s, whose deprovisioning or rename is pending: the create waits for it", taken)
	return res, nil
}

// adopt takes over an account found on the server and makes it match.
// An account that carries another identity's externalId is not ours to
// take.
func (r *run) adopt(user mapping.User, found scimclient.Resource) (Result, error) {
	res := Result{UserName: user.UserName()}
	id, owner, err := r.claim(user.UserName(), user.ExternalID(), found)
	if err != nil {
		res.Outcome = Created // the create failed: parked as one
		return res, err
	}
	if owner != 0 {
		return r.waitForOwner(user, id, owner)
	}
	r.rec.SCIMID, r.rec.Creating, r.rec.Pushed = id, false, nil
	r.log.Info(MsgSCIMRequest, zap.String("op", OpCreate), zap.String("userName", user.UserName()), zap.String("scim_id", id),
		zap.String("detail", "adopted the server's existing account"))
	changes := r.a.mapper.Compare(user, found)
	if name := op(user, changes); name == OpDeactivate && !r.allowDeprovision(name) {
		// Deactivating the adopted account counts towards the deletion
		// guard: send the rest, keep the account, hold the deactivation.
		return r.adoptHeld(user, id, changes.Without("active"))
	}
	if !changes.Empty() {
		if err := r.send(op(user, changes), user, changes); err != nil {
			r.rec.SCIMID = id
			if serr := r.save(); serr != nil {
				return res, serr
			}
			res.Outcome = Adopted
			return res, err
		}
	}
	if err := r.holdsAll(user); err != nil {
		return res, err
	}
	res.Outcome, res.SCIMID = Adopted, id
	return res, nil
}

// adoptHeld records an adopted account whose deactivation the deletion
// guard holds: rest (the other changes) is sent, and every managed value
// but active counts as pushed, so the deactivation is what the reconcile
// after an approval sends.
func (r *run) adoptHeld(user mapping.User, id string, rest mapping.Changes) (Result, error) {
	res := Result{UserName: user.UserName(), SCIMID: id, Outcome: Held, Op: OpDeactivate}
	if !rest.Empty() {
		if err := r.send(OpUpdate, user, rest); err != nil {
			if serr := r.save(); serr != nil {
				return res, serr
			}
			res.Outcome, res.Op = Adopted, ""
			return res, err
		}
	}
	paths := mapping.Changes{Set: r.a.mapper.Paths()}.Without("active")
	r.recordPush(user, paths)
	r.rec.Active = true
	return res, r.save()
}

// managedBy returns the uid whose record holds scimID, or 0.
func (a *Agent) managedBy(scimID string) (uint32, error) {
	uid, _, err := a.store.UIDBySCIMID(scimID)
	return uid, err
}

// gone reconciles a uid whose users row no longer exists: DELETE, or
// deactivate with on_delete: deactivate. Only accounts the agent
// provisioned are touched.
func (r *run) gone() (Result, error) {
	res := Result{UserName: r.rec.UserName, SCIMID: r.rec.SCIMID}
	if !r.known || (r.rec.SCIMID == "" && !r.rec.Creating) {
		res.Outcome = Unchanged
		return res, nil
	}
	if r.rec.SCIMID == "" {
		// Deleted while its POST's outcome was unknown: find it.
		found, err := r.lookup(mapping.User{Values: map[string]any{"userName": r.rec.UserName, "externalId": r.rec.ExternalID}})
		if err != nil {
			return res, err
		}
		if ext, _ := found["externalId"].(string); found != nil && r.rec.ExternalID != "" && ext != r.rec.ExternalID {
			// The POST sent our externalId; an account without it is one
			// the POST never made (same userName, somebody else's), and
			// deleting it would destroy what the agent does not own.
			id, _ := found["id"].(string)
			r.log.Warn(MsgSCIMRequest, zap.String("op", OpDelete), zap.String("userName", r.rec.UserName), zap.String("scim_id", id),
				zap.String("detail", "the account found by userName does not carry this user's externalId: left alone"))
			found = nil
		}
		if found == nil {
			res.Outcome = Unchanged
			return res, r.forget()
		}
		id, owner, err := r.claim(r.rec.UserName, r.rec.ExternalID, found)
		if err == nil && owner != 0 {
			err = r.permanent(OpDelete, fmt.Sprintf("the account found is %s, which the agent provisions for uid %d", id, owner))
		}
		if err != nil {
			var se *scimclient.Error
			if errors.As(err, &se) {
				// Somebody else's account: never ours to delete.
				res.Outcome, res.Detail = Unchanged, se.Detail
				return res, r.forget()
			}
			return res, err
		}
		r.rec.SCIMID = id
	}
	prov := r.a.cfg.Provisioning
	if prov.OnDelete == config.OpDeactivate {
		if r.rec.Gone {
			res.Outcome = Unchanged
			return res, nil
		}
		if !prov.Allows(config.OpDeactivate) {
			res.Outcome, res.Detail = Skipped, "deactivate is switched off in provisioning.operations"
			return res, nil
		}
		if !r.allowDeprovision(OpDeactivate) {
			res.Outcome, res.Op = Held, OpDeactivate
			return res, nil
		}
		user := mapping.User{UID: r.uid, Values: map[string]any{"active": false, "userName": r.rec.UserName}}
		changes := mapping.Changes{Set: []string{"active"}}
		if err := r.send(OpDeactivate, user, changes); err != nil {
			if scimclient.IsNotFound(err) {
				res.Outcome = Deleted
				return res, r.forget()
			}
			res.Outcome = Deactivated
			return res, err
		}
		r.rec.Gone, r.rec.Active, r.rec.Parked = true, false, nil
		res.Outcome = Deactivated
		return res, r.save()
	}
	if !prov.Allows(config.OpDelete) {
		res.Outcome, res.Detail = Skipped, "delete is switched off in provisioning.operations"
		return res, nil
	}
	if !r.allowDeprovision(OpDelete) {
		res.Outcome, res.Op = Held, OpDelete
		return res, nil
	}
	path := "/Users/" + r.rec.SCIMID
	if r.dry {
		r.dryRun(OpDelete, http.MethodDelete, path, nil)
		res.Outcome = Deleted
		return res, nil
	}
	cr, err := r.a.client.DeleteUser(r.ctx, r.rec.SCIMID)
	if scimclient.IsNotFound(err) {
		err = nil // already gone: the goal is met
	}
	r.logCall(OpDelete, r.rec.UserName, http.MethodDelete, path, cr, err)
	if err != nil {
		res.Outcome = Deleted
		return res, err
	}
	res.Outcome = Deleted
	return res, r.forget()
}

// allowDeprovision asks the deletion guard; dry runs are never held.
func (r *run) allowDeprovision(op string) bool {
	return r.dry || r.a.guard.Allow(r.uid, op)
}

// parkReason is why a uid is parked: the server's refusal (status,
// scimType, detail) or the agent's own finding (detail only).
type parkReason struct {
	status   int
	scimType string
	detail   string
}

// invalidAnswer reports whether err is a successful status whose body is
// not the SCIM the call expects.
func invalidAnswer(err error) bool {
	return errors.Is(err, scimclient.ErrInvalidResponse) || errors.Is(err, scimclient.ErrResponseTooLarge)
}

// park records a permanent failure: the uid stops holding the position
// and is tried again at its next change, at restart, or by `retry`.
func (r *run) park(res Result, why parkReason) (Result, error) {
	name := opOf(res.Outcome)
	p := &state.Parked{Op: name, Status: why.status, ScimType: why.scimType, Detail: why.detail, At: time.Now().UTC(), Failures: 1}
	if r.rec.Parked != nil {
		p.Failures = r.rec.Parked.Failures + 1
	}
	r.rec.Parked = p
	// A 400 refused the POST; any other failure may have followed a POST
	// the server applied: look before posting again.
	r.rec.Creating = r.rec.Creating && r.rec.SCIMID == "" && why.status != http.StatusBadRequest
	if err := r.save(); err != nil {
		return res, err
	}
	detail := why.detail
	logAt := r.log.Error
	if r.dry {
		// Nothing is parked in a dry run: no alert-worthy line.
		logAt = r.log.Warn
	}
	logAt(MsgReconcileParked, zap.String("op", name), zap.String("userName", res.UserName),
		zap.String("scim_id", r.rec.SCIMID), zap.Int("status", why.status), zap.String("scim_type", why.scimType),
		zap.String("detail", detail), zap.Int("failures", p.Failures), zap.Bool("dry_run", r.dry))
	res.UID, res.Op, res.Outcome, res.Detail = r.uid, name, Failed, detail
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	return res, nil
}

// permanent is a failure the agent finds itself, parked like a server's
// 4xx.
func (r *run) permanent(op, detail string) error {
	return &scimclient.Error{Method: op, Detail: detail}
}

// save stores the record, unless this is a dry run.
func (r *run) save() error {
	if r.dry {
		return nil
	}
	r.known = true
	if err := r.a.store.PutAccount(r.rec); err != nil {
		return err
	}
	r.a.parked.set(r.uid, r.rec.Parked != nil)
	return nil
}

// forget drops the record of a deleted account.
func (r *run) forget() error {
	if r.dry {
		return nil
	}
	if err := r.a.store.DeleteAccount(r.uid); err != nil {
		return err
	}
	r.known = false
	r.a.parked.set(r.uid, false)
	return nil
}

// logCall writes the one line per SCIM call: info when it succeeded,
// warn when the server refused it (the reconcile may still recover, e.g.
// adopt after a 409; a parked uid gets its own error line).
func (r *run) logCall(op, userName, method, path string, cr scimclient.Result, err error) {
	fields := []zap.Field{
		zap.String("op", op), zap.String("userName", userName), zap.String("scim_id", r.rec.SCIMID),
		zap.String("method", method), zap.String("path", path), zap.Int("status", cr.Status),
		zap.Int("attempt", cr.Attempts), zap.Int64("duration_ms", cr.Duration.Milliseconds()),
	}
	r.a.noteAnswer(method, cr, err)
	if err != nil {
		r.log.Warn(MsgSCIMRequest, append(fields, zap.Error(err))...)
		return
	}
	r.log.Info(MsgSCIMRequest, fields...)
}

// noteAnswer records what the answer to one SCIM call says: its metrics,
// whether the server is healthy, and whether it takes the token. Any
// answer other than 401 or 5xx shows both (a 403 or 404 comes after the
// token was accepted).
func (a *Agent) noteAnswer(method string, cr scimclient.Result, err error) {
	a.metrics.observeRequest(method, cr.Status, cr.Duration)
	switch {
	case cr.Status == http.StatusUnauthorized:
		a.authRefused.Store(time.Now().UnixNano())
		a.markSCIMFail()
	case err == nil || cr.Status > 0 && cr.Status < 500:
		a.authRefused.Store(0)
		a.markSCIMOK()
	}
}

// dryRun logs a write that --dry-run does not send.
func (r *run) dryRun(op, method, path string, body any) {
	b, _ := json.Marshal(body)
	r.log.Info(MsgSCIMDryRun, zap.String("op", op), zap.String("method", method), zap.String("path", path),
		zap.String("body", string(b)))
}
