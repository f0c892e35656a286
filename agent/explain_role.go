package agent

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/scimclient"
)

// RoleExplanation is one role's reconcile told step by step, for
// `scim-agent sync --role ID --explain`: the role read from Drupal and
// each holder's part in the group, whether groups.roles selects it, the
// group wanted, the state file's record, what the server holds, the
// difference in label and members, the decision and each request. Like
// Explanation it is recorded by the reconcile as it goes, and holds no
// secret (a group carries none; requests are recorded without headers).
type RoleExplanation struct {
	Role   string `json:"role"`
	DryRun bool   `json:"dry_run"`
	// Drupal is step 1: the role's config row and its holders.
	Drupal RoleDrupalStep `json:"drupal"`
	// Selected is step 2: whether groups.roles and groups.exclude_roles
	// provision the role.
	Selected bool `json:"selected"`
	// Desired is step 3: the group the role makes (displayName,
	// externalId, members); nil when the role is gone or not selected.
	Desired json.RawMessage `json:"desired,omitempty"`
	// Record is step 4: the state file's record as the reconcile found
	// it; nil when there was none.
	Record *state.Group `json:"record"`
	// Server is step 5: what was read of the server, in order.
	Server []ServerStep `json:"server"`
	// Difference is step 6 (nil when nothing was compared).
	Difference *GroupDiffStep `json:"difference,omitempty"`
	// Decision is step 7.
	Decision DecisionStep `json:"decision"`
	// Requests is step 8.
	Requests []RequestStep `json:"requests"`
}

// RoleDrupalStep is what the reconcile read of the Drupal role.
type RoleDrupalStep struct {
	// Read is false when the role was not read (not selected).
	Read bool `json:"read"`
	// Found is false when the role's config row does not exist.
	Found bool   `json:"found"`
	Label string `json:"label,omitempty"`
	// Error is why the row could not be read as a role.
	Error string `json:"error,omitempty"`
	// Holders are the users holding the role (user__roles), each with
	// whether it is a member of the group and why.
	Holders []HolderStep `json:"holders,omitempty"`
}

// HolderStep is one holder of the role.
type HolderStep struct {
	UID    uint32 `json:"uid"`
	Member bool   `json:"member"`
	// SCIMID is the holder's account on the server, when it is a member.
	SCIMID string `json:"scim_id,omitempty"`
	// Why says why the holder is not a member, or is not one yet.
	Why string `json:"why,omitempty"`
}

// GroupDiffStep is the comparison of the group wanted with the server's
// copy or what was pushed.
type GroupDiffStep struct {
	// Against is "server" (its copy, read by this reconcile), "pushed"
	// (the label and members the state file says were pushed) or "none"
	// (no group: all of it is sent).
	Against string `json:"against"`
	// Label is the displayName to set, when it differs ("" otherwise).
	Label string `json:"label,omitempty"`
	// Add and Remove are the member ids to add and to remove.
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

// The recording methods below do nothing on a nil *RoleExplanation: a
// reconcile nobody asked to explain pays nothing.

// record records step 4: the record as found (a copy).
func (e *RoleExplanation) record(rec state.Group, known bool) {
	if e == nil || !known {
		return
	}
	rec.Members = append([]string(nil), rec.Members...)
	if rec.Parked != nil {
		p := *rec.Parked
		rec.Parked = &p
	}
	e.Record = &rec
}

// selected records step 2.
func (e *RoleExplanation) selected(on bool) {
	if e != nil {
		e.Selected = on
	}
}

// drupal records step 1's role: found, its label, or why it is not one.
func (e *RoleExplanation) drupal(found bool, label string, err error) {
	if e == nil {
		return
	}
	e.Drupal.Read, e.Drupal.Found, e.Drupal.Label = true, found, label
	if err != nil {
		e.Drupal.Error = err.Error()
	}
}

// holder records one holder of the role (step 1).
func (e *RoleExplanation) holder(uid uint32, scimID, why string) {
	if e != nil {
		e.Drupal.Holders = append(e.Drupal.Holders, HolderStep{UID: uid, Member: why == "", SCIMID: scimID, Why: why})
	}
}

// sortHolders orders the holders by uid.
func (e *RoleExplanation) sortHolders() {
	if e != nil {
		slices.SortFunc(e.Drupal.Holders, func(a, b HolderStep) int { return cmp.Compare(a.UID, b.UID) })
	}
}

// desired records step 3.
func (e *RoleExplanation) desired(label, role string, members []string) {
	if e != nil {
		e.Desired = rawJSON(map[string]any{"displayName": label, "externalId": role, "members": memberList(members)})
	}
}

// got records a GET of the group (step 5).
func (e *RoleExplanation) got(id string, res scimclient.Resource, cr scimclient.Result, err error) {
	if e == nil {
		return
	}
	s := getStep("/Groups/"+id, "the group is gone from the server", res, cr, err)
	if _, told := serverMembers(res); err == nil && !told {
		s.Note = "the server shows no members (it keeps them to itself, or there are none): what was pushed counts"
	}
	e.Server = append(e.Server, s)
}

// lookedUp records a lookup of the group (step 5): by filter, or by
// reading every group (filter "").
func (e *RoleExplanation) lookedUp(filter string, match scimclient.Resource, cr scimclient.Result, err error) {
	if e == nil {
		return
	}
	s := ServerStep{Read: "lookup", Path: "/Groups", Filter: filter, Status: cr.Status}
	if filter == "" {
		s.Filter = "every group, page by page (the server cannot filter)"
	}
	switch {
	case err != nil:
		s.Note = "failed: " + err.Error()
	case match != nil:
		s.Resource = rawResource(match)
		s.Note = "found the group " + stringAttr(match, "id")
	default:
		s.Note = "no group matches"
	}
	e.Server = append(e.Server, s)
}

// diff records the difference (step 6).
func (e *RoleExplanation) diff(against, label string, add, remove []string) {
	if e != nil {
		e.Difference = &GroupDiffStep{Against: against, Label: label, Add: nonNil(add), Remove: nonNil(remove)}
	}
}

// decide records what the reconcile sets out to do, and why (step 7); a
// later decision replaces it.
func (e *RoleExplanation) decide(action, format string, args ...any) {
	if e != nil {
		e.Decision.Action, e.Decision.Why = action, fmt.Sprintf(format, args...)
	}
}

// request records one request (step 8).
func (e *RoleExplanation) request(op, method, path string, body any, cr scimclient.Result, err error) {
	if e != nil {
		e.Requests = append(e.Requests, sentStep(op, method, path, body, cr, err))
	}
}

// unsent records a write a dry run does not send (step 8).
func (e *RoleExplanation) unsent(op, method, path string, body any) {
	if e != nil {
		e.Requests = append(e.Requests, unsentStep(op, method, path, body))
	}
}

// finish completes the decision with how the reconcile ended.
func (e *RoleExplanation) finish(res Result, err error) {
	if e == nil {
		return
	}
	var parked *state.Parked
	if e.Record != nil {
		parked = e.Record.Parked
	}
	e.Decision.finish(res, err, parked)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
