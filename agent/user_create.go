package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// create POSTs the user, adopting the server's account on a 409.
func (r *userRun) create(ctx context.Context, user mapping.User) (Result, *failure) {
	res := Result{UserName: user.UserName()}
	if r.explain != nil && r.explain.Decision.Action != OpCreate {
		r.explain.decide(OpCreate, "no account of uid %d is known (no SCIM id in the state file)", r.uid)
	}
	r.explain.nothingThere(user)
	if !r.prov.Allows(config.OpCreate) {
		res.Outcome, res.Detail = Skipped, "create is switched off in provisioning.operations"
		return res, nil
	}
	body := user.Resource()
	if r.dry {
		r.dryRun(OpCreate, http.MethodPost, "/Users", body)
		res.Outcome = Created
		return res, nil
	}
	if !r.markedFor(user) {
		// Durably: after a crash the agent must know a POST may have
		// gone out, and look before posting again.
		r.rec.Creating, r.rec.UserName, r.rec.ExternalID, r.rec.UUID = true, user.UserName(), user.ExternalID(), r.uuid
		if err := r.saveNow(); err != nil {
			return res, retry(OpCreate, err)
		}
	}
	created, cr, err := r.scim.client.CreateUser(ctx, body)
	if err == nil {
		r.rec.SCIMID, _ = created["id"].(string)
	}
	r.logCall(OpCreate, user.UserName(), http.MethodPost, "/Users", body, cr, err)
	if scimclient.IsStatus(err, http.StatusConflict) {
		found, f := r.lookup(ctx, OpCreate, user)
		if f != nil {
			return res, f
		}
		if found == nil {
			return res, classify(OpCreate, err) // a 409 for something we cannot find: park with the server's detail
		}
		return r.adopt(ctx, user, found)
	}
	if err != nil {
		return res, classify(OpCreate, err)
	}
	id := r.rec.SCIMID
	if id == "" {
		return res, refused(OpCreate, "the server's answer to POST /Users holds no id")
	}
	if changes := r.mapper.Compare(user, created); cr.Status == http.StatusOK || !changes.Empty() {
		return r.lenientCreate(ctx, user, created, cr, changes)
	}
	r.rec.Creating, r.rec.Pushed = false, nil
	r.saw(created, cr.Version)
	if err := r.holdsAll(user); err != nil {
		return res, retry(OpCreate, err)
	}
	res.Outcome, res.SCIMID = Created, id
	return res, nil
}

// markedFor reports whether the record the loader saved before this
// reconcile is the one create saves before its POST for user (see
// preload.marked).
func (r *userRun) markedFor(user mapping.User) bool {
	return r.marked && r.rec.Creating && r.rec.SCIMID == "" && r.rec.UserName == user.UserName() &&
		r.rec.ExternalID == user.ExternalID() && r.rec.UUID == r.uuid
}

// startsWithPOST returns the record create saves before its POST when
// the reconcile of a user whose record is rec (known: the store has one)
// and whose rows are acct (exists: it has them) begins with that POST:
// the user has its users_field_data row and a userName, is the person
// the record was made for, has no account on the server and no POST of
// unknown outcome, and creates are switched on. present takes the same
// steps in the same order; the loader saves these records for a whole
// batch in one commit.
func (u *users) startsWithPOST(rec state.Account, known bool, acct drupal.Account, exists bool) (state.Account, bool) {
	if !exists || acct.Values == nil || !u.prov.Allows(config.OpCreate) {
		return rec, false
	}
	if !known {
		rec = state.Account{UID: acct.UID}
	}
	if !u.scope.Evaluate(acct).In {
		return rec, false // never created (or released) while out of scope
	}
	user := u.mapper.Map(acct)
	if prev := u.previousUUID(rec); known && prev != "" && prev != acct.UUID {
		return rec, false
	}
	if user.UserName() == "" || rec.SCIMID != "" || rec.Creating {
		return rec, false
	}
	rec.Creating, rec.UserName, rec.ExternalID, rec.UUID = true, user.UserName(), user.ExternalID(), acct.UUID
	return rec, true
}

// lookup finds the server's account of user, for the operation op: by
// userName (as Entra does), then by externalId (our uuid). It returns nil
// when neither finds one.
func (r *userRun) lookup(ctx context.Context, op string, user mapping.User) (scimclient.Resource, *failure) {
	if !r.scim.caps.Filter {
		return r.scanUsers(ctx, op, user)
	}
	for _, by := range []struct{ attr, value string }{{"userName", user.UserName()}, {"externalId", user.ExternalID()}} {
		if by.value == "" {
			continue
		}
		filter := scimclient.FilterEq(by.attr, by.value)
		list, cr, err := r.scim.client.ListUsers(ctx, filter, 1, 2)
		r.logCall(OpLookup, user.UserName(), http.MethodGet, "/Users?filter="+filter, nil, cr, err)
		if err != nil {
			r.explain.lookedUp(filter, list, nil, cr, err)
			return nil, classify(op, err)
		}
		for _, res := range list.Resources {
			// A server that ignores or loosens the filter must not hand
			// us somebody else's account.
			if got, _ := res[by.attr].(string); matches(by.attr, got, by.value) {
				r.explain.lookedUp(filter, list, res, cr, nil)
				return res, nil
			}
		}
		r.explain.lookedUp(filter, list, nil, cr, nil)
	}
	return nil, nil
}

// scanUsers is lookup on a server that cannot filter: every account is
// read, and the one whose userName is the user's wins over one whose
// externalId is.
func (r *userRun) scanUsers(ctx context.Context, op string, user mapping.User) (scimclient.Resource, *failure) {
	list := func(ctx context.Context, start, count int) (scimclient.ListResponse, error) {
		page, cr, err := r.scim.client.ListUsers(ctx, "", start, count)
		r.logCall(OpLookup, user.UserName(), http.MethodGet, fmt.Sprintf("/Users?startIndex=%d&count=%d", start, count), nil, cr, err)
		return page, err
	}
	found, err := scan(ctx, list, func(res scimclient.Resource) int {
		name, _ := res["userName"].(string)
		ext, _ := res["externalId"].(string)
		switch {
		case user.UserName() != "" && matches("userName", name, user.UserName()):
			return 1
		case user.ExternalID() != "" && matches("externalId", ext, user.ExternalID()):
			return 2
		}
		return 0
	})
	if err != nil {
		return nil, classify(op, err)
	}
	return found, nil
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

// claim decides whether an account found on the server may become uid's.
// owner, when not 0, is another uid whose record holds the account: the
// caller decides. Otherwise a failure says why it may not be (it carries
// another identity's externalId, or has no id).
func (r *userRun) claim(userName, externalID string, found scimclient.Resource) (id string, owner uint32, f *failure) {
	id, _ = found["id"].(string)
	if id == "" {
		return "", 0, refused(OpCreate, "the server's matching account has no id")
	}
	other, _, err := r.store.UIDBySCIMID(id)
	if err != nil {
		return "", 0, retry(OpCreate, err)
	}
	if other != 0 && other != r.uid {
		r.explain.note("not taken: the state file holds it for uid %d", other)
		return id, other, nil
	}
	if ext, _ := found["externalId"].(string); ext != "" && externalID != "" && ext != externalID {
		r.explain.note("not taken: it carries externalId %s, not this user's %s", ext, externalID)
		return "", 0, refused(OpCreate, fmt.Sprintf("userName %q is taken on the server by account %s, which belongs to externalId %s",
			userName, id, ext))
	}
	if ext, _ := found["externalId"].(string); ext == "" {
		r.explain.note("taken: no other uid's record holds it and it carries no externalId of another identity")
	} else {
		r.explain.note("taken: it carries this user's externalId and no other uid's record holds it")
	}
	return id, 0, nil
}

// waitForOwner decides what a create does whose userName another uid's
// account holds: when that uid's deprovisioning or rename is pending (its
// Drupal user is gone, or no longer has this name), the create waits for
// it; when that failed, or the name is still rightly the other uid's, the
// create is parked naming it.
func (r *userRun) waitForOwner(ctx context.Context, user mapping.User, id string, owner uint32) (Result, *failure) {
	res := Result{UserName: user.UserName(), Op: OpCreate}
	taken := fmt.Sprintf("userName %q is taken on the server by account %s, which the agent provisions for uid %d", user.UserName(), id, owner)
	acct, exists, err := r.reader.Load(ctx, owner)
	if err != nil {
		return res, retry(OpCreate, err)
	}
	if exists && acct.Values != nil && strings.EqualFold(r.mapper.Map(acct).UserName(), user.UserName()) {
		return res, refused(OpCreate, taken)
	}
	rec, _, err := r.store.Account(owner)
	if err != nil {
		return res, retry(OpCreate, err)
	}
	if rec.Parked != nil {
		return res, refused(OpCreate, fmt.Sprintf("%s, whose %s failed: %s", taken, rec.Parked.Op, rec.Parked.Detail))
	}
	// The owner's reconcile releases the name; make sure it runs.
	r.requeue(owner, fmt.Sprintf("releases userName for uid %d", r.uid))
	res.Outcome = Waiting
	res.Detail = fmt.Sprintf("%s, whose deprovisioning or rename is pending: the create waits for it", taken)
	return res, nil
}

// adopt takes over an account found on the server and makes it match.
// An account that carries another identity's externalId is not ours to
// take.
func (r *userRun) adopt(ctx context.Context, user mapping.User, found scimclient.Resource) (Result, *failure) {
	res := Result{UserName: user.UserName()}
	id, owner, f := r.claim(user.UserName(), user.ExternalID(), found)
	if f != nil {
		return res, f
	}
	if owner != 0 {
		return r.waitForOwner(ctx, user, id, owner)
	}
	r.rec.SCIMID, r.rec.Creating, r.rec.Pushed = id, false, nil
	// A list's copy is not read as the account's whole copy (a server may
	// answer lists with fewer attributes): its first write reads it.
	r.forgetCopy()
	r.log.Info(MsgSCIMRequest, zap.String("op", OpCreate), zap.String("userName", user.UserName()), zap.String("scim_id", id),
		zap.String("detail", "adopted the server's existing account"))
	changes := r.mapper.Compare(user, found)
	r.explain.decide(actionAdopt, "the server already holds an account for userName %q (%s), found by a lookup: it is adopted and made to match", user.UserName(), id)
	r.explain.compared(user, found, changes)
	return r.takeOver(ctx, user, id, changes, Adopted)
}

// lenientCreate handles a POST whose answer is not the account sent: a
// 200 (a lenient server answered with the account that already holds the
// userName, as it is) or a 201 whose account differs in a mapped
// attribute. Recording it as pushed would leave the server wrong until a
// drift repair. The account is claimed as one found after a 409 is (an
// account of another identity, or of another uid, is not taken) and made
// to match with the write that follows.
func (r *userRun) lenientCreate(ctx context.Context, user mapping.User, created scimclient.Resource, cr scimclient.Result,
	changes mapping.Changes) (Result, *failure) {
	res := Result{UserName: user.UserName()}
	answered := r.rec.SCIMID
	r.rec.SCIMID = "" // not ours until claimed
	what := "a new account"
	if cr.Status == http.StatusOK {
		what = "an account that already held the userName"
	}
	detail := fmt.Sprintf("the server answered POST /Users with %d and %s", cr.Status, what)
	if !changes.Empty() {
		detail += " (it differs from what was sent in " + strings.Join(append(append([]string{}, changes.Set...), changes.Remove...), ", ") + ")"
	}
	detail += ": it is taken only if it is this user's, and made to match"
	r.log.Warn(MsgLenientCreate, zap.String("userName", user.UserName()), zap.String("scim_id", answered),
		zap.Int("status", cr.Status), zap.String("detail", detail))
	r.explain.decide(actionAdopt, "%s", detail)
	r.explain.compared(user, created, changes)
	id, owner, f := r.claim(user.UserName(), user.ExternalID(), created)
	if f != nil {
		return res, f
	}
	if owner != 0 {
		return r.waitForOwner(ctx, user, id, owner)
	}
	outcome := Created
	if cr.Status == http.StatusOK {
		outcome = Adopted
	}
	r.rec.SCIMID, r.rec.Creating, r.rec.Pushed = id, false, nil
	r.saw(created, cr.Version) // the POST's answer is the account's whole copy
	return r.takeOver(ctx, user, id, changes, outcome)
}

// takeOver records id as uid's account and sends the changes that make
// it match user, ending with outcome.
func (r *userRun) takeOver(ctx context.Context, user mapping.User, id string, changes mapping.Changes, outcome Outcome) (Result, *failure) {
	res := Result{UserName: user.UserName()}
	r.rec.SCIMID, r.rec.Creating, r.rec.Pushed = id, false, nil
	if name := op(user, changes); name == OpDeactivate && !r.allowDeprovision(name) {
		// Deactivating the adopted account counts towards the deletion
		// guard: send the rest, keep the account, hold the deactivation.
		return r.adoptHeld(ctx, user, id, changes.Without("active"))
	}
	if !changes.Empty() {
		if f := r.send(ctx, op(user, changes), user, changes); f != nil {
			if err := r.save(); err != nil {
				return res, retry(OpCreate, err)
			}
			f.op = OpCreate // the adoption failed: parked as a create
			return res, f
		}
	}
	if err := r.holdsAll(user); err != nil {
		return res, retry(OpCreate, err)
	}
	res.Outcome, res.SCIMID = outcome, id
	return res, nil
}

// adoptHeld records an adopted account whose deactivation the deletion
// guard holds: rest (the other changes) is sent, and every managed value
// but active counts as pushed, so the deactivation is what the reconcile
// after an approval sends.
func (r *userRun) adoptHeld(ctx context.Context, user mapping.User, id string, rest mapping.Changes) (Result, *failure) {
	res := Result{UserName: user.UserName(), SCIMID: id, Outcome: Held, Op: OpDeactivate}
	if !rest.Empty() {
		if f := r.send(ctx, OpUpdate, user, rest); f != nil {
			if err := r.save(); err != nil {
				return res, retry(OpCreate, err)
			}
			f.op = OpCreate
			return Result{UserName: user.UserName()}, f
		}
	}
	r.recordPush(user, mapping.Changes{Set: r.mapper.Paths()}.Without("active"))
	r.rec.Active = true
	if err := r.save(); err != nil {
		return res, retry(OpCreate, err)
	}
	return res, nil
}

// previousUUID returns the uuid of the person uid's account was made for,
// or "" when unknown. Records older than state.Account.UUID have it as
// their externalId when the mapping takes externalId from the uuid.
func (r *userRun) previousUUID() string { return r.users.previousUUID(r.rec) }

func (u *users) previousUUID(rec state.Account) string {
	if rec.UUID != "" {
		return rec.UUID
	}
	if u.mapper.FromUUID("externalId") {
		return rec.ExternalID
	}
	return ""
}

// replacePrevious handles a uid that came back as somebody else (another
// uuid than the one its account was made for): the previous person's
// account is deprovisioned as a deletion would be (the deletion guard
// counts it; with on_delete: deactivate it stays, inactive, and is no
// longer managed) and the newcomer gets an account of its own, when
// provisioning.scope takes it. A held deprovisioning holds the creation
// too.
func (r *userRun) replacePrevious(ctx context.Context, user mapping.User, prev string, inScope bool) (Result, *failure) {
	why := fmt.Sprintf("uid %d now belongs to uuid %s, not %s: the previous account is deprovisioned and a new one created", r.uid, r.uuid, prev)
	r.log.Info(MsgSCIMRequest, zap.String("op", OpDelete), zap.String("userName", r.rec.UserName), zap.String("scim_id", r.rec.SCIMID),
		zap.String("detail", why))
	r.explain.decide(r.prov.OnDelete, "%s", why)
	uuid := r.uuid
	r.uuid = "" // gone() deprovisions the previous person
	res, f := r.gone(ctx)
	r.uuid = uuid
	if f != nil || res.Outcome == Held {
		res.UserName = user.UserName()
		return res, f
	}
	if r.known {
		if err := r.forget(); err != nil {
			return res, retry(OpDelete, err)
		}
	}
	r.rec, r.known = state.Account{UID: r.uid}, false
	r.forgetCopy()
	if !inScope {
		// The newcomer is outside provisioning.scope: nothing to create.
		res.UserName = user.UserName()
		return res, nil
	}
	r.explain.decide(OpCreate, "%s", why)
	return r.create(ctx, user)
}
