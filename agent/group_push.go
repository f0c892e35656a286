package agent

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/scimclient"
)

// create POSTs the role's group with its first members (at most
// max_members_per_request), adopting the server's group on a 409 or when
// the answer is a group the server already had (lenientGroup), then adds
// the rest. Members the answer does not show are added again with
// the rest: a server that takes members only through PATCH drops them
// from a POST, and one that keeps members to itself cannot be told apart
// from it; adding a member a group holds changes nothing (RFC 7644
// §3.5.2.1), so the cost is one PATCH where the answer is silent.
func (r *groupRun) create(ctx context.Context, role drupal.Role, want []string) (Result, *failure) {
	res := Result{}
	if !r.prov.Allows(config.OpCreate) {
		res.Outcome, res.Detail = Skipped, "create is switched off in provisioning.operations"
		return res, nil
	}
	first := want[:min(len(want), r.cfg.MaxMembersPerRequest)]
	body := scimclient.Resource{"displayName": role.Label, "externalId": role.ID, "members": memberList(first)}
	if r.explainRole != nil && r.explainRole.Decision.Action != OpCreate {
		r.explainRole.decide(OpCreate, "no group of role %s is known (no SCIM id in the state file)", r.role)
	}
	r.explainRole.diff("none", role.Label, want, nil)
	if r.dry {
		r.dryRun(OpGroupCreate, http.MethodPost, "/Groups", body)
		res.Outcome = Created
		return res, nil
	}
	r.rec.Creating, r.rec.Kept = true, false
	if err := r.save(); err != nil {
		return res, retry(OpCreate, err)
	}
	created, cr, err := r.scim.client.CreateGroup(ctx, body)
	if err == nil {
		r.rec.SCIMID, _ = created["id"].(string)
	}
	r.logCall(OpGroupCreate, http.MethodPost, "/Groups", body, cr, err)
	if scimclient.IsStatus(err, http.StatusConflict) {
		found, f := r.lookup(ctx, role)
		if f != nil {
			return res, f
		}
		if found == nil {
			return res, classify(OpCreate, err)
		}
		return r.adopt(ctx, role, want, found)
	}
	if err != nil {
		return res, classify(OpCreate, err)
	}
	if r.rec.SCIMID == "" {
		return res, refused(OpCreate, "the server's answer to POST /Groups holds no id")
	}
	if what := lenientGroup(created, cr.Status, role); what != "" {
		// A lenient server's answer: the group that already held the
		// displayName, or another one. It is taken only as after a 409.
		detail := fmt.Sprintf("the server answered POST /Groups with %d and %s: it is taken only if it is this role's, and made to match", cr.Status, what)
		r.log.Warn(MsgLenientCreate, zap.String("scim_id", r.rec.SCIMID), zap.Int("status", cr.Status), zap.String("detail", detail))
		r.explainRole.decide(actionAdopt, "%s", detail)
		r.rec.SCIMID = "" // not ours until adopted
		return r.adopt(ctx, role, want, created)
	}
	shown, _ := serverMembers(created)
	r.rec.Creating, r.rec.DisplayName, r.rec.Members, r.rec.Version, r.rec.Parked = false, role.Label, shown, cr.Version, nil
	if err := r.save(); err != nil {
		return res, retry(OpCreate, err)
	}
	if _, f := r.push(ctx, role, want, shown); f != nil {
		return res, f
	}
	res.Outcome, res.SCIMID = Created, r.rec.SCIMID
	return res, nil
}

// lenientGroup says what a POST /Groups answered other than the new
// group sent ("" when it is that): a 200 (a lenient server's group that
// already held the displayName), or a group carrying another externalId
// or displayName than the role's.
func lenientGroup(created scimclient.Resource, status int, role drupal.Role) string {
	name, _ := created["displayName"].(string)
	ext, _ := created["externalId"].(string)
	switch {
	case status == http.StatusOK:
		return "the group that already held the displayName"
	case ext != "" && ext != role.ID:
		return fmt.Sprintf("a group of externalId %s", ext)
	case name != "" && !strings.EqualFold(name, role.Label):
		return fmt.Sprintf("a group named %q", name)
	}
	return ""
}

// lookup finds the server's group of role: by externalId (the machine
// name), then by displayName (the label). It returns nil when neither
// finds one.
func (r *groupRun) lookup(ctx context.Context, role drupal.Role) (scimclient.Resource, *failure) {
	if !r.scim.caps.Filter {
		return r.scanGroups(ctx, role)
	}
	for _, by := range []struct{ attr, value string }{{"externalId", role.ID}, {"displayName", role.Label}} {
		if by.value == "" {
			continue
		}
		filter := scimclient.FilterEq(by.attr, by.value)
		list, cr, err := r.scim.client.ListGroups(ctx, filter, 1, 2, true)
		r.logCall(OpLookup, http.MethodGet, "/Groups?filter="+filter, nil, cr, err)
		if err != nil {
			r.explainRole.lookedUp(filter, nil, cr, err)
			return nil, classify(OpCreate, err)
		}
		for _, g := range list.Resources {
			// externalId is case-exact; displayName compares as the
			// server does (caseExact false in RFC 7643 §4.2).
			if got, _ := g[by.attr].(string); got == by.value || by.attr == "displayName" && strings.EqualFold(got, by.value) {
				r.explainRole.lookedUp(filter, g, cr, nil)
				return g, nil
			}
		}
		r.explainRole.lookedUp(filter, nil, cr, nil)
	}
	return nil, nil
}

// scanGroups is lookup on a server that cannot filter: every group is
// read (without members), and one whose externalId is the role's wins
// over one whose displayName is its label.
func (r *groupRun) scanGroups(ctx context.Context, role drupal.Role) (scimclient.Resource, *failure) {
	list := func(ctx context.Context, start, count int) (scimclient.ListResponse, error) {
		page, cr, err := r.scim.client.ListGroups(ctx, "", start, count, false)
		r.logCall(OpLookup, http.MethodGet, fmt.Sprintf("/Groups?startIndex=%d&count=%d", start, count), nil, cr, err)
		return page, err
	}
	found, err := scan(ctx, list, func(g scimclient.Resource) int {
		ext, _ := g["externalId"].(string)
		name, _ := g["displayName"].(string)
		switch {
		case ext == role.ID:
			return 1
		case role.Label != "" && strings.EqualFold(name, role.Label):
			return 2
		}
		return 0
	})
	r.explainRole.lookedUp("", found, scimclient.Result{}, err)
	if err != nil {
		return nil, classify(OpCreate, err)
	}
	if found == nil {
		return nil, nil
	}
	// The page left members out; adopt wants the server's own.
	id, _ := found["id"].(string)
	if id == "" {
		return found, nil
	}
	full, cr, err := r.scim.client.GetGroup(ctx, id)
	r.logCall(OpLookup, http.MethodGet, "/Groups/"+id, nil, cr, err)
	r.explainRole.got(id, full, cr, err)
	if err != nil {
		return nil, classify(OpCreate, err)
	}
	return full, nil
}

// adopt takes over a group found on the server and makes it match. A
// group another role holds, or one carrying another externalId, is not
// ours to take.
func (r *groupRun) adopt(ctx context.Context, role drupal.Role, want []string, found scimclient.Resource) (Result, *failure) {
	id, _ := found["id"].(string)
	if id == "" {
		return Result{}, refused(OpCreate, "the server's matching group has no id")
	}
	if other, ok, err := r.store.RoleBySCIMID(id); err != nil {
		return Result{}, retry(OpCreate, err)
	} else if ok && other != r.role {
		return Result{}, refused(OpCreate, fmt.Sprintf("displayName %q is taken on the server by group %s, which the agent provisions for role %s", role.Label, id, other))
	}
	if ext, _ := found["externalId"].(string); ext != "" && ext != role.ID {
		return Result{}, refused(OpCreate, fmt.Sprintf("displayName %q is taken on the server by group %s, which belongs to externalId %s", role.Label, id, ext))
	}
	r.log.Info(MsgSCIMRequest, zap.String("op", OpGroupCreate), zap.String("scim_id", id), zap.String("detail", "adopted the server's existing group"))
	if r.explainRole != nil && r.explainRole.Decision.Action != actionAdopt { // a lenient POST's answer said why already
		r.explainRole.decide(actionAdopt, "the server already holds group %s for the role (found by a lookup): it is adopted and made to match", id)
	}
	// The server's own members, when it returns them; else nothing known
	// (every member wanted is added; members added by others stay).
	have, _ := serverMembers(found)
	r.against = "server"
	if r.explainRole != nil {
		r.explainRole.Difference = nil // compared with the group found, not with nothing
	}
	label, _ := found["displayName"].(string)
	r.rec.SCIMID, r.rec.Creating, r.rec.Kept, r.rec.DisplayName, r.rec.Members = id, false, false, label, have
	r.rec.Version = found.Version()
	if ext, _ := found["externalId"].(string); ext == "" {
		r.claimExternalID = true // mark the group the role's
	}
	if !r.dry {
		if err := r.save(); err != nil {
			return Result{}, retry(OpCreate, err)
		}
	}
	if _, f := r.push(ctx, role, want, have); f != nil {
		return Result{}, f
	}
	return Result{Outcome: Adopted, SCIMID: id}, nil
}

// update makes an existing group match: its label and its members, each
// compared with what was pushed or, when verifying, with the server's
// copy (a GET; a group deleted on the server is created again).
func (r *groupRun) update(ctx context.Context, role drupal.Role, want []string, verify bool) (Result, *failure) {
	have := r.rec.Members
	if verify {
		current, cr, err := r.scim.client.GetGroup(ctx, r.rec.SCIMID)
		r.logCall(OpLookup, http.MethodGet, "/Groups/"+r.rec.SCIMID, nil, cr, err)
		r.explainRole.got(r.rec.SCIMID, current, cr, err)
		if scimclient.IsNotFound(err) {
			r.explainRole.decide(OpCreate, "the group %s is gone from the server: it is created again", r.rec.SCIMID)
			r.log.Warn(MsgSCIMRequest, zap.String("op", OpGroupCreate), zap.String("scim_id", r.rec.SCIMID),
				zap.String("detail", "the group is gone from the server; creating it again"))
			r.rec.SCIMID, r.rec.Members, r.rec.DisplayName = "", nil, ""
			return r.create(ctx, role, want)
		}
		if err != nil {
			return Result{}, classify(OpUpdate, err)
		}
		r.rec.DisplayName, _ = current["displayName"].(string)
		r.rec.Version = cr.Version
		if members, told := serverMembers(current); told {
			have = members
			r.against = "server"
		}
	}
	if r.rec.Kept {
		r.rec.Kept = false // the role is back
	}
	return r.push(ctx, role, want, have)
}

// push sends the requests that take the group from have (its members
// now) and its recorded label to want and role's label: PATCHes of at
// most max_members_per_request member changes each, add of members and
// remove with members[value eq "<id>"] paths, the label replaced in the
// first; a PUT of the whole group where the server has no PATCH. The
// record follows each request, so a crash in between loses nothing.
func (r *groupRun) push(ctx context.Context, role drupal.Role, want, have []string) (Result, *failure) {
	add, remove := diffMembers(want, have)
	remove, f := r.stillMembers(ctx, remove)
	if f != nil {
		return Result{}, f
	}
	relabel := role.Label != "" && role.Label != r.rec.DisplayName
	r.explainPush(role, relabel, add, remove)
	if !relabel && !r.claimExternalID && len(add) == 0 && len(remove) == 0 {
		r.rec.Members = want
		return Result{Outcome: Unchanged}, r.saveIfChanged(have, want)
	}
	if !r.prov.Allows(config.OpUpdate) {
		return Result{Outcome: Skipped, Detail: "update is switched off in provisioning.operations"}, nil
	}
	if !r.scim.usePatch() {
		return r.replace(ctx, role, want)
	}
	members := slices.Clone(have)
	reqs := memberRequests(add, remove, relabel || r.claimExternalID, r.cfg.MaxMembersPerRequest)
	for i, req := range reqs {
		ops := req.ops(role.Label)
		if i == 0 && r.claimExternalID {
			ops = append(ops, scimclient.PatchOp{Op: "replace", Path: "externalId", Value: role.ID})
		}
		path := "/Groups/" + r.rec.SCIMID
		if r.dry {
			r.dryRun(req.op(), http.MethodPatch, path, map[string]any{"schemas": []string{scimclient.PatchOpSchema}, "Operations": ops})
			continue
		}
		_, cr, err := r.scim.client.PatchGroup(ctx, r.rec.SCIMID, ops, scimclient.IfMatch(r.version()))
		r.logCall(req.op(), http.MethodPatch, path, map[string]any{"schemas": []string{scimclient.PatchOpSchema}, "Operations": ops}, cr, err)
		if scimclient.IsStatus(err, http.StatusMethodNotAllowed) {
			r.scim.noPatch()
			r.rec.Members = members
			return r.replace(ctx, role, want)
		}
		if err != nil {
			return Result{}, classify(OpUpdate, err)
		}
		members = req.apply(members)
		r.rec.Members, r.rec.Version = members, cr.Version
		if req.relabel {
			r.rec.DisplayName = role.Label
		}
		r.claimExternalID = false
		if err := r.save(); err != nil {
			return Result{}, retry(OpUpdate, err)
		}
	}
	return Result{Outcome: Updated}, nil
}

// explainPush records the difference push acts on and, unless an
// earlier step decided (create, adopt, keep), the decision.
func (r *groupRun) explainPush(role drupal.Role, relabel bool, add, remove []string) {
	e := r.explainRole
	if e == nil {
		return
	}
	label := ""
	if relabel {
		label = role.Label
	}
	if e.Difference == nil {
		e.diff(cmp.Or(r.against, "pushed"), label, add, remove)
	}
	if e.Decision.Action != "" {
		return
	}
	switch {
	case !relabel && !r.claimExternalID && len(add) == 0 && len(remove) == 0:
		e.decide(actionNothing, "the group's label and members match the role's")
	default:
		var what []string
		if relabel {
			what = append(what, fmt.Sprintf("the label becomes %q", role.Label))
		}
		if r.claimExternalID {
			what = append(what, "externalId becomes "+role.ID)
		}
		if len(add) > 0 {
			what = append(what, fmt.Sprintf("%d member(s) to add", len(add)))
		}
		if len(remove) > 0 {
			what = append(what, fmt.Sprintf("%d member(s) to remove", len(remove)))
		}
		e.decide(OpUpdate, "%s", strings.Join(what, ", "))
	}
}

// replace PUTs the whole group: its label and every member wanted.
func (r *groupRun) replace(ctx context.Context, role drupal.Role, want []string) (Result, *failure) {
	body := scimclient.Resource{"displayName": role.Label, "externalId": role.ID, "members": memberList(want)}
	path := "/Groups/" + r.rec.SCIMID
	if r.dry {
		r.dryRun(OpGroupUpdate, http.MethodPut, path, body)
		return Result{Outcome: Updated}, nil
	}
	_, cr, err := r.scim.client.ReplaceGroup(ctx, r.rec.SCIMID, body, scimclient.IfMatch(r.version()))
	r.logCall(OpGroupUpdate, http.MethodPut, path, body, cr, err)
	if err != nil {
		return Result{}, classify(OpUpdate, err)
	}
	r.rec.Members, r.rec.DisplayName, r.rec.Version = want, role.Label, cr.Version
	if err := r.save(); err != nil {
		return Result{}, retry(OpUpdate, err)
	}
	return Result{Outcome: Updated}, nil
}

// saveIfChanged saves the record when the members known changed without
// a request (a member gone from the server on its own).
func (r *groupRun) saveIfChanged(have, want []string) *failure {
	if slices.Equal(have, want) && !r.verify {
		return nil
	}
	if err := r.save(); err != nil {
		return retry(OpUpdate, err)
	}
	return nil
}

// stillMembers keeps, of the members to remove, those the server may
// still hold. A member whose user the agent no longer manages was
// deleted, and most servers drop a deleted user from its groups
// themselves: where the server returns members, it is asked, and only
// those it still holds are removed; where it does not, the removes are
// sent.
func (r *groupRun) stillMembers(ctx context.Context, remove []string) ([]string, *failure) {
	var deleted []string
	for _, id := range remove {
		if _, ok, err := r.store.UIDBySCIMID(id); err != nil {
			return nil, retry(OpUpdate, err)
		} else if !ok {
			deleted = append(deleted, id)
		}
	}
	if len(deleted) == 0 || r.rec.SCIMID == "" {
		return remove, nil
	}
	current, cr, err := r.scim.client.GetGroup(ctx, r.rec.SCIMID)
	r.logCall(OpLookup, http.MethodGet, "/Groups/"+r.rec.SCIMID, nil, cr, err)
	r.explainRole.got(r.rec.SCIMID, current, cr, err)
	if err != nil {
		return nil, classify(OpUpdate, err)
	}
	held, told := serverMembers(current)
	if !told {
		return remove, nil
	}
	return slices.DeleteFunc(remove, func(id string) bool {
		return slices.Contains(deleted, id) && !slices.Contains(held, id)
	}), nil
}

// serverMembers returns a group resource's member values, sorted; told
// is false when the resource carries no members attribute (the server
// keeps them to itself, or the group is empty).
func serverMembers(res scimclient.Resource) (ids []string, told bool) {
	var raw any
	for k, v := range res {
		if strings.EqualFold(k, "members") {
			raw, told = v, true
		}
	}
	list, _ := raw.([]any)
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm["value"].(string); ok {
				ids = append(ids, v)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), told
}

// diffMembers returns the members to add and to remove, sorted.
func diffMembers(want, have []string) (add, remove []string) {
	for _, id := range want {
		if !slices.Contains(have, id) {
			add = append(add, id)
		}
	}
	for _, id := range have {
		if !slices.Contains(want, id) {
			remove = append(remove, id)
		}
	}
	return add, remove
}

// memberList is the members attribute of a group body.
func memberList(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = map[string]any{"value": id}
	}
	return out
}

// memberRequest is one PATCH of a group: some members added, some
// removed, and the label replaced in the first.
type memberRequest struct {
	add, remove []string
	relabel     bool
}

// memberRequests splits the changes into PATCHes of at most max member
// changes each; the label goes with the first.
func memberRequests(add, remove []string, relabel bool, max int) []memberRequest {
	var reqs []memberRequest
	for len(add) > 0 || len(remove) > 0 || relabel {
		req := memberRequest{relabel: relabel}
		n := min(len(add), max)
		req.add, add = add[:n], add[n:]
		m := min(len(remove), max-n)
		req.remove, remove = remove[:m], remove[m:]
		reqs = append(reqs, req)
		relabel = false
	}
	return reqs
}

// ops are the request's PATCH operations.
func (q memberRequest) ops(label string) []scimclient.PatchOp {
	var ops []scimclient.PatchOp
	if q.relabel && label != "" {
		ops = append(ops, scimclient.PatchOp{Op: "replace", Path: "displayName", Value: label})
	}
	if len(q.add) > 0 {
		ops = append(ops, scimclient.PatchOp{Op: "add", Path: "members", Value: memberList(q.add)})
	}
	for _, id := range q.remove {
		ops = append(ops, scimclient.PatchOp{Op: "remove", Path: "members[value eq " + scimclient.Quote(id) + "]"})
	}
	return ops
}

// op names the request in its log line.
func (q memberRequest) op() string {
	switch {
	case q.relabel:
		return OpGroupUpdate
	case len(q.remove) == 0:
		return OpMembersAdd
	case len(q.add) == 0:
		return OpMembersRemove
	}
	return OpGroupUpdate
}

// apply returns members after the request, sorted.
func (q memberRequest) apply(members []string) []string {
	out := slices.DeleteFunc(slices.Clone(members), func(id string) bool { return slices.Contains(q.remove, id) })
	out = append(out, q.add...)
	slices.Sort(out)
	return slices.Compact(out)
}
