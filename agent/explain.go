package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// Explanation is one user's reconcile told step by step, for `scim-agent
// sync --explain`: the Drupal rows read, whether provisioning.scope takes
// the user, the SCIM resource wanted, the state file's record, what the
// server holds, the difference, the decision and each request. The
// reconcile records it as it goes (the one path every reconcile takes:
// work queue, Agent.reconcile, users.reconcile), so it tells what was
// done, never a second guess at it.
//
// It holds no secret: the Drupal read selects no pass, requests are
// recorded without their headers, and a password a server might return
// is dropped from the resources recorded.
type Explanation struct {
	UID    uint32 `json:"uid"`
	DryRun bool   `json:"dry_run"`
	// Drupal is step 1: the rows read.
	Drupal DrupalStep `json:"drupal"`
	// Scope is step 2: whether provisioning.scope takes the user, and
	// which clause and condition decided (nil when not reached).
	Scope *mapping.Decision `json:"scope,omitempty"`
	// Desired is step 3: the SCIM resource the mapping makes of the rows.
	Desired json.RawMessage `json:"desired,omitempty"`
	// Record is step 4: the state file's record as the reconcile found
	// it; nil when there was none.
	Record *state.Account `json:"record"`
	// Server is step 5: what was read of the server, in order: the
	// account's copy (GET) or the lookups made to find it.
	Server []ServerStep `json:"server"`
	// Difference is step 6: what differs, attribute by attribute (nil
	// when nothing was compared).
	Difference *DiffStep `json:"difference,omitempty"`
	// Decision is step 7: what the reconcile set out to do and why, and
	// how it ended.
	Decision DecisionStep `json:"decision"`
	// Requests is step 8: each request sent, or that a dry run would
	// send, in order.
	Requests []RequestStep `json:"requests"`
}

// DrupalStep is what the reconcile read of the Drupal user.
type DrupalStep struct {
	// Found is false when the users row does not exist ("no such user").
	Found bool `json:"found"`
	// Rows are the values read, table by table: only the columns and
	// fields the mapping and the scope read.
	Rows []drupal.TableValues `json:"rows,omitempty"`
	// Skipped says why nothing was read (an excluded uid).
	Skipped string `json:"skipped,omitempty"`
}

// ServerStep is one look at the server.
type ServerStep struct {
	// Read is "get" (the account's copy by id) or "lookup" (a filtered
	// list, to find an account by userName or externalId).
	Read string `json:"read"`
	Path string `json:"path"`
	// Filter is a lookup's filter.
	Filter string `json:"filter,omitempty"`
	Status int    `json:"status,omitempty"`
	// Matches counts the accounts a lookup found.
	Matches *int `json:"matches,omitempty"`
	// Resource is the account's copy (a GET), or the one a lookup
	// matched.
	Resource json.RawMessage `json:"resource,omitempty"`
	// Note says what came of it: gone, adopted and why, or why not.
	Note string `json:"note,omitempty"`
}

// DiffStep is a comparison of the wanted resource with what the server
// holds.
type DiffStep struct {
	// Against is "server" (its copy, read by this reconcile), "pushed"
	// (the fingerprints of what the agent last pushed) or "none" (no
	// account: all of it is sent).
	Against string       `json:"against"`
	Changes []AttrChange `json:"changes"`
}

// AttrChange is one attribute that must change.
type AttrChange struct {
	Path string `json:"path"`
	// Change is "set" or "remove".
	Change string `json:"change"`
	// Server is the server's value (Against "server").
	Server json.RawMessage `json:"server,omitempty"`
	// Pushed is the fingerprint last pushed, or "never pushed" (Against
	// "pushed").
	Pushed string `json:"pushed,omitempty"`
	// Wanted is the value the mapping makes (none for a removal).
	Wanted json.RawMessage `json:"wanted,omitempty"`
}

// DecisionStep is what the reconcile decided and how it ended.
type DecisionStep struct {
	// Action is create, adopt, update, deactivate, reactivate, delete,
	// release (stop managing) or nothing.
	Action string `json:"action"`
	Why    string `json:"why"`
	// Outcome and Detail are the reconcile's result.
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail,omitempty"`
}

// RequestStep is one SCIM request.
type RequestStep struct {
	Op     string          `json:"op"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
	// Sent is false for a write a dry run did not send.
	Sent     bool `json:"sent"`
	Status   int  `json:"status,omitempty"`
	Attempts int  `json:"attempts,omitempty"`
	// Error is the server's refusal (its status and detail) or the
	// transport's error.
	Error string `json:"error,omitempty"`
}

// Actions of a DecisionStep besides the operations.
const (
	actionAdopt   = "adopt"
	actionRelease = "release"
	actionNothing = "nothing"
	actionKeep    = "keep" // a deleted role's group, emptied (groups.on_role_delete: keep)
)

// The recording methods below do nothing on a nil *Explanation: a
// reconcile nobody asked to explain pays nothing.

// excluded records a uid never provisioned: nothing is read.
func (e *Explanation) excluded(uid uint32) {
	if e == nil {
		return
	}
	e.Drupal.Skipped = "not read"
	e.decide(actionNothing, "uid %d is excluded (provisioning.exclude_uids; uid 0 always is)", uid)
}

// drupal records step 1.
func (e *Explanation) drupal(r *drupal.Reader, a drupal.Account, found bool) {
	if e == nil {
		return
	}
	e.Drupal = DrupalStep{Found: found}
	if found {
		e.Drupal.Rows = r.Describe(a)
	}
}

// scope records step 2.
func (e *Explanation) scope(d mapping.Decision) {
	if e != nil {
		e.Scope = &d
	}
}

// desired records step 3.
func (e *Explanation) desired(u mapping.User) {
	if e != nil {
		e.Desired = rawJSON(u.Resource())
	}
}

// record records step 4: the record as found (a copy).
func (e *Explanation) record(rec state.Account, known bool) {
	if e == nil || !known {
		return
	}
	rec.Pushed = clonePushed(rec.Pushed)
	if rec.Parked != nil {
		p := *rec.Parked
		rec.Parked = &p
	}
	e.Record = &rec
}

// got records a GET of the account (step 5); a 404 is noted as gone.
func (e *Explanation) got(id string, res scimclient.Resource, cr scimclient.Result, err error) {
	if e == nil {
		return
	}
	e.Server = append(e.Server, getStep("/Users/"+id, "the account is gone from the server", res, cr, err))
}

// getStep is the ServerStep of a GET of path: the resource read, or gone
// (a 404) or why not.
func getStep(path, gone string, res scimclient.Resource, cr scimclient.Result, err error) ServerStep {
	s := ServerStep{Read: "get", Path: path, Status: cr.Status}
	switch {
	case scimclient.IsNotFound(err):
		s.Note = gone
	case err != nil:
		s.Note = "not read: " + err.Error()
	default:
		s.Resource = rawResource(res)
	}
	return s
}

// lookedUp records a lookup (step 5): the filter, what matched.
func (e *Explanation) lookedUp(filter string, list scimclient.ListResponse, match scimclient.Resource, cr scimclient.Result, err error) {
	if e == nil {
		return
	}
	s := ServerStep{Read: "lookup", Path: "/Users", Filter: filter, Status: cr.Status}
	switch {
	case err != nil:
		s.Note = "failed: " + err.Error()
	case match != nil:
		n := len(list.Resources)
		s.Matches, s.Resource = &n, rawResource(match)
		s.Note = "found the account " + stringAttr(match, "id")
	default:
		n := len(list.Resources)
		s.Matches = &n
		s.Note = "no account matches"
	}
	e.Server = append(e.Server, s)
}

// note adds what came of the last look at the server (why an account
// found was adopted or not).
func (e *Explanation) note(format string, args ...any) {
	if e == nil || len(e.Server) == 0 {
		return
	}
	last := &e.Server[len(e.Server)-1]
	if last.Note != "" {
		last.Note += "; "
	}
	last.Note += fmt.Sprintf(format, args...)
}

// compared records the difference with the server's copy (step 6).
func (e *Explanation) compared(u mapping.User, server scimclient.Resource, c mapping.Changes) {
	if e == nil {
		return
	}
	d := &DiffStep{Against: "server", Changes: []AttrChange{}}
	for _, p := range c.Set {
		d.Changes = append(d.Changes, AttrChange{Path: p, Change: "set", Server: rawJSON(mapping.Value(server, p)), Wanted: rawJSON(u.Values[p])})
	}
	for _, p := range c.Remove {
		d.Changes = append(d.Changes, AttrChange{Path: p, Change: "remove", Server: rawJSON(mapping.Value(server, p))})
	}
	e.Difference = d
}

// diffed records the difference with what was last pushed (step 6).
func (e *Explanation) diffed(u mapping.User, pushed map[string]uint64, c mapping.Changes) {
	if e == nil {
		return
	}
	d := &DiffStep{Against: "pushed", Changes: []AttrChange{}}
	was := func(p string) string {
		if fp, ok := pushed[p]; ok {
			return fmt.Sprintf("%016x", fp)
		}
		return "never pushed"
	}
	for _, p := range c.Set {
		d.Changes = append(d.Changes, AttrChange{Path: p, Change: "set", Pushed: was(p), Wanted: rawJSON(u.Values[p])})
	}
	for _, p := range c.Remove {
		d.Changes = append(d.Changes, AttrChange{Path: p, Change: "remove", Pushed: was(p)})
	}
	e.Difference = d
}

// nothingThere records that there is no account to compare with: all of
// the resource is sent (step 6).
func (e *Explanation) nothingThere(u mapping.User) {
	if e == nil {
		return
	}
	d := &DiffStep{Against: "none", Changes: []AttrChange{}}
	for _, p := range sortedPaths(u) {
		d.Changes = append(d.Changes, AttrChange{Path: p, Change: "set", Wanted: rawJSON(u.Values[p])})
	}
	e.Difference = d
}

// decide records what the reconcile sets out to do, and why (step 7); a
// later decision replaces it (a create that finds the account adopts it).
func (e *Explanation) decide(action, format string, args ...any) {
	if e != nil {
		e.Decision.Action, e.Decision.Why = action, fmt.Sprintf(format, args...)
	}
}

// request records one request (step 8).
func (e *Explanation) request(op, method, path string, body any, cr scimclient.Result, err error) {
	if e != nil {
		e.Requests = append(e.Requests, sentStep(op, method, path, body, cr, err))
	}
}

// unsent records a write a dry run does not send (step 8).
func (e *Explanation) unsent(op, method, path string, body any) {
	if e != nil {
		e.Requests = append(e.Requests, unsentStep(op, method, path, body))
	}
}

// sentStep is the RequestStep of a request sent.
func sentStep(op, method, path string, body any, cr scimclient.Result, err error) RequestStep {
	s := unsentStep(op, method, path, body)
	s.Sent, s.Status, s.Attempts = true, cr.Status, cr.Attempts
	var se *scimclient.Error
	switch {
	case errors.As(err, &se):
		s.Error = refusal(se)
	case err != nil:
		s.Error = err.Error()
	}
	return s
}

// unsentStep is the RequestStep of a write a dry run does not send.
func unsentStep(op, method, path string, body any) RequestStep {
	s := RequestStep{Op: op, Method: method, Path: path}
	if body != nil {
		s.Body = rawJSON(body)
	}
	return s
}

// finish completes the decision with how the reconcile ended: its
// result, or the error it will be tried again after.
func (e *Explanation) finish(res Result, err error) {
	if e == nil {
		return
	}
	var parked *state.Parked
	if e.Record != nil {
		parked = e.Record.Parked
	}
	e.Decision.finish(res, err, parked)
}

// finish completes d with how the reconcile ended (res, or err: tried
// again), saying so when the record was parked before.
func (d *DecisionStep) finish(res Result, err error, parked *state.Parked) {
	d.Outcome, d.Detail = res.Outcome, res.Detail
	if err != nil {
		d.Outcome, d.Detail = Failed, "tried again with backoff: "+err.Error()
	}
	if d.Action == "" {
		d.Action, d.Why = actionNothing, res.Detail
	}
	if parked != nil {
		d.Why += fmt.Sprintf("; its last %s was parked (%s) and is tried again now", parked.Op, parked.Detail)
	}
	switch d.Outcome {
	case Held:
		d.Detail = "the deletion guard holds it until `scim-agent approve-deletes`"
	case Failed:
		if err == nil {
			d.Detail = "parked: " + res.Detail
		}
	}
}

// differs names what an update changes: "emails and active differ".
func differs(c mapping.Changes) string {
	paths := append(append([]string{}, c.Set...), c.Remove...)
	switch len(paths) {
	case 0:
		return "nothing differs"
	case 1:
		return paths[0] + " differs"
	}
	return strings.Join(paths[:len(paths)-1], ", ") + " and " + paths[len(paths)-1] + " differ"
}

// refusal is the server's answer to a refused request: its status, SCIM
// type and detail (the method and path are the request's own).
func refusal(se *scimclient.Error) string {
	parts := []string{strings.TrimSpace(fmt.Sprintf("%d %s", se.Status, http.StatusText(se.Status)))}
	if se.ScimType != "" {
		parts[0] += " (" + se.ScimType + ")"
	}
	if se.Detail != "" {
		parts = append(parts, se.Detail)
	}
	return strings.Join(parts, ": ")
}

// rawJSON encodes v for the explanation now, so that later changes to v
// (a PUT edits the copy it read) do not change what was recorded.
func rawJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// rawResource encodes a server's resource, without a password a server
// should never return.
func rawResource(res scimclient.Resource) json.RawMessage {
	if res == nil {
		return nil
	}
	clean := make(map[string]any, len(res))
	for k, v := range res {
		if k != "password" {
			clean[k] = v
		}
	}
	return rawJSON(clean)
}

func clonePushed(p map[string]uint64) map[string]uint64 {
	if p == nil {
		return nil
	}
	out := make(map[string]uint64, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

func sortedPaths(u mapping.User) []string {
	paths := make([]string, 0, len(u.Values))
	for p := range u.Values {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

func stringAttr(res scimclient.Resource, name string) string {
	s, _ := res[name].(string)
	return s
}
