package scimtest

import (
	"net/url"
	"slices"
	"testing"
)

const groupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"

func TestGroups(t *testing.T) {
	srv := New(t, Options{})
	alice := do(t, srv, "POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": "alice"}).str("id")
	bob := do(t, srv, "POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": "bob"}).str("id")

	created := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Editors",
		"externalId": "editor", "members": []any{map[string]any{"value": alice}}})
	if created.status != 201 {
		t.Fatalf("POST /Groups = %d %s", created.status, created.raw)
	}
	id := created.str("id")
	if r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "editors"}); r.status != 409 {
		t.Fatalf("a second group named editors: %d, want 409", r.status)
	}
	if r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Ghosts",
		"members": []any{map[string]any{"value": "no-such-user"}}}); r.status != 400 {
		t.Fatalf("a member that is no user: %d, want 400", r.status)
	}
	patch := func(ops ...map[string]any) reply {
		return do(t, srv, "PATCH", "/Groups/"+id, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops})
	}
	if r := patch(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": bob}}},
		map[string]any{"op": "replace", "path": "displayName", "value": "Rédaction"}); r.status != 200 {
		t.Fatalf("PATCH add = %d %s", r.status, r.raw)
	}
	g, _ := srv.GroupByID(id)
	if !slices.Equal(g.Members(), []string{alice, bob}) || g.DisplayName() != "Rédaction" {
		t.Fatalf("after add: %+v", g.Attributes)
	}
	if r := patch(map[string]any{"op": "remove", "path": `members[value eq "` + alice + `"]`}); r.status != 200 {
		t.Fatalf("PATCH remove = %d %s", r.status, r.raw)
	}
	if g, _ := srv.GroupByID(id); !slices.Equal(g.Members(), []string{bob}) {
		t.Fatalf("after remove: %v", g.Members())
	}
	// A deleted user leaves every group.
	if r := do(t, srv, "DELETE", "/Users/"+bob, nil); r.status != 204 {
		t.Fatal(r.status)
	}
	if g, _ := srv.GroupByID(id); len(g.Members()) != 0 {
		t.Fatalf("members after the user's deletion: %v", g.Members())
	}
	if r := do(t, srv, "GET", "/Groups?filter="+urlQuery(`externalId eq "editor"`), nil); r.status != 200 || r.body["totalResults"] != float64(1) {
		t.Fatalf("filter by externalId: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "DELETE", "/Groups/"+id, nil); r.status != 204 {
		t.Fatal(r.status)
	}
	if r := do(t, srv, "GET", "/Groups/"+id, nil); r.status != 404 {
		t.Fatalf("GET a deleted group: %d", r.status)
	}
}

func TestGroupModes(t *testing.T) {
	srv := New(t, Options{GroupsWithoutMembers: true, MaxMembersPerRequest: 2})
	var users []any
	for _, name := range []string{"a", "b", "c"} {
		users = append(users, map[string]any{"value": do(t, srv, "POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": name}).str("id")})
	}
	if r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Big", "members": users}); r.status != 400 {
		t.Fatalf("3 members with a limit of 2: %d, want 400", r.status)
	}
	r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Big", "members": users[:2]})
	if r.status != 201 {
		t.Fatalf("2 members: %d %s", r.status, r.raw)
	}
	if _, has := r.body["members"]; has {
		t.Fatalf("members answered by a server that keeps them to itself: %s", r.raw)
	}
	if g, _ := srv.GroupByID(r.str("id")); len(g.Members()) != 2 {
		t.Fatalf("stored members: %v", g.Members())
	}
	if got := do(t, srv, "GET", "/Groups/"+r.str("id"), nil); got.body["members"] != nil {
		t.Fatalf("GET answered members: %s", got.raw)
	}
}

// TestGroupsDropMembersOnCreate: such a server keeps no member of a
// POST, not even one it would refuse, and takes them by PATCH.
func TestGroupsDropMembersOnCreate(t *testing.T) {
	srv := New(t, Options{GroupsDropMembersOnCreate: true})
	alice := do(t, srv, "POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": "alice"}).str("id")
	r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Staff",
		"Members": []any{map[string]any{"value": alice}, map[string]any{"value": "no-such-user"}}})
	if r.status != 201 {
		t.Fatalf("POST /Groups = %d %s", r.status, r.raw)
	}
	id := r.str("id")
	if _, has := r.body["members"]; has {
		t.Fatalf("the answer shows members the server dropped: %s", r.raw)
	}
	if g, _ := srv.GroupByID(id); len(g.Members()) != 0 {
		t.Fatalf("stored members of a POST: %v", g.Members())
	}
	if r := do(t, srv, "PATCH", "/Groups/"+id, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": alice}}}}}); r.status != 200 {
		t.Fatalf("PATCH add = %d %s", r.status, r.raw)
	}
	if g, _ := srv.GroupByID(id); !slices.Equal(g.Members(), []string{alice}) {
		t.Fatalf("members after the PATCH: %v", g.Members())
	}
}

const userSchema = "urn:ietf:params:scim:schemas:core:2.0:User"

func urlQuery(s string) string { return url.QueryEscape(s) }

func TestUniqueGroupExternalID(t *testing.T) {
	for _, unique := range []bool{false, true} {
		srv := New(t, Options{UniqueGroupExternalID: unique})
		if r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Staff", "externalId": "staff"}); r.status != 201 {
			t.Fatalf("first group: %d %s", r.status, r.raw)
		}
		want := 201
		if unique {
			want = 409
		}
		if r := do(t, srv, "POST", "/Groups", map[string]any{"schemas": []string{groupSchema}, "displayName": "Team", "externalId": "staff"}); r.status != want {
			t.Fatalf("UniqueGroupExternalID %v: a second group with externalId staff = %d, want %d", unique, r.status, want)
		}
	}
}

// TestRejectGroups: the hook refuses the groups it names, on POST and
// PUT, and lets the others and every user through.
func TestRejectGroups(t *testing.T) {
	srv := New(t, Options{})
	var methods []string
	srv.RejectGroups(func(method string, attrs map[string]any) *Fault {
		methods = append(methods, method)
		if attrs["displayName"] == "Refused" {
			return &Fault{Status: 400, ScimType: "invalidValue", Detail: "displayName refused by policy"}
		}
		return nil
	})
	group := func(name string) map[string]any {
		return map[string]any{"schemas": []string{groupSchema}, "displayName": name}
	}
	wantSCIMError(t, do(t, srv, "POST", "/Groups", group("Refused")), 400, "invalidValue")
	ok := do(t, srv, "POST", "/Groups", group("Fine"))
	wantStatus(t, ok, 201)
	id, _ := ok.body["id"].(string)
	wantSCIMError(t, do(t, srv, "PUT", "/Groups/"+id, group("Refused")), 400, "invalidValue")
	if g, found := srv.GroupByID(id); !found || g.DisplayName() != "Fine" {
		t.Fatalf("the refused PUT changed the group: %+v", g)
	}
	wantStatus(t, do(t, srv, "POST", "/Users", userBody("someone")), 201)
	if want := []string{"POST", "POST", "PUT"}; !slices.Equal(methods, want) {
		t.Fatalf("hook called for %v, want %v (groups only)", methods, want)
	}
	srv.RejectGroups(nil)
	wantStatus(t, do(t, srv, "POST", "/Groups", group("Refused")), 201)
}

// TestNoGroups: a server of Users only answers 404 on /Groups.
func TestNoGroups(t *testing.T) {
	for _, noGroups := range []bool{false, true} {
		srv := New(t, Options{NoGroups: noGroups})
		want := 200
		if noGroups {
			want = 404
		}
		if r := do(t, srv, "GET", "/Groups?startIndex=1&count=1", nil); r.status != want {
			t.Fatalf("NoGroups %v: GET /Groups = %d %s, want %d", noGroups, r.status, r.raw, want)
		}
		if r := do(t, srv, "GET", "/Users?startIndex=1&count=1", nil); r.status != 200 {
			t.Fatalf("NoGroups %v: GET /Users = %d %s", noGroups, r.status, r.raw)
		}
	}
}
