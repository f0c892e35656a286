package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// maxPreconditionTries bounds the writes of one reconcile that a server
// with ETags refuses with 412 (the account changed since it was read):
// each is followed by a read and the write again; after the last the
// reconcile is retried with backoff, like an outage.
const maxPreconditionTries = 3

// send applies changes to the server's copy: a PATCH where the server has
// PATCH, else a PUT of the server's copy with the changes applied (so
// attributes the agent does not manage survive). With ETags every write
// carries If-Match; a 412 reads the account again, recomputes which of
// the changes are still needed, and writes again.
func (r *userRun) send(ctx context.Context, name string, user mapping.User, changes mapping.Changes) *failure {
	wanted := changes
	for try := 1; ; try++ {
		f := r.write(ctx, name, user, changes)
		if f == nil || !scimclient.IsPreconditionFailed(f.err) {
			return f
		}
		if try == maxPreconditionTries {
			return retry(name, fmt.Errorf("the account changed on the server between each read and write (%d tries; if nothing else "+
				"writes it, the server's ETags may be broken: scim.capabilities.etag: false): %w", try, f.err))
		}
		current, f := r.read(ctx, name, user.UserName())
		if f != nil {
			return f
		}
		// Only the changes asked for, and only those still needed: an
		// edit made meanwhile to another attribute stays, and a
		// deactivation never slips in unasked (the deletion guard).
		changes = still(r.mapper.Compare(user, current), wanted)
		if changes.Empty() {
			return nil
		}
	}
}

// still returns the changes of c that are among wanted.
func still(c, wanted mapping.Changes) mapping.Changes {
	var out mapping.Changes
	for _, p := range c.Set {
		if wanted.Has(p) {
			out.Set = append(out.Set, p)
		}
	}
	for _, p := range c.Remove {
		if wanted.Has(p) {
			out.Remove = append(out.Remove, p)
		}
	}
	return out
}

// write makes one attempt at sending changes: a PATCH, or a PUT on a
// server without PATCH (or after a 405).
func (r *userRun) write(ctx context.Context, name string, user mapping.User, changes mapping.Changes) *failure {
	if r.scim.usePatch() {
		f, noPatch := r.patch(ctx, name, user, changes)
		if !noPatch {
			return f
		}
		r.scim.noPatch()
		r.log.Warn(MsgSCIMRequest, zap.String("op", name), zap.String("userName", user.UserName()), zap.String("scim_id", r.rec.SCIMID),
			zap.String("detail", "the server has no PATCH (405): using PUT from now on"))
	}
	return r.put(ctx, name, user, changes)
}

// patch sends changes as one PATCH; noPatch reports a 405. A typed list
// (emails) is written whole, so its operations must carry the server's
// values of other types (a home address); in order of preference:
//
//   - built from the server's copy when this reconcile read it;
//   - with ETags, the agent's values alone when the account's typed lists
//     held nothing else at the version the PATCH is conditional on: one
//     request, exact (type and primary too), and a 412 says when it
//     changed;
//   - a value-filtered path naming the agent's value alone
//     (`emails[type eq "work"].value`), which keeps the others without
//     reading them: one request where the server takes such paths (a
//     refusal costs a GET and the whole list, and is learnt);
//   - else after a GET.
func (r *userRun) patch(ctx context.Context, name string, user mapping.User, changes mapping.Changes) (f *failure, noPatch bool) {
	id, path := r.rec.SCIMID, "/Users/"+r.rec.SCIMID
	current := r.current
	var ops []scimclient.PatchOp
	filtered := false
	switch {
	case current != nil || !r.mapper.MergesTyped(changes) || r.ownValuesKnown():
		ops = r.patchOps(user, changes, current)
	case r.filterable(user, changes):
		ops, filtered = r.filteredOps(user, changes), true
	default:
		if current, f = r.read(ctx, name, user.UserName()); f != nil {
			return f, false
		}
		ops = r.patchOps(user, changes, current)
	}
	if r.dry {
		r.dryRun(name, http.MethodPatch, path, map[string]any{"schemas": []string{scimclient.PatchOpSchema}, "Operations": ops})
		return nil, false
	}
	version := r.ifMatch()
	res, cr, err := r.scim.client.PatchUser(ctx, id, ops, scimclient.IfMatch(version))
	r.logCall(name, user.UserName(), http.MethodPatch, path, map[string]any{"schemas": []string{scimclient.PatchOpSchema}, "Operations": ops}, cr, err)
	switch {
	case filtered && scimclient.IsStatus(err, http.StatusBadRequest):
		t := scimclient.ScimType(err)
		return r.unfiltered(ctx, name, user, changes, strings.TrimSpace("400 "+t), strings.EqualFold(t, "noTarget"))
	case scimclient.IsStatus(err, http.StatusMethodNotAllowed):
		return nil, true
	case err != nil:
		return classify(name, err), false
	}
	r.wrote(res, cr.Version, version != "")
	if filtered && res != nil && !still(r.mapper.Compare(user, res), typedOnly(r.mapper, changes)).Empty() {
		// Taken, but not applied: the answer still holds the old value.
		return r.unfiltered(ctx, name, user, changes, "taken but not applied", false)
	}
	if filtered {
		r.scim.valueFilterTaken()
	}
	return nil, false
}

// filterable reports whether changes can go as a PATCH whose typed-list
// operations name only the agent's value with a value filter: the server
// is not known to refuse such paths, and each typed list set had the
// agent's value pushed before (so the server holds one of its type to
// replace).
func (r *userRun) filterable(user mapping.User, changes mapping.Changes) bool {
	if r.noFilter || !r.scim.valueFilters() {
		return false
	}
	for _, p := range changes.Set {
		if !r.typed(p) {
			continue
		}
		if _, ok := ownValue(user, p); !ok {
			return false
		}
		if _, pushed := r.rec.Pushed[p]; !pushed {
			return false
		}
	}
	return true
}

// filteredOps are the operations of changes with each typed list's
// value named by a value filter (`emails[type eq "work"].value`, removed
// as `emails[type eq "work"]`), so that the server keeps its values of
// other types.
func (r *userRun) filteredOps(user mapping.User, changes mapping.Changes) []scimclient.PatchOp {
	ops := make([]scimclient.PatchOp, 0, len(changes.Set)+len(changes.Remove))
	for _, p := range changes.Set {
		if v, ok := ownValue(user, p); ok && r.typed(p) {
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: ownSelector(p) + ".value", Value: v})
			continue
		}
		ops = append(ops, scimclient.PatchOp{Op: "replace", Path: p, Value: mapping.ValueFor(nil, user, p)})
	}
	for _, p := range changes.Remove {
		if r.typed(p) {
			p = ownSelector(p)
		}
		ops = append(ops, scimclient.PatchOp{Op: "remove", Path: p})
	}
	return ops
}

// ownSelector is the value filter selecting the agent's values in the
// typed list at path: `emails[type eq "work"]`.
func ownSelector(path string) string {
	return path + "[" + scimclient.FilterEq("type", mapping.ManagedType) + "]"
}

// ownValue returns the agent's one value of the typed list at path.
func ownValue(user mapping.User, path string) (string, bool) {
	list, _ := user.Values[path].([]map[string]any)
	if len(list) != 1 {
		return "", false
	}
	v, ok := list[0]["value"].(string)
	return v, ok && v != ""
}

// typed reports whether path is a typed list the mapping manages.
func (r *userRun) typed(path string) bool {
	return r.mapper.MergesTyped(mapping.Changes{Set: []string{path}})
}

// typedOnly returns the typed lists set by changes.
func typedOnly(m *mapping.Mapper, changes mapping.Changes) mapping.Changes {
	var out mapping.Changes
	for _, p := range changes.Set {
		if m.MergesTyped(mapping.Changes{Set: []string{p}}) {
			out.Set = append(out.Set, p)
		}
	}
	return out
}

// unfiltered sends again, read first and written whole, a change whose
// value-filtered PATCH the server refused with a 400 (or took without
// applying it), as why says. Once that is taken, the server is known to
// refuse value filters, and every change of a typed list reads first
// from then on; a noTarget, though, says the account holds no value of
// the agent's type, more about the account than the server, and only a
// run of them teaches it.
func (r *userRun) unfiltered(ctx context.Context, name string, user mapping.User, changes mapping.Changes, why string, noTarget bool) (*failure, bool) {
	r.noFilter = true
	f, noPatch := r.patch(ctx, name, user, changes)
	if f == nil && !noPatch && r.scim.valueFilterRefused(noTarget) {
		r.log.Warn(MsgSCIMRequest, zap.String("op", name), zap.String("userName", user.UserName()), zap.String("scim_id", r.rec.SCIMID),
			zap.String("detail", "the server does not take value filters in PATCH paths ("+why+"): a change of emails reads the account first from now on"))
	}
	return f, noPatch
}

// put sends changes as a PUT of the server's copy (read first unless this
// reconcile already holds it) with the changes applied.
func (r *userRun) put(ctx context.Context, name string, user mapping.User, changes mapping.Changes) *failure {
	id, path := r.rec.SCIMID, "/Users/"+r.rec.SCIMID
	current := r.current
	if current == nil {
		var f *failure
		if current, f = r.read(ctx, name, user.UserName()); f != nil {
			return f
		}
	}
	r.current = nil // changed below: no longer the server's copy
	r.mapper.Apply(current, user, changes)
	if r.dry {
		r.dryRun(name, http.MethodPut, path, current)
		return nil
	}
	version := r.ifMatch()
	res, cr, err := r.scim.client.ReplaceUser(ctx, id, current, scimclient.IfMatch(version))
	r.logCall(name, user.UserName(), http.MethodPut, path, current, cr, err)
	if err != nil {
		return classify(name, err)
	}
	r.wrote(res, cr.Version, version != "")
	return nil
}

// patchOps are the operations that make the server's copy equal user on
// the changed paths; current, when known, is the server's copy, whose
// values of other types a typed list keeps.
func (r *userRun) patchOps(user mapping.User, c mapping.Changes, current scimclient.Resource) []scimclient.PatchOp {
	ops := make([]scimclient.PatchOp, 0, len(c.Set)+len(c.Remove))
	for _, p := range c.Set {
		ops = append(ops, scimclient.PatchOp{Op: "replace", Path: p, Value: mapping.ValueFor(current, user, p)})
	}
	for _, p := range c.Remove {
		if rest := r.mapper.Remaining(current, p); rest != nil {
			// The agent's value goes, the others stay.
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: p, Value: rest})
			continue
		}
		ops = append(ops, scimclient.PatchOp{Op: "remove", Path: p})
	}
	return ops
}

// read GETs the server's copy of the account, for op, and notes it.
func (r *userRun) read(ctx context.Context, op, userName string) (scimclient.Resource, *failure) {
	current, cr, err := r.scim.client.GetUser(ctx, r.rec.SCIMID)
	r.logCall(OpLookup, userName, http.MethodGet, "/Users/"+r.rec.SCIMID, nil, cr, err)
	r.explain.got(r.rec.SCIMID, current, cr, err)
	if err != nil {
		return nil, classify(op, err)
	}
	r.saw(current, cr.Version)
	return current, nil
}

// saw notes the server's copy of the account as an answer about it (a
// GET, or a write's answer) showed it, at version (its ETag, else its
// meta.version): the copy for the rest of this reconcile, the version
// for the next write's If-Match.
func (r *userRun) saw(res scimclient.Resource, version string) {
	r.current = res
	if !r.scim.caps.ETag {
		return
	}
	if version == "" {
		version = res.Version()
	}
	r.rec.Version, r.rec.OwnValuesOnly = version, version != "" && r.ownValuesOnly(res)
}

// wrote notes the answer to a write: the server's copy when it sent one,
// else the new version alone. A typed list then holds only the agent's
// values when it did at the version the write was conditional on (the
// write kept what it found, and the agent writes no value of another
// type).
func (r *userRun) wrote(res scimclient.Resource, version string, conditional bool) {
	if res != nil {
		r.saw(res, version)
		return
	}
	r.current = nil
	if !r.scim.caps.ETag {
		return
	}
	r.rec.OwnValuesOnly = conditional && version != "" && r.rec.OwnValuesOnly
	r.rec.Version = version
}

// forgetCopy drops what is known of the server's copy: the account is
// another one from now on.
func (r *userRun) forgetCopy() {
	r.current, r.rec.Version, r.rec.OwnValuesOnly = nil, "", false
}

// ifMatch is the version a write is conditional on: the one last seen,
// with ETags; "" (unconditional) otherwise.
func (r *userRun) ifMatch() string {
	if !r.scim.caps.ETag {
		return ""
	}
	return r.rec.Version
}

// ownValuesKnown reports whether, at the version the next write is
// conditional on, the account's typed lists held only the agent's
// values: a whole list written then keeps nothing it should.
func (r *userRun) ownValuesKnown() bool {
	return r.ifMatch() != "" && r.rec.OwnValuesOnly
}

// ownValuesOnly reports whether res holds, in each typed list the
// mapping manages, no value of another type.
func (r *userRun) ownValuesOnly(res scimclient.Resource) bool {
	for _, p := range r.mapper.Paths() {
		if r.mapper.Remaining(res, p) != nil {
			return false
		}
	}
	return true
}
