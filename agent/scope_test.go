package agent

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/logging"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// provisioning.scope against the real MariaDB and the SCIM server: who
// is provisioned, what leaving and coming back does, and which changes
// the binlog must watch for it.

// staffOnly is a role-based scope: only holders of staff are provisioned.
const staffOnly = "scope:\n  - [{source: roles, op: in, values: [staff]}]"

// withScope sets provisioning.scope (and out_of_scope when not "").
func withScope(scope, outOfScope string) harnessOption {
	yaml := scope
	if outOfScope != "" {
		yaml += "\nout_of_scope: " + outOfScope
	}
	return withConfig(func(c *agenttest.Config) {
		// A clause's lines are indented below scope: keep them so.
		for _, l := range strings.Split(yaml, "\n") {
			if strings.TrimSpace(l) != "" {
				c.Provisioning = append(c.Provisioning, l)
			}
		}
	})
}

// serverUserByName returns the server's account named name.
func (h *harness) serverUserByName(name string) (scimtest.User, bool) {
	return h.scim.UserByUserName(name)
}

func TestRoleScopeCreatesOnGrantDeactivatesOnLossReactivatesOnReturn(t *testing.T) {
	h := newHarness(t, withScope(staffOnly, ""))
	ctx := context.Background()
	uid := h.create(drupaltest.User{Name: "outsider", Mail: str("outsider@example.org"), Status: 1})
	staff := h.create(drupaltest.User{Name: "insider", Mail: str("insider@example.org"), Status: 1, Roles: []string{"staff"}})
	h.start()
	h.settle()
	if _, ok := h.serverUserByName("outsider"); ok {
		t.Fatal("a user outside the scope was created")
	}
	h.mustServerUser(staff)

	// Granted the role (a save of user__roles alone): created, nothing else.
	h.scim.ResetRequests()
	h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"staff"} })
	h.settle()
	if got := methods(h.userRequests()); !slices.Equal(got, []string{"POST /Users"}) {
		t.Fatalf("granting the scope's role sent %v, want one POST", got)
	}
	id := h.mustServerUser(uid).ID

	// Loses it: deactivated, with one PATCH, and kept.
	h.scim.ResetRequests()
	h.update(uid, func(u *drupaltest.User) { u.Roles = nil })
	h.settle()
	if got := methods(h.userRequests()); !slices.Equal(got, []string{"PATCH /Users/" + id}) {
		t.Fatalf("losing the scope's role sent %v, want one PATCH", got)
	}
	if su := h.mustServerUser(uid); su.Get("active") != false {
		t.Fatalf("after leaving the scope the account is %v, want inactive", su.Attributes)
	}
	// Out of scope, a change of a mapped value is not sent.
	h.scim.ResetRequests()
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("moved@example.org") })
	h.settle()
	if n := len(h.userRequests()); n != 0 {
		t.Fatalf("a change of a user outside the scope sent %v", methods(h.userRequests()))
	}

	// Back in scope: the same account reactivated with the mail it missed.
	h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"staff"} })
	h.settle()
	su := h.mustServerUser(uid)
	if su.ID != id || su.Get("active") != true || drupaltest.Email(su) != "moved@example.org" {
		t.Fatalf("after coming back: %s %v, want %s active with the new mail", su.ID, su.Attributes, id)
	}
	if n := h.count("POST"); n != 0 {
		t.Fatalf("coming back POSTed %d times, want the account reactivated", n)
	}

	// The role deleted site-wide (its membership rows deleted, no user
	// saved): both holders leave the scope.
	h.scim.ResetRequests()
	if err := h.site.DeleteRole(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	for _, u := range []uint32{uid, staff} {
		if su := h.mustServerUser(u); su.Get("active") != false {
			t.Fatalf("uid %d after its role was deleted: %v, want inactive", u, su.Attributes)
		}
	}
	if n := h.count("PATCH"); n != 2 || len(h.userRequests()) != 2 {
		t.Fatalf("the role's deletion sent %v, want one PATCH per holder", methods(h.userRequests()))
	}
}

func TestOutOfScopeDeleteAndIgnore(t *testing.T) {
	t.Run("delete", func(t *testing.T) {
		h := newHarness(t, withScope(staffOnly, "delete"))
		uid := h.create(drupaltest.User{Name: "temp", Mail: str("temp@example.org"), Status: 1, Roles: []string{"staff"}})
		h.start()
		h.settle()
		id := h.mustServerUser(uid).ID
		h.update(uid, func(u *drupaltest.User) { u.Roles = nil })
		h.settle()
		if _, ok := h.scim.UserByID(id); ok || h.count("DELETE") != 1 {
			t.Fatalf("leaving the scope with out_of_scope: delete: account still there (%d DELETEs)", h.count("DELETE"))
		}
		h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"staff"} })
		h.settle()
		if su := h.mustServerUser(uid); su.ID == id || su.Get("active") != true {
			t.Fatalf("coming back: %v, want a new active account", su.Attributes)
		}
	})
	t.Run("ignore", func(t *testing.T) {
		h := newHarness(t, withScope(staffOnly, "ignore"))
		uid := h.create(drupaltest.User{Name: "kept", Mail: str("kept@example.org"), Status: 1, Roles: []string{"staff"}})
		h.start()
		h.settle()
		id := h.mustServerUser(uid).ID
		h.scim.ResetRequests()
		h.update(uid, func(u *drupaltest.User) { u.Roles = nil })
		h.settle()
		if n := len(h.userRequests()); n != 0 {
			t.Fatalf("leaving the scope with out_of_scope: ignore sent %v", methods(h.userRequests()))
		}
		if _, known, _ := h.agent.store.Account(uid); known {
			t.Fatal("the record of an ignored user is still kept: the agent still manages it")
		}
		// No longer managed: a change is not sent, a deletion deletes nothing.
		h.update(uid, func(u *drupaltest.User) { u.Status = 0 })
		h.settle()
		if su, ok := h.scim.UserByID(id); !ok || su.Get("active") != true || len(h.userRequests()) != 0 {
			t.Fatalf("an ignored account was touched: %v, %v", su.Attributes, methods(h.userRequests()))
		}
		// Back in scope: the account still there is adopted, not duplicated.
		h.update(uid, func(u *drupaltest.User) { u.Roles, u.Status = []string{"staff"}, 1 })
		h.settle()
		if su := h.mustServerUser(uid); su.ID != id || len(h.scim.Users()) != 1 {
			t.Fatalf("coming back: %s, %d accounts; want %s adopted", su.ID, len(h.scim.Users()), id)
		}
	})
}

func TestMailScopeAndClauses(t *testing.T) {
	// The README's scope: (staff or editor) and active, or an address at
	// example.org.
	scope := "scope:\n" +
		"  - [{source: roles, op: in, values: [staff, editor]}, {source: status, op: equals, value: \"1\"}]\n" +
		"  - [{source: mail, op: matches, value: '@example\\.org$'}]"
	h := newHarness(t, withScope(scope, ""))
	in := map[string]uint32{
		"editor-active":   h.create(drupaltest.User{Name: "editor-active", Mail: str("ea@other.test"), Status: 1, Roles: []string{"editor"}}),
		"domain-no-roles": h.create(drupaltest.User{Name: "domain-no-roles", Mail: str("dn@example.org"), Status: 1}),
		"domain-blocked":  h.create(drupaltest.User{Name: "domain-blocked", Mail: str("db@example.org"), Status: 0, Roles: []string{"staff"}}),
	}
	out := map[string]uint32{
		"editor-blocked": h.create(drupaltest.User{Name: "editor-blocked", Mail: str("eb@other.test"), Status: 0, Roles: []string{"editor"}}),
		"nobody":         h.create(drupaltest.User{Name: "nobody", Mail: str("nb@other.test"), Status: 1, Roles: []string{"author"}}),
		"lookalike":      h.create(drupaltest.User{Name: "lookalike", Mail: str("la@example.org.evil.test"), Status: 1}),
	}
	h.start()
	h.settle()
	for _, uid := range in {
		h.mustServerUser(uid)
	}
	for name := range out {
		if _, ok := h.serverUserByName(name); ok {
			t.Errorf("%s is outside the scope but was created", name)
		}
	}
	// A mail moved into the domain brings a user in; out of it, out.
	h.update(out["nobody"], func(u *drupaltest.User) { u.Mail = str("nb@example.org") })
	h.settle()
	h.mustServerUser(out["nobody"])
	h.update(in["domain-no-roles"], func(u *drupaltest.User) { u.Mail = str("dn@other.test") })
	h.settle()
	if su := h.mustServerUser(in["domain-no-roles"]); su.Get("active") != false {
		t.Fatalf("a mail moved out of the domain: %v, want inactive", su.Attributes)
	}
	// Unblocking the blocked editor satisfies the first clause's AND.
	h.update(out["editor-blocked"], func(u *drupaltest.User) { u.Status = 1 })
	h.settle()
	if su := h.mustServerUser(out["editor-blocked"]); su.Get("active") != true {
		t.Fatalf("editor unblocked: %v", su.Attributes)
	}
}

func TestScopeChangeThenSyncAllBringsTheServerInLine(t *testing.T) {
	h := newHarness(t)
	staff := h.create(drupaltest.User{Name: "s1", Mail: str("s1@example.org"), Status: 1, Roles: []string{"staff"}})
	other := h.create(drupaltest.User{Name: "o1", Mail: str("o1@example.org"), Status: 1, Roles: []string{"author"}})
	h.start()
	h.settle()
	h.stop()
	staffID, otherID := h.mustServerUser(staff).ID, h.mustServerUser(other).ID

	// The operator narrows the scope and runs sync --all (no agent running).
	narrowed := *h.cfg
	narrowed.Provisioning.Scope = []config.ScopeClause{{{Source: "roles", Op: "in", Values: []string{"staff"}}}}
	results := h.syncAll(&narrowed)
	if got := outcomes(results); got[staff] != Unchanged || got[other] != Deactivated {
		t.Fatalf("sync --all after narrowing the scope: %v", results)
	}
	if su, _ := h.scim.UserByID(otherID); su.Get("active") != false {
		t.Fatalf("o1 outside the new scope: %v, want inactive", su.Attributes)
	}
	if su, _ := h.scim.UserByID(staffID); su.Get("active") != true {
		t.Fatalf("s1 inside it: %v", su.Attributes)
	}
	// Widened again (no scope): the same account comes back.
	results = h.syncAll(h.cfg)
	if got := outcomes(results); got[other] != Reactivated {
		t.Fatalf("sync --all after widening the scope: %v", results)
	}
	h.assertServerMatchesDB()
}

// syncAll runs what `sync --all` runs with no agent running, with cfg.
func (h *harness) syncAll(cfg *config.Config) []Result {
	h.t.Helper()
	a, err := Open(context.Background(), Options{Config: cfg, Logger: testLogger(h.t)})
	if err != nil {
		h.t.Fatal(err)
	}
	defer a.Close()
	var uids []uint32
	for page, err := range a.Reader().UIDPages(context.Background(), 100) {
		if err != nil {
			h.t.Fatal(err)
		}
		for _, uid := range page {
			if !cfg.Provisioning.Excluded(uid) {
				uids = append(uids, uid)
			}
		}
	}
	results, err := a.ReconcileAll(context.Background(), Selection{UIDs: uids}, false)
	if err != nil {
		h.t.Fatal(err)
	}
	return results
}

// testLogger is a logger whose lines join the log check.
func testLogger(t testing.TB) *zap.Logger {
	t.Helper()
	log, err := logging.New("debug", "json", sinkWriter{})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func outcomes(results []Result) map[uint32]Outcome {
	out := map[uint32]Outcome{}
	for _, r := range results {
		out[r.UID] = r.Outcome
	}
	return out
}

func TestLeavingTheScopeCountsTowardsTheDeletionGuard(t *testing.T) {
	h := newHarness(t, withScope(staffOnly, ""), withProvisioning("max_deletes: 1"))
	var uids []uint32
	for _, name := range []string{"g1", "g2"} {
		uids = append(uids, h.create(drupaltest.User{Name: name, Mail: str(name + "@example.org"), Status: 1, Roles: []string{"staff"}}))
	}
	h.start()
	h.settle()
	for _, uid := range uids {
		h.update(uid, func(u *drupaltest.User) { u.Roles = nil })
	}
	eventually(t, "the guard to hold one of the two", func() bool { return h.agent.guard.HeldCount() == 1 })
	if n := h.count("PATCH"); n != 1 {
		t.Fatalf("%d deactivations sent while the guard holds, want 1", n)
	}
	h.agent.ApproveDeletes()
	h.settle()
	for _, uid := range uids {
		if su := h.mustServerUser(uid); su.Get("active") != false {
			t.Fatalf("uid %d after the approval: %v", uid, su.Attributes)
		}
	}
}

func TestGroupsHoldOnlyUsersInScope(t *testing.T) {
	h := newHarness(t, withScope(staffOnly, ""), withGroups(""))
	ctx := context.Background()
	for _, r := range []string{"staff", "editor"} {
		if err := h.site.CreateRole(ctx, r, strings.ToUpper(r[:1])+r[1:]); err != nil {
			t.Fatal(err)
		}
	}
	member := h.create(drupaltest.User{Name: "member", Status: 1, Roles: []string{"staff", "editor"}})
	outsider := h.create(drupaltest.User{Name: "outsider", Status: 1, Roles: []string{"editor"}})
	h.start()
	// settle returns only once no group waits for a holder to be
	// provisioned: the outsider never will be.
	h.settle()
	if _, ok := h.serverUserByName("outsider"); ok {
		t.Fatal("a holder outside the scope was created")
	}
	if got := sortedMembers(h.mustGroup("editor")); !slices.Equal(got, h.memberIDs(member)) {
		t.Fatalf("editor's members = %v, want only the staff member", got)
	}
	// The member leaves the scope (drops staff, keeps editor): it leaves
	// its groups too.
	h.update(member, func(u *drupaltest.User) { u.Roles = []string{"editor"} })
	h.settle()
	if got := h.mustGroup("editor").Members(); len(got) != 0 {
		t.Fatalf("editor's members after the member left the scope = %v, want none", got)
	}
	// The outsider comes in: created and added.
	h.update(outsider, func(u *drupaltest.User) { u.Roles = []string{"editor", "staff"} })
	h.settle()
	if got := sortedMembers(h.mustGroup("editor")); !slices.Equal(got, h.memberIDs(outsider)) {
		t.Fatalf("editor's members = %v, want the newcomer", got)
	}
	// The former member comes back: reactivated and a member again.
	h.update(member, func(u *drupaltest.User) { u.Roles = []string{"editor", "staff"} })
	h.settle()
	if got := sortedMembers(h.mustGroup("editor")); !slices.Equal(got, h.memberIDs(member, outsider)) {
		t.Fatalf("editor's members = %v, want both", got)
	}
}

func TestScopeFieldIsWatchedAndReadLikeAMappedOne(t *testing.T) {
	// A field that only the scope reads: a write of its table alone (a
	// module's, with no user save) brings the user in.
	scope := "scope:\n  - [{source: field_first_name, op: equals, value: Ann}]"
	h := newHarness(t, withScope(scope, ""))
	uid := h.create(drupaltest.User{Name: "dept", Mail: str("dept@example.org"), Status: 1, Fields: map[string]string{"field_first_name": "Bob"}})
	h.start()
	h.settle()
	if _, ok := h.serverUserByName("dept"); ok {
		t.Fatal("created outside the scope")
	}
	if _, err := h.site.DB.Exec("UPDATE user__field_first_name SET field_first_name_value = 'Ann' WHERE entity_id = ?", uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.mustServerUser(uid)
}

func TestWatchedTablesFollowTheScope(t *testing.T) {
	value := "x"
	cfg := &config.Config{Provisioning: config.Provisioning{Scope: []config.ScopeClause{{
		{Source: "roles", Op: "not_empty"}, {Source: "init", Op: "equals", Value: &value}, {Source: "field_team.target_id", Op: "not_empty"}}}}}
	_, _, sources, err := readSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tables := watchedTables(drupal.Tables{}, sources, false)
	byName := map[string]binlog.Table{}
	for _, tb := range tables {
		byName[tb.Name] = tb
	}
	if cols := byName["users_field_data"].Columns; !slices.Contains(cols, "init") || slices.Contains(cols, "login") {
		t.Errorf("users_field_data columns %v: want the scope's init, never login", cols)
	}
	if _, ok := byName["user__roles"]; !ok {
		t.Error("user__roles is not watched though the scope reads roles")
	}
	if _, ok := byName["user__field_team"]; !ok {
		t.Error("the scope's field table is not watched")
	}
	if len(tables) != 4 {
		t.Errorf("watched %v, want users, users_field_data, user__roles, user__field_team and nothing else", tables)
	}
	// Without a scope nothing of it is watched.
	_, _, sources, _ = readSources(&config.Config{})
	if tables := watchedTables(drupal.Tables{}, sources, false); len(tables) != 2 || slices.Contains(tables[1].Columns, "init") {
		t.Errorf("without a scope: %v, want users and users_field_data with the mapping's columns", tables)
	}
}

func TestDriftRepairKnowsTheScope(t *testing.T) {
	h := newHarness(t, withScope(staffOnly, ""))
	left := h.create(drupaltest.User{Name: "left", Mail: str("left@example.org"), Status: 1, Roles: []string{"staff"}})
	h.create(drupaltest.User{Name: "never", Mail: str("never@example.org"), Status: 1})
	h.start()
	h.settle()
	h.update(left, func(u *drupaltest.User) { u.Roles = nil })
	h.settle()
	// Out of scope its mail moves on without being sent: not drift.
	h.update(left, func(u *drupaltest.User) { u.Mail = str("left-new@example.org") })
	h.settle()
	rep, err := h.agent.RepairDrift(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drifted != 0 || rep.Unprovisioned != 0 {
		t.Fatalf("drift repair with an account deactivated for the scope and a user never in it: %+v, want nothing to repair", rep)
	}
	// Reactivated by hand on the server: deactivated again.
	id := h.mustServerUser(left).ID
	h.scim.Edit(id, func(attrs map[string]any) { attrs["active"] = true })
	if rep, err = h.agent.RepairDrift(context.Background()); err != nil || rep.Drifted != 1 {
		t.Fatalf("drift repair after a reactivation by hand: %+v, %v", rep, err)
	}
	if su := h.mustServerUser(left); su.Get("active") != false {
		t.Fatalf("after the repair: %v, want inactive", su.Attributes)
	}
}

// TestExplainRidesTheWorkQueue: an explanation is recorded by the
// reconcile the running agent's workers run, and reaches the caller with
// its result; a key merged with other work is explained all the same.
func TestExplainRidesTheWorkQueue(t *testing.T) {
	h := newHarness(t, withScope(staffOnly, ""), withProvisioning("max_deletes: 1"))
	in := h.create(drupaltest.User{Name: "in1", Mail: str("in1@example.org"), Status: 1, Roles: []string{"staff"}})
	out := h.create(drupaltest.User{Name: "out1", Mail: str("out1@example.org"), Status: 1})
	leaving := []uint32{
		h.create(drupaltest.User{Name: "l1", Mail: str("l1@example.org"), Status: 1, Roles: []string{"staff"}}),
		h.create(drupaltest.User{Name: "l2", Mail: str("l2@example.org"), Status: 1, Roles: []string{"staff"}}),
	}
	h.start()
	h.settle()
	for _, uid := range leaving {
		h.update(uid, func(u *drupaltest.User) { u.Roles = nil })
	}
	eventually(t, "the guard to hold one deactivation", func() bool { return h.agent.guard.HeldCount() == 1 })
	results, err := h.agent.SyncNow(context.Background(), Selection{UIDs: append([]uint32{in, out, 0}, leaving...), Explain: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		x := res.Explain
		if x == nil || x.UID != res.UID || x.Decision.Outcome != res.Outcome {
			t.Fatalf("uid %d: %s with explanation %+v", res.UID, res.Outcome, x)
		}
		var text strings.Builder
		if err := x.WriteText(&text); err != nil || !strings.Contains(text.String(), "8. Requests") {
			t.Fatalf("uid %d: text %v\n%s", res.UID, err, text.String())
		}
		switch res.UID {
		case in:
			if res.Outcome != Unchanged || !x.Scope.In || len(x.Server) != 1 || x.Record == nil {
				t.Fatalf("in scope: %s\n%s", res.Outcome, text.String())
			}
		case out:
			if res.Outcome != Skipped || x.Scope.In || x.Decision.Why != "outside provisioning.scope, and never provisioned" {
				t.Fatalf("outside the scope: %s\n%s", res.Outcome, text.String())
			}
		case 0:
			if x.Drupal.Skipped == "" || !strings.Contains(x.Decision.Why, "excluded") {
				t.Fatalf("uid 0: %s\n%s", res.Outcome, text.String())
			}
		default:
			if res.Outcome != Held && res.Outcome != Unchanged {
				t.Fatalf("a user who left the scope: %s\n%s", res.Outcome, text.String())
			}
			if res.Outcome == Held && !strings.Contains(x.Decision.Detail, "deletion guard holds it") {
				t.Fatalf("held: %s\n%s", x.Decision.Detail, text.String())
			}
		}
	}
}
