package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// users reconciles Drupal users with the server's Users, one uid at a
// time: it reads the user's rows now, maps them, compares them with what
// was pushed (or with the server's own copy) and sends the difference. It
// holds what every user's reconcile needs; it keeps no state of its own.
type users struct {
	prov   config.Provisioning
	log    *zap.Logger
	mapper *mapping.Mapper
	scope  *mapping.Scope // provisioning.scope: who is provisioned
	reader *drupal.Reader
	// pages reads the loader's batches, waiting for a write in flight
	// only pageLockWait.
	pages  *drupal.Reader
	store  *state.Store
	scim   *scimServer
	guard  *guard
	parked *parkedSet
	// noteCall records a SCIM call's answer (metrics, server health).
	noteCall func(method string, cr scimclient.Result, err error)
	// requeue queues another uid (whose reconcile a create waits for).
	requeue func(uid uint32, cause string)
	// membership tells that uid's groups may take it or drop it now: it
	// got an account (created or adopted), or went out of or back into
	// provisioning.scope, while holding roles.
	membership func(uid uint32, roles []string)
}

// how says how one reconcile runs.
type how struct {
	cause  string // the binlog position (or command) that caused it, for logs
	dry    bool   // --dry-run: send no write, save nothing
	verify bool   // compare with the server's copy (GET), not only the pushed fingerprints
	// attempt counts the tries of this reconcile (1 for the first, 0 when
	// nobody retries it).
	attempt int
	// explain and explainRole, when set, record a user's or a role's
	// reconcile step by step (sync --explain).
	explain     *Explanation
	explainRole *RoleExplanation
	// pre is what the loader read for this reconcile; nil: read the user
	// now.
	pre *preload
}

// userRun is one user's reconcile in progress: the uid, its logger (every
// line carries uid and the binlog position that caused it) and its record.
type userRun struct {
	*users
	how
	uid   uint32
	log   *zap.Logger
	rec   state.Account
	known bool     // rec came from the store
	uuid  string   // the Drupal user's uuid now ("" while gone)
	roles []string // the Drupal user's roles now
	// current is the server's copy of the account as this reconcile last
	// read it (or a write's answer showed it); nil when not read, or
	// changed since.
	current scimclient.Resource
	// noFilter: this reconcile sends no value-filtered PATCH path (the
	// server refused one).
	noFilter bool
	// scopeChanged: the user went out of or back into provisioning.scope
	// as far as its groups go (its record marked, cleared or dropped).
	scopeChanged bool
	// quiet: a skip not worth a log line (a user outside the scope and
	// never provisioned, like an excluded uid).
	quiet bool
	// marked: rec is the Creating record the loader saved for this
	// reconcile's POST.
	marked bool
}

// reconcile makes the server's copy of uid equal to Drupal's user now. A
// permanent failure parks the uid (outcome Failed); a returned error is
// a failure to try again later (errTokenRefused when the server refuses
// the credentials).
func (u *users) reconcile(ctx context.Context, uid uint32, h how) (Result, error) {
	if u.prov.Excluded(uid) {
		h.explain.excluded(uid)
		return Result{UID: uid, Outcome: Skipped, Detail: "uid is excluded"}, nil
	}
	log := u.log.With(zap.Uint32("uid", uid), zap.String("binlog_pos", h.cause))
	ctx = scimclient.ContextWithLogger(ctx, log)
	r := &userRun{users: u, how: h, uid: uid, log: log}
	var err error
	if h.pre != nil && h.pre.haveRec {
		r.rec, r.known = h.pre.rec, h.pre.known
	} else if r.rec, r.known, err = u.store.Account(uid); err != nil {
		return Result{}, err
	}
	h.explain.record(r.rec, r.known)
	if !r.known {
		r.rec = state.Account{UID: uid}
	}
	var acct drupal.Account
	var exists bool
	if h.pre != nil {
		acct, exists, r.marked = h.pre.acct, h.pre.exists, h.pre.marked
	} else if acct, exists, err = u.reader.Load(ctx, uid); err != nil {
		return Result{}, err
	}
	h.explain.drupal(u.reader, acct, exists)
	var res Result
	var f *failure
	if exists {
		res, f = r.present(ctx, acct)
	} else {
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
	return r.finish(res), nil
}

// finish completes the result of a reconcile that reached its goal (or
// waits), tells the deletion guard how it ended and logs it.
func (r *userRun) finish(res Result) Result {
	res.UID = r.uid
	if !r.dry {
		r.settleGuard(res.Outcome)
		if r.membershipChanged(res.Outcome) && len(r.roles) > 0 && r.membership != nil {
			r.membership(r.uid, r.roles)
		}
	}
	if res.Op == "" && res.Outcome != Unchanged && res.Outcome != Skipped {
		res.Op = opFor(res.Outcome)
	}
	if res.UserName == "" {
		res.UserName = r.rec.UserName
	}
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	switch res.Outcome {
	case Unchanged:
		r.log.Debug(MsgReconcileUnchanged)
	case Skipped:
		if !r.quiet {
			r.log.Info(MsgReconcileSkipped, zap.String("userName", res.UserName), zap.String("detail", res.Detail))
		}
	case Waiting:
		r.log.Info(MsgReconcileWaiting, zap.String("userName", res.UserName), zap.String("detail", res.Detail))
	}
	return res
}

// membershipChanged reports whether the reconcile, ending with o, may
// have changed which groups hold the user: it got an account, or its
// record now says it is in or out of provisioning.scope.
func (r *userRun) membershipChanged(o Outcome) bool {
	switch o {
	case Created, Adopted:
		return true
	case Failed, Held, Waiting:
		return false
	}
	return r.scopeChanged
}

// opFor is the operation an outcome reached comes from.
func opFor(o Outcome) string {
	switch o {
	case Created, Adopted, Waiting:
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

// settleGuard tells the deletion guard how the reconcile ended: a
// deprovisioning sent uses up its approval; an end without one (the user
// was unblocked, or is already gone) drops it from the held and approved
// sets, so neither lingers to let a later deletion bypass the guard.
func (r *userRun) settleGuard(o Outcome) {
	switch o {
	case Held, Failed, Waiting:
		// Still waiting for an approval, or parked: tried again later.
	case Deleted, Deactivated:
		r.guard.Sent(userKey(r.uid))
	default:
		r.guard.Forget(userKey(r.uid))
	}
}

// present reconciles a uid whose users row exists.
func (r *userRun) present(ctx context.Context, acct drupal.Account) (Result, *failure) {
	if acct.Values == nil {
		return Result{Outcome: Skipped, Detail: "the users row has no users_field_data row yet"}, nil
	}
	user := r.mapper.Map(acct)
	res := Result{UserName: user.UserName()}
	r.uuid = acct.UUID
	r.roles, _ = acct.Values["roles"].([]string)
	decision := r.scope.Evaluate(acct)
	r.explain.desired(user)
	r.explain.scope(decision)
	in := decision.In
	if prev := r.previousUUID(); r.known && prev != "" && prev != acct.UUID {
		return r.replacePrevious(ctx, user, prev, in)
	}
	if !in {
		return r.outOfScope(ctx, user)
	}
	if r.rec.OutOfScope {
		// Back in scope: the account deactivated for leaving it is
		// reactivated below (the active pushed was false), with what
		// changed meanwhile, and its groups take it again.
		r.rec.OutOfScope, r.scopeChanged = false, true
	}
	if user.UserName() == "" {
		r.explain.decide(OpCreate, "no account of uid %d is known (no SCIM id in the state file)", r.uid)
		return res, refused(OpCreate, "the account has no userName (its mapped source is empty)")
	}
	if r.rec.Creating && r.rec.SCIMID == "" && !r.markedFor(user) {
		// A POST started and its outcome was never saved: look before
		// posting again.
		r.explain.decide(OpCreate, "a POST /Users started and its outcome was never saved: the account is looked up before posting again")
		found, f := r.lookup(ctx, OpCreate, user)
		if f != nil {
			return res, f
		}
		if found != nil {
			return r.adopt(ctx, user, found)
		}
	}
	if r.rec.SCIMID == "" {
		return r.create(ctx, user)
	}
	changes, gone, f := r.changes(ctx, user)
	switch {
	case f != nil:
		return res, f
	case gone:
		return r.createAgain(ctx, OpCreate, user)
	case changes.Empty():
		if r.verify {
			r.explain.decide(actionNothing, "the server's copy matches Drupal on every mapped attribute")
		} else {
			r.explain.decide(actionNothing, "no mapped value changed since the last push")
		}
		if r.rec.Parked != nil || r.scopeChanged {
			r.rec.Parked = nil
			if err := r.save(); err != nil {
				return res, retry(OpUpdate, err)
			}
		}
		return Result{Outcome: Unchanged, UserName: user.UserName()}, nil
	}
	return r.update(ctx, user, changes)
}

// changes returns what differs between user and the server's account:
// compared with the server's own copy when verifying, else with the
// fingerprints of what was last pushed. gone reports that the account is
// no longer on the server.
func (r *userRun) changes(ctx context.Context, user mapping.User) (c mapping.Changes, gone bool, f *failure) {
	var current scimclient.Resource
	if r.verify {
		var cr scimclient.Result
		var err error
		current, cr, err = r.scim.client.GetUser(ctx, r.rec.SCIMID)
		r.logCall(OpLookup, user.UserName(), http.MethodGet, "/Users/"+r.rec.SCIMID, nil, cr, err)
		r.explain.got(r.rec.SCIMID, current, cr, err)
		if scimclient.IsNotFound(err) {
			return c, true, nil
		}
		if err != nil {
			return c, false, classify(OpUpdate, err)
		}
		r.saw(current, cr.Version)
		c = r.mapper.Compare(user, current)
	} else {
		c = r.mapper.Diff(user, r.rec.Pushed)
	}
	if (r.rec.Gone || r.scopeChanged && !r.rec.Active) && !c.Has("active") && user.Active() {
		// Deleted-then-deactivated copy of an account that is back, or one
		// deactivated for leaving the scope that is back in it.
		c.Set = append(c.Set, "active")
	}
	if current != nil {
		r.explain.compared(user, current, c)
	} else {
		r.explain.diffed(user, r.rec.Pushed, c)
	}
	return c, false, nil
}

// createAgain provisions an account deleted on the server behind the
// agent's back again.
func (r *userRun) createAgain(ctx context.Context, op string, user mapping.User) (Result, *failure) {
	r.log.Warn(MsgSCIMRequest, zap.String("op", op), zap.String("userName", user.UserName()), zap.String("scim_id", r.rec.SCIMID),
		zap.String("detail", "the account is gone from the server; creating it again"))
	r.explain.decide(OpCreate, "the account %s is gone from the server: it is created again", r.rec.SCIMID)
	r.rec.SCIMID, r.rec.Pushed = "", nil
	r.forgetCopy()
	return r.create(ctx, user)
}

// update sends the changes, minus those whose operation is switched off.
func (r *userRun) update(ctx context.Context, user mapping.User, changes mapping.Changes) (Result, *failure) {
	res := Result{UserName: user.UserName()}
	r.explain.decide(op(user, changes), "%s", differs(changes))
	if changes.Has("active") && !r.prov.Allows(config.OpDeactivate) {
		changes = changes.Without("active")
	}
	if !r.prov.Allows(config.OpUpdate) {
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
	if f := r.send(ctx, name, user, changes); f.notFound() {
		// Deleted on the server behind our back: provision it again.
		return r.createAgain(ctx, name, user)
	} else if f != nil {
		return res, f
	}
	r.recordPush(user, changes)
	if err := r.save(); err != nil {
		return res, retry(name, err)
	}
	res.Outcome = outcomeOf(name)
	return res, nil
}

// recordPush notes what the server now holds.
func (r *userRun) recordPush(user mapping.User, c mapping.Changes) {
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
func (r *userRun) holdsAll(user mapping.User) error {
	r.recordPush(user, mapping.Changes{Set: r.mapper.Paths()})
	r.rec.Active = user.Active()
	return r.save()
}

// allowDeprovision asks the deletion guard; dry runs are never held.
func (r *userRun) allowDeprovision(op string) bool {
	return r.dry || r.guard.Allow(userKey(r.uid), op)
}

// park records a permanent failure: the uid stops holding the position
// and is tried again at its next change, at restart, or by `retry`. An
// error is returned only when the record cannot be saved (then the
// reconcile is tried again).
func (r *userRun) park(res Result, f *failure) (Result, error) {
	p := f.parked(r.rec.Parked)
	r.rec.Parked = p
	r.rec.Creating = f.stillCreating(r.rec.Creating, r.rec.SCIMID)
	if err := r.save(); err != nil {
		return res, err
	}
	parkedLogger(r.log, r.dry)(MsgReconcileParked, zap.String("op", f.op), zap.String("userName", res.UserName),
		zap.String("scim_id", r.rec.SCIMID), zap.Int("status", f.status), zap.String("scim_type", f.scimType),
		zap.String("detail", f.detail), zap.Int("failures", p.Failures), zap.Bool("dry_run", r.dry))
	res.UID, res.Op, res.Outcome, res.Detail = r.uid, f.op, Failed, f.detail
	if res.SCIMID == "" {
		res.SCIMID = r.rec.SCIMID
	}
	return res, nil
}

// save stores the record, unless this is a dry run, without waiting for
// the disk: it is what the server now holds, and a crash that loses it
// replays the change from a position saved after it (a position's save
// commits every record staged before it), which finds the server's copy
// as the record says, or (for a create, whose Creating record is
// durable) looks it up.
func (r *userRun) save() error {
	return r.keep(r.store.PutAccountLater)
}

// saveNow stores the record durably, unless this is a dry run: what must
// be on disk before a request goes out.
func (r *userRun) saveNow() error {
	return r.keep(r.store.PutAccount)
}

// keep stores the record with put (durably or not), unless this is a dry
// run, and keeps the parked tally in step.
func (r *userRun) keep(put func(state.Account) error) error {
	if r.dry {
		return nil
	}
	r.known = true
	if err := put(r.rec); err != nil {
		return err
	}
	r.parked.set(userKey(r.uid), r.rec.Parked != nil)
	return nil
}

// forget drops the record of a deleted account (without waiting for the
// disk, as save).
func (r *userRun) forget() error {
	if r.dry {
		return nil
	}
	if err := r.store.DeleteAccountLater(r.uid); err != nil {
		return err
	}
	r.known = false
	r.parked.set(userKey(r.uid), false)
	return nil
}

// logCall writes the one line per SCIM call: info when it succeeded,
// warn when the server refused it (the reconcile may still recover, e.g.
// adopt after a 409; a parked uid gets its own error line).
func (r *userRun) logCall(op, userName, method, path string, body any, cr scimclient.Result, err error) {
	r.explain.request(op, method, path, body, cr, err)
	fields := []zap.Field{
		zap.String("op", op), zap.String("userName", userName), zap.String("scim_id", r.rec.SCIMID),
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
func (r *userRun) dryRun(op, method, path string, body any) {
	r.explain.unsent(op, method, path, body)
	b, _ := json.Marshal(body)
	r.log.Info(MsgSCIMDryRun, zap.String("op", op), zap.String("method", method), zap.String("path", path),
		zap.String("body", string(b)))
}
