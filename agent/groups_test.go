package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// Drupal roles as SCIM Groups, against the real MariaDB and the SCIM
// server's /Groups (strict: members must be users, displayName unique;
// here also limited to 100 member changes a request, as AWS is).

func withGroups(yaml string) harnessOption {
	return withConfig(func(c *agenttest.Config) { c.Extra += "groups:\n  enabled: true\n" + indentLines(yaml) })
}

func indentLines(yaml string) string {
	var b strings.Builder
	for _, l := range strings.Split(yaml, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

// groupRequests returns the requests to /Groups paths.
func (h *harness) groupRequests() []scimtest.Request { return h.scim.RequestsMatching("", "/Groups") }

// mustGroup returns the server's group of role (by externalId).
func (h *harness) mustGroup(role string) scimtest.Group {
	h.t.Helper()
	for _, g := range h.scim.Groups() {
		if g.ExternalID() == role {
			return g
		}
	}
	h.t.Fatalf("no group of role %s on the server: %v", role, h.scim.Groups())
	return scimtest.Group{}
}

// memberIDs returns the server ids of uids' accounts, sorted.
func (h *harness) memberIDs(uids ...uint32) []string {
	h.t.Helper()
	var ids []string
	for _, uid := range uids {
		ids = append(ids, h.mustServerUser(uid).ID)
	}
	slices.Sort(ids)
	return ids
}

func sortedMembers(g scimtest.Group) []string {
	m := g.Members()
	slices.Sort(m)
	return m
}

func TestRoleCreatedAndGrantedIsOnePOSTAndAtMostOnePATCH(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	uids := h.createMany("g%d", 3)
	h.start()
	h.settle()
	h.stop()
	h.scim.ResetRequests()
	if err := h.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"editor"} })
	}
	h.start()
	h.settle()
	if n := h.scim.CountRequests("POST", "/Groups"); n != 1 {
		t.Fatalf("%d POST /Groups, want 1: %v", n, methods(h.groupRequests()))
	}
	if n := h.scim.CountRequests("PATCH", "/Groups"); n > 1 {
		t.Fatalf("%d PATCH /Groups, want at most 1: %v", n, methods(h.groupRequests()))
	}
	g := h.mustGroup("editor")
	if g.DisplayName() != "Editors" || !slices.Equal(sortedMembers(g), h.memberIDs(uids...)) {
		t.Fatalf("group = %+v, want Editors with the 3 users", g.Attributes)
	}
}

// A role created with members reaches every kind of server with them:
// where the POST's answer does not show them (the server keeps members
// to itself, or takes them only by PATCH and dropped them), one PATCH
// adds them; where it shows them, nothing follows.
func TestRoleCreatedWithMembersReachesTheServerWithThem(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    scimtest.Options
		patches int
	}{
		{"the answer shows the members", scimtest.Options{}, 0},
		{"the server keeps members to itself", scimtest.Options{GroupsWithoutMembers: true}, 1},
		{"the server takes members only by PATCH", scimtest.Options{GroupsDropMembersOnCreate: true}, 1},
		{"both", scimtest.Options{GroupsWithoutMembers: true, GroupsDropMembersOnCreate: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Token = testToken
			h := newHarness(t, withGroups(""), withSCIM(tc.opts))
			ctx := context.Background()
			uids := h.createMany("m%d", 3)
			h.start()
			h.settle()
			h.stop()
			if err := h.site.CreateRole(ctx, "staff", "Staff"); err != nil {
				t.Fatal(err)
			}
			for _, uid := range uids {
				h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"staff"} })
			}
			h.scim.ResetRequests()
			h.start()
			h.settle()
			if n := h.scim.CountRequests("POST", "/Groups"); n != 1 {
				t.Fatalf("%d POST /Groups, want 1: %v", n, methods(h.groupRequests()))
			}
			if n := h.scim.CountRequests("PATCH", "/Groups"); n != tc.patches {
				t.Fatalf("%d PATCH /Groups, want %d: %v", n, tc.patches, methods(h.groupRequests()))
			}
			if got := sortedMembers(h.mustGroup("staff")); !slices.Equal(got, h.memberIDs(uids...)) {
				t.Fatalf("members on the server %v, want the 3 users %v", got, h.memberIDs(uids...))
			}
		})
	}
}

func TestGainingOneRoleAndLosingAnotherPatchesOnlyThoseGroups(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	for _, r := range []string{"author", "editor", "staff"} {
		if err := h.site.CreateRole(ctx, r, strings.ToUpper(r[:1])+r[1:]); err != nil {
			t.Fatal(err)
		}
	}
	uid := h.create(drupaltest.User{Name: "mover", Status: 1, Roles: []string{"author", "staff"}})
	other := h.create(drupaltest.User{Name: "stayer", Status: 1, Roles: []string{"editor", "staff"}})
	h.start()
	h.settle()
	h.scim.ResetRequests()

	h.update(uid, func(u *drupaltest.User) { u.Roles = []string{"editor", "staff"} })
	h.settle()
	reqs := h.groupRequests()
	editor, author := h.mustGroup("editor"), h.mustGroup("author")
	var patches []string
	for _, r := range reqs {
		if r.Method != "GET" {
			patches = append(patches, r.Method+" "+r.Path)
		}
	}
	want := []string{"PATCH /Groups/" + author.ID, "PATCH /Groups/" + editor.ID}
	slices.Sort(patches)
	slices.Sort(want)
	if !slices.Equal(patches, want) {
		t.Fatalf("group writes = %v, want one PATCH of author and one of editor", patches)
	}
	for _, r := range reqs {
		ops, _ := r.JSON()["Operations"].([]any)
		for _, o := range ops {
			op := o.(map[string]any)
			switch {
			case r.Path == "/Groups/"+editor.ID && op["op"] != "add":
				t.Errorf("editor's PATCH has op %v, want add", op)
			case r.Path == "/Groups/"+author.ID && (op["op"] != "remove" || !strings.HasPrefix(op["path"].(string), "members[value eq ")):
				t.Errorf("author's PATCH has %v, want remove members[value eq ...]", op)
			}
		}
	}
	if !slices.Equal(sortedMembers(editor), h.memberIDs(uid, other)) || len(author.Members()) != 0 {
		t.Fatalf("editor %v, author %v", editor.Members(), author.Members())
	}
	if got := sortedMembers(h.mustGroup("staff")); !slices.Equal(got, h.memberIDs(uid, other)) {
		t.Fatalf("staff = %v", got)
	}
}

func TestManyGrantsInOneTransactionArePATCHesOfAtMost100Members(t *testing.T) {
	h := newHarness(t, withGroups(""), withSCIM(scimtest.Options{Token: testToken, MaxMembersPerRequest: 100, GroupsWithoutMembers: true}))
	ctx := context.Background()
	if err := h.site.CreateRole(ctx, "staff", "Staff"); err != nil {
		t.Fatal(err)
	}
	uids := h.createMany("s%03d", 250)
	h.start()
	h.settle()
	h.scim.ResetRequests()
	// One transaction grants the role to everybody (a bulk operation).
	tx, err := h.db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		if _, err := tx.Exec("INSERT INTO user__roles (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES ('user', 0, ?, ?, 'en', 0, 'staff')", uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	h.settle()
	var sizes []int
	for _, r := range h.scim.RequestsMatching("PATCH", "/Groups") {
		if r.Status != 200 {
			t.Fatalf("PATCH answered %d: %s", r.Status, r.Body)
		}
		n := 0
		for _, o := range r.JSON()["Operations"].([]any) {
			n += len(o.(map[string]any)["value"].([]any))
		}
		sizes = append(sizes, n)
	}
	if len(sizes) != 3 || sizes[0] > 100 || sizes[1] > 100 || sizes[2] > 100 || sizes[0]+sizes[1]+sizes[2] != 250 {
		t.Fatalf("PATCHes of %v members, want three of at most 100", sizes)
	}
	if g := h.mustGroup("staff"); len(g.Members()) != 250 {
		t.Fatalf("%d members on the server, want 250", len(g.Members()))
	}
}

func TestRoleRenamedIsOnePATCHOfItsLabel(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	if err := h.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	h.create(drupaltest.User{Name: "ed", Status: 1, Roles: []string{"editor"}})
	h.start()
	h.settle()
	h.scim.ResetRequests()
	if err := h.site.RenameRole(ctx, "editor", "Rédaction — Révision"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	reqs := h.groupRequests()
	if len(reqs) != 1 || reqs[0].Method != "PATCH" {
		t.Fatalf("requests = %v, want one PATCH", methods(reqs))
	}
	ops := reqs[0].JSON()["Operations"].([]any)
	if len(ops) != 1 || ops[0].(map[string]any)["path"] != "displayName" {
		t.Fatalf("operations = %v, want displayName only", ops)
	}
	if g := h.mustGroup("editor"); g.DisplayName() != "Rédaction — Révision" {
		t.Fatalf("displayName = %q", g.DisplayName())
	}
}

func TestRoleDeletedSiteWide(t *testing.T) {
	for _, tt := range []struct {
		name, onDelete string
	}{{"delete", "delete"}, {"keep", "keep"}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withGroups("on_role_delete: "+tt.onDelete))
			ctx := context.Background()
			if err := h.site.CreateRole(ctx, "editor", "Editors"); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				h.create(drupaltest.User{Name: fmt.Sprintf("e%d", i), Status: 1, Roles: []string{"editor"}})
			}
			h.start()
			h.settle()
			id := h.mustGroup("editor").ID
			h.scim.ResetRequests()
			// Drupal: the role's config row goes, then later its membership
			// rows, in another transaction, with no user save.
			if err := h.site.DeleteRole(ctx, "editor"); err != nil {
				t.Fatal(err)
			}
			h.settle()
			groupWrites, userWrites := 0, 0
			for _, r := range h.scim.Requests() {
				switch {
				case r.Method == "GET":
				case strings.HasPrefix(r.Path, "/Groups"):
					groupWrites++
				case strings.HasPrefix(r.Path, "/Users"):
					userWrites++
				}
			}
			if userWrites != 0 {
				t.Fatalf("%d user writes for a role deletion", userWrites)
			}
			g, kept := h.scim.GroupByID(id)
			switch tt.onDelete {
			case "delete":
				if n := h.scim.CountRequests("DELETE", "/Groups/"+id); n != 1 || groupWrites != 1 || kept {
					t.Fatalf("%d DELETEs, %d group writes, group kept %v: want one DELETE and nothing else", n, groupWrites, kept)
				}
			case "keep":
				if !kept || len(g.Members()) != 0 || g.DisplayName() != "Editors" {
					t.Fatalf("group %v kept %v: want it kept with no members", g.Attributes, kept)
				}
				if n := h.scim.CountRequests("DELETE", "/Groups"); n != 0 {
					t.Fatalf("%d DELETEs with on_role_delete: keep", n)
				}
			}
		})
	}
}

func TestDeletedUserLeavesItsGroupsAndItsNamesakeIsANewMember(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts scimtest.Options
	}{
		{"server drops the member", scimtest.Options{Token: testToken}},
		{"server keeps it", scimtest.Options{Token: testToken, KeepMembersOfDeletedUsers: true}},
		{"server never returns members", scimtest.Options{Token: testToken, GroupsWithoutMembers: true, KeepMembersOfDeletedUsers: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withGroups(""), withSCIM(tt.opts))
			ctx := context.Background()
			for _, r := range []string{"editor", "staff"} {
				if err := h.site.CreateRole(ctx, r, r); err != nil {
					t.Fatal(err)
				}
			}
			uid := h.create(drupaltest.User{Name: "leaver", Status: 1, Roles: []string{"editor", "staff"}})
			keep := h.create(drupaltest.User{Name: "keeper", Status: 1, Roles: []string{"staff"}})
			h.start()
			h.settle()
			old := h.mustServerUser(uid).ID
			if err := h.site.Delete(ctx, uid); err != nil {
				t.Fatal(err)
			}
			h.settle()
			for _, g := range h.scim.Groups() {
				if slices.Contains(g.Members(), old) {
					t.Fatalf("the deleted user is still a member of %s: %v", g.DisplayName(), g.Members())
				}
			}
			again := h.create(drupaltest.User{Name: "leaver", Status: 1, Roles: []string{"editor"}})
			h.settle()
			newID := h.mustServerUser(again).ID
			if newID == old {
				t.Fatal("the namesake has the deleted user's id")
			}
			if got := h.mustGroup("editor").Members(); !slices.Equal(got, []string{newID}) {
				t.Fatalf("editor members = %v, want the namesake %s", got, newID)
			}
			if got := h.mustGroup("staff").Members(); !slices.Equal(got, h.memberIDs(keep)) {
				t.Fatalf("staff members = %v", got)
			}
		})
	}
}

func TestGroupDriftIsRepairedAndAnExistingGroupAdopted(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	if err := h.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	if err := h.site.CreateRole(ctx, "staff", "Staff"); err != nil {
		t.Fatal(err)
	}
	a := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor", "staff"}})
	b := h.create(drupaltest.User{Name: "ben", Status: 1, Roles: []string{"editor"}})
	stranger := h.create(drupaltest.User{Name: "stranger", Status: 1})
	// The server already has a group for staff (made by hand): a 409,
	// then adoption, not a second one.
	existing := h.scim.SeedGroup(map[string]any{"displayName": "Staff"})
	h.start()
	h.settle()
	if n := len(h.scim.Groups()); n != 2 {
		t.Fatalf("%d groups, want 2 (staff adopted): %v", n, h.scim.Groups())
	}
	if g := h.mustGroup("staff"); g.ID != existing || !slices.Equal(g.Members(), h.memberIDs(a)) {
		t.Fatalf("staff = %+v, want the existing group %s adopted with ann", g, existing)
	}
	if n := h.scim.CountRequests("POST", "/Groups"); n != 2 {
		t.Fatalf("%d POST /Groups, want 2 (one answered 409)", n)
	}
	// By hand on the server: a member removed, a stranger added, the
	// label changed, and the staff group deleted.
	editor := h.mustGroup("editor")
	h.scim.EditGroup(editor.ID, func(m map[string]any) {
		m["members"] = []any{map[string]any{"value": h.mustServerUser(b).ID}, map[string]any{"value": h.mustServerUser(stranger).ID}}
		m["displayName"] = "Edited by hand"
	})
	h.scim.RemoveGroup(existing)
	rep, err := h.agent.RepairDrift(ctx)
	if err != nil || rep.Groups != 2 {
		t.Fatalf("drift repair = %+v, %v", rep, err)
	}
	if g := h.mustGroup("editor"); !slices.Equal(sortedMembers(g), h.memberIDs(a, b)) || g.DisplayName() != "Editors" {
		t.Fatalf("editor after the repair = %v %q", g.Members(), g.DisplayName())
	}
	if g := h.mustGroup("staff"); g.ID == existing || !slices.Equal(g.Members(), h.memberIDs(a)) {
		t.Fatalf("staff after the repair = %+v, want it created again with ann", g)
	}
}

// 10,000 saves of other configuration and 10,000 logins: no request
// about groups.
func TestOtherConfigAndLoginsSendNoGroupRequest(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	if err := h.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	uid := h.create(drupaltest.User{Name: "busy", Status: 1, Roles: []string{"editor"}})
	h.start()
	h.settle()
	h.scim.ResetRequests()
	for i := 0; i < 10000; i++ {
		if err := h.site.SaveConfig(ctx, fmt.Sprintf("views.view.v%d", i%50), fmt.Sprintf(`a:1:{s:5:"label";s:%d:"%d";}`, len(fmt.Sprint(i)), i)); err != nil {
			t.Fatal(err)
		}
		if err := h.site.Login(ctx, uid, time.Now().Unix()+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	h.settle()
	if reqs := h.groupRequests(); len(reqs) != 0 {
		t.Fatalf("%d group requests after other config saves and logins: %v", len(reqs), methods(reqs)[:min(5, len(reqs))])
	}
	if reqs := h.userRequests(); len(reqs) != 0 {
		t.Fatalf("%d user requests: %v", len(reqs), methods(reqs)[:min(5, len(reqs))])
	}
}

// A dry run sends no group write and saves no group, and a guard trip
// holds a group's deletion like a user's.
func TestGroupsInADryRunAndBehindTheGuard(t *testing.T) {
	h := newHarness(t, withGroups(""), withProvisioning("max_deletes: 1"))
	ctx := context.Background()
	for _, r := range []string{"editor", "staff"} {
		if err := h.site.CreateRole(ctx, r, r); err != nil {
			t.Fatal(err)
		}
	}
	uid := h.create(drupaltest.User{Name: "dry", Status: 1, Roles: []string{"editor"}})
	h.start(func(o *Options) { o.DryRun = true })
	h.settle()
	for _, r := range h.groupRequests() {
		if r.Method != "GET" {
			t.Fatalf("a dry run sent %s %s", r.Method, r.Path)
		}
	}
	if n, _, _ := GroupCounts(h.agent.store); n != 0 {
		t.Fatalf("a dry run saved %d groups", n)
	}
	h.stop()

	h.start()
	h.settle()
	h.mustGroup("editor")
	h.mustGroup("staff")
	// Two deprovisionings with max_deletes 1: the user's goes, the
	// group's is held until approved.
	if err := h.site.Delete(ctx, uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if err := h.site.DeleteRoleConfig(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the guard to hold the group's deletion", func() bool { return h.agent.guard.HeldCount() == 1 })
	if st := h.agent.Status(); !st.Guard.Tripped || !slices.Equal(st.Guard.HeldRoles, []string{"staff"}) {
		t.Fatalf("guard = %+v", st.Guard)
	}
	h.agent.ApproveDeletes()
	h.settle()
	if _, ok := h.scim.GroupByDisplayName("staff"); ok {
		t.Fatal("the approved group deletion was not sent")
	}
}

// A 409 on POST /Groups adopts the server's group of the role, found by
// externalId before displayName, and never a group that is not the
// role's: one carrying another externalId, or one the agent already
// provisions for another role. Those park the role and leave the group
// alone.
func TestGroupAdoptionAfterA409(t *testing.T) {
	tests := []struct {
		name   string
		scim   scimtest.Options
		seed   map[string]any // the group already on the server
		labels map[string]string
		check  func(t *testing.T, h *harness, seeded string, ann uint32)
	}{
		{"by externalId", scimtest.Options{UniqueGroupExternalID: true},
			map[string]any{"displayName": "Staff (old label)", "externalId": "staff"}, map[string]string{"staff": "Staff"},
			func(t *testing.T, h *harness, seeded string, ann uint32) {
				if g := h.mustGroup("staff"); g.ID != seeded || g.DisplayName() != "Staff" || !slices.Equal(g.Members(), h.memberIDs(ann)) {
					t.Fatalf("staff = %+v, want the group %s adopted, renamed Staff, with ann", g.Attributes, seeded)
				}
			}},
		{"another externalId", scimtest.Options{},
			map[string]any{"displayName": "Staff", "externalId": "another-directory"}, map[string]string{"staff": "Staff"},
			func(t *testing.T, h *harness, seeded string, ann uint32) {
				h.wantRoleParked("staff", "another-directory")
				h.wantUntouched(seeded, "Staff", "another-directory")
			}},
		{"another role's group", scimtest.Options{},
			nil, map[string]string{"team": "Staff"},
			func(t *testing.T, h *harness, _ string, ann uint32) {
				// Once team's group exists, a role whose label differs
				// only in case gets a 409 and finds team's group: parked,
				// naming the role that holds it.
				ctx := context.Background()
				if err := h.site.CreateRole(ctx, "staff", "STAFF"); err != nil {
					t.Fatal(err)
				}
				h.update(ann, func(u *drupaltest.User) { u.Roles = []string{"team", "staff"} })
				h.settle()
				h.wantRoleParked("staff", "for role team")
				if g := h.mustGroup("team"); !slices.Equal(g.Members(), h.memberIDs(ann)) || g.DisplayName() != "Staff" {
					t.Fatalf("team = %+v, want its own label and members kept", g.Attributes)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withGroups(""), withSCIM(tt.scim))
			ctx := context.Background()
			var roles []string
			for id, label := range tt.labels {
				if err := h.site.CreateRole(ctx, id, label); err != nil {
					t.Fatal(err)
				}
				roles = append(roles, id)
			}
			ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: roles})
			var seeded string
			if tt.seed != nil {
				seeded = h.scim.SeedGroup(tt.seed)
			}
			h.start()
			h.settle()
			if n := h.scim.CountRequests("POST", "/Groups"); n < 1 {
				t.Fatalf("%d POST /Groups", n)
			}
			tt.check(t, h, seeded, ann)
		})
	}
}

// wantRoleParked fails unless role is parked with a detail naming what.
func (h *harness) wantRoleParked(role, what string) {
	h.t.Helper()
	parked, err := ParkedGroups(h.agent.store)
	if err != nil || len(parked) != 1 || parked[0].Role != role || !strings.Contains(parked[0].Detail, what) {
		h.t.Fatalf("parked groups = %+v, %v; want role %s parked naming %s", parked, err, role, what)
	}
}

// wantUntouched fails unless the group id is still as seeded (label,
// externalId, no members) and got no write.
func (h *harness) wantUntouched(id, label, externalID string) {
	h.t.Helper()
	g, ok := h.scim.GroupByID(id)
	if !ok || g.DisplayName() != label || g.ExternalID() != externalID || len(g.Members()) != 0 {
		h.t.Fatalf("the server's group %s = %+v (found %v), want it untouched", id, g.Attributes, ok)
	}
	for _, m := range []string{"PATCH", "PUT", "DELETE"} {
		if n := h.scim.CountRequests(m, "/Groups/"+id); n != 0 {
			h.t.Fatalf("%d %s of a group that is not the role's", n, m)
		}
	}
}

// A server without PATCH gets each change of a group as a PUT of the
// whole group; no PATCH is ever sent.
func TestGroupsOnAServerWithoutPATCHAreReplaced(t *testing.T) {
	h := newHarness(t, withGroups(""), withSCIM(scimtest.Options{DisablePatch: true}))
	ctx := context.Background()
	for id, label := range map[string]string{"editor": "Editors", "staff": "Staff"} {
		if err := h.site.CreateRole(ctx, id, label); err != nil {
			t.Fatal(err)
		}
	}
	ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor"}})
	ben := h.create(drupaltest.User{Name: "ben", Status: 1, Roles: []string{"editor"}})
	h.start()
	h.settle()
	h.update(ann, func(u *drupaltest.User) { u.Roles = []string{"staff"} })
	if err := h.site.RenameRole(ctx, "editor", "Rédaction"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if g := h.mustGroup("editor"); !slices.Equal(g.Members(), h.memberIDs(ben)) || g.DisplayName() != "Rédaction" {
		t.Fatalf("editor = %+v, want ben alone, labelled Rédaction", g.Attributes)
	}
	if g := h.mustGroup("staff"); !slices.Equal(g.Members(), h.memberIDs(ann)) {
		t.Fatalf("staff = %+v, want ann", g.Attributes)
	}
	if n := h.scim.CountRequests("PATCH", ""); n != 0 {
		t.Fatalf("%d PATCHes to a server without PATCH", n)
	}
	if n := h.scim.CountRequests("PUT", "/Groups/"); n < 2 {
		t.Fatalf("%d PUT /Groups, want the changes of both groups replaced", n)
	}
}

// A new user holding three roles whose groups exist: one POST /Users,
// then one PATCH of each group, nothing else.
func TestNewUserWithThreeRolesIsOnePOSTAndOnePATCHPerGroup(t *testing.T) {
	h := newHarness(t, withGroups(""))
	ctx := context.Background()
	roles := []string{"editor", "staff", "tester"}
	for _, id := range roles {
		if err := h.site.CreateRole(ctx, id, strings.ToUpper(id)); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	h.settle()
	h.scim.ResetRequests()
	ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: roles})
	h.settle()
	patched := map[string]int{}
	for _, r := range h.scim.Requests() {
		switch {
		case r.Method == "POST" && r.Path == "/Users", r.Method == "GET":
		case r.Method == "PATCH" && strings.HasPrefix(r.Path, "/Groups/"):
			patched[r.Path]++
		default:
			t.Fatalf("unexpected %s %s", r.Method, r.Path)
		}
	}
	if n := h.scim.CountRequests("POST", "/Users"); n != 1 {
		t.Fatalf("%d POST /Users, want 1", n)
	}
	for _, id := range roles {
		g := h.mustGroup(id)
		if patched["/Groups/"+g.ID] != 1 || !slices.Equal(g.Members(), h.memberIDs(ann)) {
			t.Fatalf("group %s: %d PATCHes, members %v; want one PATCH adding ann", id, patched["/Groups/"+g.ID], g.Members())
		}
	}
}

// On a server with ETags a group changed by hand since the agent last
// wrote it answers the agent's next write with 412: the agent reads the
// group again and writes what is still needed (a PATCH, a DELETE, or
// with on_role_delete: keep the emptying PATCH); it never parks the role
// for it.
func TestGroupWritesAfterA412ReadTheGroupAgain(t *testing.T) {
	for _, onDelete := range []string{"delete", "keep"} {
		t.Run(onDelete, func(t *testing.T) {
			h := newHarness(t, withGroups("on_role_delete: "+onDelete), withSCIM(scimtest.Options{ETags: true}))
			ctx := context.Background()
			for id, label := range map[string]string{"editor": "Editors", "staff": "Staff"} {
				if err := h.site.CreateRole(ctx, id, label); err != nil {
					t.Fatal(err)
				}
			}
			ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor"}})
			ben := h.create(drupaltest.User{Name: "ben", Status: 1})
			h.create(drupaltest.User{Name: "carl", Status: 1, Roles: []string{"staff"}})
			h.start()
			h.settle()
			refused := func() int {
				n := 0
				for _, r := range h.groupRequests() {
					if r.Status == 412 {
						n++
					}
				}
				return n
			}

			editor := h.mustGroup("editor")
			h.scim.EditGroup(editor.ID, func(m map[string]any) { m["displayName"] = "Edited by hand" })
			h.update(ben, func(u *drupaltest.User) { u.Roles = []string{"editor"} })
			h.settle()
			if g := h.mustGroup("editor"); !slices.Equal(sortedMembers(g), h.memberIDs(ann, ben)) || g.DisplayName() != "Editors" {
				t.Fatalf("editor = %+v, want ann and ben, labelled Editors again", g.Attributes)
			}

			// By hand: staff relabelled and ben added, who holds no staff
			// role (a member the agent never pushed).
			staff := h.mustGroup("staff")
			h.scim.EditGroup(staff.ID, func(m map[string]any) {
				m["displayName"] = "Staff, edited"
				m["members"] = append(m["members"].([]any), map[string]any{"value": h.mustServerUser(ben).ID})
			})
			if err := h.site.DeleteRole(ctx, "staff"); err != nil {
				t.Fatal(err)
			}
			h.settle()
			g, ok := h.scim.GroupByID(staff.ID)
			switch {
			case onDelete == "delete" && ok:
				t.Fatalf("the deleted role's group is still on the server: %+v", g.Attributes)
			case onDelete == "keep" && (!ok || !slices.Equal(g.Members(), h.memberIDs(ben))):
				t.Fatalf("the deleted role's kept group = %+v (found %v), want it holding only ben, whom the agent never pushed", g.Attributes, ok)
			}
			if parked, err := ParkedGroups(h.agent.store); err != nil || len(parked) != 0 {
				t.Fatalf("parked groups = %+v, %v; want none", parked, err)
			}
			if n := refused(); n < 2 {
				t.Fatalf("%d writes to /Groups answered 412, want the two after the hand edits", n)
			}
		})
	}
}

// TestRoleExplanation: sync --role --explain tells a role's reconcile
// step by step, as it ran: each holder and why it is a member or not,
// the record, the server's copy, the difference, the decision and the
// requests, for a group unchanged, repaired, deleted, not selected and
// created by a dry run.
func TestRoleExplanation(t *testing.T) {
	h := newHarness(t, withGroups("exclude_roles: [hidden]"))
	ctx := context.Background()
	for _, r := range [][2]string{{"editor", "Editors"}, {"hidden", "Hidden"}} {
		if err := h.site.CreateRole(ctx, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	h.scim.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if attrs["userName"] == "refused" {
			return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "userName refused by policy"}
		}
		return nil
	})
	ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor", "hidden"}})
	refused := h.create(drupaltest.User{Name: "refused", Status: 1, Roles: []string{"editor"}})
	h.start()
	h.settle()
	annID := h.mustServerUser(ann).ID
	group := h.mustGroup("editor")
	explain := func(role string, dry bool) (Result, *RoleExplanation, string) {
		t.Helper()
		results, err := h.agent.SyncNow(ctx, Selection{Roles: []string{role}, Explain: true}, dry)
		if err != nil || len(results) != 1 {
			t.Fatalf("SyncNow: %v, %d results", err, len(results))
		}
		res, x := results[0], results[0].ExplainRole
		if x == nil || x.Role != role || x.Decision.Outcome != res.Outcome || x.DryRun != dry {
			t.Fatalf("role %s: %s with explanation %+v", role, res.Outcome, x)
		}
		var text strings.Builder
		if err := x.WriteText(&text); err != nil || !strings.HasPrefix(text.String(), "role "+role+": ") || !strings.Contains(text.String(), "8. Requests") {
			t.Fatalf("role %s: text %v\n%s", role, err, text.String())
		}
		return res, x, text.String()
	}

	res, x, text := explain("editor", false)
	wantHolders := []HolderStep{{UID: ann, Member: true, SCIMID: annID}}
	if len(x.Drupal.Holders) != 2 || x.Drupal.Holders[0] != wantHolders[0] || x.Drupal.Holders[1].UID != refused ||
		x.Drupal.Holders[1].Member || !strings.Contains(x.Drupal.Holders[1].Why, "parked before its account exists") {
		t.Fatalf("holders %+v\n%s", x.Drupal.Holders, text)
	}
	if res.Outcome != Unchanged || !x.Drupal.Found || x.Drupal.Label != "Editors" || !x.Selected || x.Record == nil || x.Record.SCIMID != group.ID ||
		len(x.Server) != 1 || x.Server[0].Path != "/Groups/"+group.ID || x.Difference == nil || x.Difference.Against != "server" ||
		x.Decision.Action != actionNothing || len(x.Requests) != 1 || x.Requests[0].Method != "GET" {
		t.Fatalf("unchanged: %s\n%s", res.Outcome, text)
	}

	// Renamed on the server by hand: the verify finds it and repairs it.
	h.scim.EditGroup(group.ID, func(attrs map[string]any) { attrs["displayName"] = "Renamed by hand" })
	res, x, text = explain("editor", false)
	if res.Outcome != Updated || x.Difference.Label != "Editors" || x.Decision.Action != OpUpdate || !strings.Contains(x.Decision.Why, `the label becomes "Editors"`) ||
		len(x.Requests) != 2 || x.Requests[1].Method != "PATCH" || !strings.Contains(string(x.Requests[1].Body), `"displayName"`) || x.Requests[1].Status != 200 {
		t.Fatalf("repaired: %s\n%s", res.Outcome, text)
	}

	// Not selected: nothing is read or sent.
	res, x, text = explain("hidden", false)
	if res.Outcome != Skipped || x.Selected || x.Drupal.Read || x.Decision.Action != actionNothing || len(x.Requests) != 0 {
		t.Fatalf("not selected: %s\n%s", res.Outcome, text)
	}

	// The agent stopped (sync without a running agent): the role deleted
	// in Drupal, and a new one in a dry run.
	h.stop()
	if err := h.site.DeleteRole(ctx, "editor"); err != nil {
		t.Fatal(err)
	}
	if err := h.site.CreateRole(ctx, "fresh", "Fresh"); err != nil {
		t.Fatal(err)
	}
	h.update(ann, func(u *drupaltest.User) { u.Roles = []string{"fresh"} })
	reconcile := func(role string, dry bool) (Result, *RoleExplanation, string) {
		t.Helper()
		a, err := Open(ctx, Options{Config: h.cfg, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		results, err := a.ReconcileAll(ctx, Selection{Roles: []string{role}, Explain: true}, dry)
		if err != nil || len(results) != 1 || results[0].ExplainRole == nil {
			t.Fatalf("ReconcileAll: %v, %+v", err, results)
		}
		var text strings.Builder
		if err := results[0].ExplainRole.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		return results[0], results[0].ExplainRole, text.String()
	}
	res, x, text = reconcile("editor", false)
	if res.Outcome != Deleted || x.Drupal.Found || x.Decision.Action != OpDelete || len(x.Requests) == 0 ||
		x.Requests[len(x.Requests)-1].Method != "DELETE" || !strings.Contains(text, "no such role: no config row user.role.editor") {
		t.Fatalf("deleted: %s\n%s", res.Outcome, text)
	}
	res, x, text = reconcile("fresh", true)
	if len(h.scim.Groups()) != 0 {
		t.Fatalf("a dry run created a group: %v", h.scim.Groups())
	}
	if res.Outcome != Created || !x.DryRun || x.Decision.Action != OpCreate || x.Difference == nil || x.Difference.Against != "none" ||
		!slices.Equal(x.Difference.Add, []string{annID}) || len(x.Requests) != 1 || x.Requests[0].Sent || x.Requests[0].Method != "POST" ||
		!strings.Contains(text, "not sent (dry run)") {
		t.Fatalf("dry run: %s\n%s", res.Outcome, text)
	}
}

// A POST /Groups answered with a group the server already had (a lenient
// server's 200 with the group that held the displayName, or a 201
// carrying another group) is taken only as after a 409: another role's
// group parks the role and stays as it is. The group nobody manages is
// adopted either way (by the lenient 200, or after the strict 409).
func TestGroupCreateAnsweredWithAnExistingGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts scimtest.Options
		// teamLabel is the label of the second role, whose POST the
		// server answers with staff's group.
		teamLabel string
		// answerWith makes the server answer it so (nil: opts do).
		answerWith func(h *harness, staff scimtest.Group, ann uint32)
	}{
		{"a lenient 200 for a taken displayName", scimtest.Options{LenientCreate: true}, "Staff", nil},
		{"a 201 carrying another group", scimtest.Options{}, "Team", func(h *harness, staff scimtest.Group, ann uint32) {
			answer, err := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "id": staff.ID,
				"displayName": "Staff", "externalId": "staff", "members": []any{map[string]any{"value": h.mustServerUser(ann).ID}}})
			if err != nil {
				h.t.Fatal(err)
			}
			h.scim.RejectGroups(func(method string, attrs map[string]any) *scimtest.Fault {
				if method == "POST" && attrs["displayName"] == "Team" {
					return &scimtest.Fault{Status: 201, Body: answer, ContentType: scimtest.MediaType}
				}
				return nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Token = testToken
			h := newHarness(t, withGroups(""), withSCIM(tc.opts))
			ctx := context.Background()
			seeded := h.scim.SeedGroup(map[string]any{"displayName": "Ops"})
			for _, r := range [][2]string{{"staff", "Staff"}, {"ops", "Ops"}} {
				if err := h.site.CreateRole(ctx, r[0], r[1]); err != nil {
					t.Fatal(err)
				}
			}
			ann := h.create(drupaltest.User{Name: "ann", Status: 1, Roles: []string{"staff", "ops"}})
			h.start()
			h.settle()
			staff := h.mustGroup("staff")
			ops := h.mustGroup("ops")
			if ops.ID != seeded || !slices.Equal(ops.Members(), h.memberIDs(ann)) || ops.ExternalID() != "ops" {
				t.Fatalf("the group nobody managed was not adopted: %+v (seeded %s)", ops, seeded)
			}
			if tc.answerWith != nil {
				tc.answerWith(h, staff, ann)
			}

			if err := h.site.CreateRole(ctx, "team", tc.teamLabel); err != nil {
				t.Fatal(err)
			}
			h.create(drupaltest.User{Name: "bob", Status: 1, Roles: []string{"team"}})
			h.settle()
			if g, _ := h.scim.GroupByID(staff.ID); g.ExternalID() != "staff" || g.DisplayName() != "Staff" || !slices.Equal(g.Members(), h.memberIDs(ann)) {
				t.Fatalf("staff's group was taken over by role team: %+v", g.Attributes)
			}
			if n := len(h.scim.Groups()); n != 2 {
				t.Fatalf("%d groups on the server, want staff's and ops'", n)
			}
			rec, ok, err := h.agent.store.Group("team")
			if err != nil || !ok || rec.SCIMID != "" || rec.Parked == nil || !strings.Contains(rec.Parked.Detail, "which the agent provisions for role staff") {
				t.Fatalf("role team: %+v (%v, %v), want it parked for staff's group", rec, ok, err)
			}
			if staffRec, _, _ := h.agent.store.Group("staff"); staffRec.SCIMID != staff.ID {
				t.Fatalf("role staff's record: %+v", staffRec)
			}
		})
	}
}
