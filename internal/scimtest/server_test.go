package scimtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

// reply is a decoded answer.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r reply) str(key string) string { s, _ := r.body[key].(string); return s }

// do sends a well-formed request (token, SCIM media types); mods adjust it.
func do(t *testing.T, srv *Server, method, path string, body any, mods ...func(*http.Request)) reply {
	t.Helper()
	rep, err := tryDo(srv, http.DefaultClient, method, path, body, mods...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return rep
}

func tryDo(srv *Server, hc *http.Client, method, path string, body any, mods ...func(*http.Request)) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	req.Header.Set("Accept", "application/scim+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for _, m := range mods {
		m(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rep.body); err != nil {
			return reply{}, fmt.Errorf("answer %d is not JSON: %v: %s", resp.StatusCode, err, raw)
		}
	}
	return rep, nil
}

func header(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

func userBody(name string, extra ...any) map[string]any {
	b := map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": name,
		"active":   true,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

func patchBody(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
}

func wantStatus(t *testing.T, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
}

func wantSCIMError(t *testing.T, r reply, status int, scimType string) {
	t.Helper()
	wantStatus(t, r, status)
	if got := r.str("status"); got != fmt.Sprint(status) {
		t.Errorf("error body status %q, want %q (a string)", got, fmt.Sprint(status))
	}
	if schemas, _ := r.body["schemas"].([]any); len(schemas) != 1 || schemas[0] != errorSchema {
		t.Errorf("error body schemas %v", r.body["schemas"])
	}
	if scimType != "" && r.str("scimType") != scimType {
		t.Errorf("scimType %q, want %q (detail %q)", r.str("scimType"), scimType, r.str("detail"))
	}
}

func TestCRUDRoundTrip(t *testing.T) {
	srv := New(t, Options{})

	created := do(t, srv, "POST", "/Users", userBody("alice@example.com", "externalId", "u-1",
		"emails", []any{map[string]any{"value": "alice@example.com", "type": "work", "primary": true}}))
	wantStatus(t, created, http.StatusCreated)
	id := created.str("id")
	if len(id) != 36 {
		t.Fatalf("id %q is not a UUID", id)
	}
	if loc := created.header.Get("Location"); loc != srv.URL+"/Users/"+id {
		t.Errorf("Location %q", loc)
	}
	if ct := created.header.Get("Content-Type"); ct != MediaType {
		t.Errorf("Content-Type %q", ct)
	}
	meta, _ := created.body["meta"].(map[string]any)
	for _, k := range []string{"created", "lastModified", "version", "location"} {
		if meta[k] == nil || meta[k] == "" {
			t.Errorf("meta.%s missing: %v", k, meta)
		}
	}

	got := do(t, srv, "GET", "/Users/"+id, nil)
	wantStatus(t, got, http.StatusOK)
	if got.str("userName") != "alice@example.com" || got.str("externalId") != "u-1" {
		t.Errorf("GET answered %s", got.raw)
	}

	put := do(t, srv, "PUT", "/Users/"+id, userBody("alice@example.com", "externalId", "u-1", "active", false, "displayName", "Alice"))
	wantStatus(t, put, http.StatusOK)
	u, _ := srv.UserByID(id)
	if u.Get("active") != false || u.Get("displayName") != "Alice" || u.Get("emails") != nil {
		t.Errorf("after PUT the store holds %v", u.Attributes)
	}
	if u.Version == meta["version"] {
		t.Errorf("PUT kept version %q", u.Version)
	}

	patched := do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "active", "value": true}))
	wantStatus(t, patched, http.StatusOK)
	if patched.body["active"] != true {
		t.Errorf("PATCH answered %s", patched.raw)
	}

	wantStatus(t, do(t, srv, "DELETE", "/Users/"+id, nil), http.StatusNoContent)
	for _, m := range []string{"GET", "DELETE", "PUT", "PATCH"} {
		var body any
		switch m {
		case "PUT":
			body = userBody("alice@example.com")
		case "PATCH":
			body = patchBody(map[string]any{"op": "replace", "path": "active", "value": true})
		}
		wantSCIMError(t, do(t, srv, m, "/Users/"+id, body), http.StatusNotFound, "")
	}
	if len(srv.Users()) != 0 {
		t.Errorf("users left: %v", srv.Users())
	}
}

func TestDiscoveryEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		patch bool
	}{
		{"patch on", Options{MaxResults: 7}, true},
		{"patch off", Options{DisablePatch: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(t, tc.opts)
			spc := do(t, srv, "GET", "/ServiceProviderConfig", nil)
			wantStatus(t, spc, http.StatusOK)
			patch, _ := spc.body["patch"].(map[string]any)
			if patch["supported"] != tc.patch {
				t.Errorf("patch.supported = %v, want %v", patch["supported"], tc.patch)
			}
			filter, _ := spc.body["filter"].(map[string]any)
			if filter["supported"] != true {
				t.Errorf("filter = %v", filter)
			}
			if tc.opts.MaxResults != 0 && filter["maxResults"] != float64(tc.opts.MaxResults) {
				t.Errorf("filter.maxResults = %v", filter["maxResults"])
			}
			wantStatus(t, do(t, srv, "GET", "/Schemas", nil), http.StatusOK)
			rt := do(t, srv, "GET", "/ResourceTypes", nil)
			wantStatus(t, rt, http.StatusOK)
			if !strings.Contains(string(rt.raw), enterprise) {
				t.Errorf("ResourceTypes lacks the enterprise extension: %s", rt.raw)
			}
			if !tc.patch {
				id := srv.Seed(map[string]any{"userName": "bob"})
				r := do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "active", "value": false}))
				wantSCIMError(t, r, http.StatusMethodNotAllowed, "")
			}
		})
	}
}

func TestFilter(t *testing.T) {
	srv := New(t, Options{})
	alice := srv.Seed(map[string]any{"userName": "Alice@Example.com", "externalId": "ext-1",
		enterprise: map[string]any{"employeeNumber": "42"}})
	obrien := srv.Seed(map[string]any{"userName": `o"brien`, "externalId": "ext-2"})
	slash := srv.Seed(map[string]any{"userName": `back\slash`})
	zoe := srv.Seed(map[string]any{"userName": "zoë", "emails": []any{map[string]any{"value": "zoe@example.com", "type": "work"}}})

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{`userName eq "alice@example.com"`, []string{alice}},
		{`USERNAME eq "ALICE@EXAMPLE.COM"`, []string{alice}},
		{`externalId eq "ext-1"`, []string{alice}},
		{`externalId eq "EXT-1"`, nil}, // externalId is caseExact
		{`userName eq "o\"brien"`, []string{obrien}},
		{`userName eq "back\\slash"`, []string{slash}},
		{`userName eq "zoë"`, []string{zoe}},
		{`userName eq "zo\u00EB"`, []string{zoe}},
		{`userName eq "nobody"`, nil},
		{`emails[type eq "work" and value eq "zoe@example.com"]`, []string{zoe}},
		{`emails.value eq "zoe@example.com"`, []string{zoe}},
		{`emails.value eq "nobody@example.com"`, nil},
		{`not (emails.value eq "zoe@example.com") and userName eq "zoë"`, nil},
		{`emails.type eq "work" and userName pr`, []string{zoe}},
		{enterprise + `:employeeNumber eq "42"`, []string{alice}},
		{`userName sw "o" or userName eq "zoë"`, []string{obrien, zoe}},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			r := do(t, srv, "GET", "/Users?filter="+url.QueryEscape(tc.filter), nil)
			wantStatus(t, r, http.StatusOK)
			if r.body["totalResults"] != float64(len(tc.want)) {
				t.Fatalf("totalResults %v, want %d: %s", r.body["totalResults"], len(tc.want), r.raw)
			}
			res, _ := r.body["Resources"].([]any)
			for i, id := range tc.want {
				if got, _ := res[i].(map[string]any)["id"].(string); got != id {
					t.Errorf("Resources[%d].id = %q, want %q", i, got, id)
				}
			}
		})
	}
	for _, bad := range []string{`userName eq`, `userName eq alice`, `nosuch eq "x"`} {
		wantSCIMError(t, do(t, srv, "GET", "/Users?filter="+url.QueryEscape(bad), nil), http.StatusBadRequest, "invalidFilter")
	}
}

func TestPagination(t *testing.T) {
	srv := New(t, Options{MaxResults: 3})
	var ids []string
	for i := range 5 {
		ids = append(ids, srv.Seed(map[string]any{"userName": fmt.Sprintf("user%d", i)}))
	}
	for _, tc := range []struct {
		query        string
		wantIDs      []string
		wantStart    float64
		wantPageSize float64
	}{
		{"startIndex=1&count=2", ids[0:2], 1, 2},
		{"startIndex=2&count=2", ids[1:3], 2, 2},
		{"startIndex=5&count=2", ids[4:5], 5, 2},
		{"startIndex=9&count=2", nil, 9, 2},
		{"startIndex=1&count=10", ids[0:3], 1, 3}, // capped at MaxResults
		{"", ids[0:3], 1, 3},
		{"startIndex=0&count=0", nil, 1, 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := do(t, srv, "GET", "/Users?"+tc.query, nil)
			wantStatus(t, r, http.StatusOK)
			if r.body["totalResults"] != float64(5) || r.body["startIndex"] != tc.wantStart || r.body["itemsPerPage"] != tc.wantPageSize {
				t.Errorf("totalResults %v startIndex %v itemsPerPage %v", r.body["totalResults"], r.body["startIndex"], r.body["itemsPerPage"])
			}
			res, _ := r.body["Resources"].([]any)
			if len(res) != len(tc.wantIDs) {
				t.Fatalf("%d resources, want %d", len(res), len(tc.wantIDs))
			}
			for i, id := range tc.wantIDs {
				if res[i].(map[string]any)["id"] != id {
					t.Errorf("Resources[%d] = %v, want %s", i, res[i].(map[string]any)["id"], id)
				}
			}
		})
	}
}

func TestUniquenessIsCaseInsensitive(t *testing.T) {
	srv := New(t, Options{})
	wantStatus(t, do(t, srv, "POST", "/Users", userBody("alice@example.com")), http.StatusCreated)
	wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("ALICE@example.com")), http.StatusConflict, "uniqueness")

	bob := do(t, srv, "POST", "/Users", userBody("bob@example.com"))
	wantStatus(t, bob, http.StatusCreated)
	id := bob.str("id")
	wantSCIMError(t, do(t, srv, "PUT", "/Users/"+id, userBody("Alice@Example.com")), http.StatusConflict, "uniqueness")
	wantSCIMError(t, do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "userName", "value": "alice@EXAMPLE.com"})),
		http.StatusConflict, "uniqueness")
	// Its own name in another case is not a conflict.
	wantStatus(t, do(t, srv, "PUT", "/Users/"+id, userBody("BOB@example.com")), http.StatusOK)
	if len(srv.Users()) != 2 {
		t.Errorf("%d users, want 2", len(srv.Users()))
	}
}

func TestStrictness(t *testing.T) {
	srv := New(t, Options{})
	id := srv.Seed(map[string]any{"userName": "seeded", "active": true})
	noAuth := func(r *http.Request) { r.Header.Del("Authorization") }
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		body     any
		mod      func(*http.Request)
		status   int
		scimType string
	}{
		{"no token", "GET", "/Users", nil, noAuth, 401, ""},
		{"wrong token", "GET", "/Users", nil, header("Authorization", "Bearer nope"), 401, ""},
		{"basic auth", "GET", "/Users", nil, header("Authorization", "Basic dGVzdC10b2tlbg=="), 401, ""},
		{"no token on discovery", "GET", "/ServiceProviderConfig", nil, noAuth, 401, ""},
		{"application/json body", "POST", "/Users", userBody("a"), header("Content-Type", "application/json"), 415, ""},
		{"no content type", "POST", "/Users", userBody("a"), func(r *http.Request) { r.Header.Del("Content-Type") }, 415, ""},
		{"json patch", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "remove", "path": "active"}), header("Content-Type", "application/json"), 415, ""},
		{"html accept", "GET", "/Users", nil, header("Accept", "text/html"), 406, ""},
		{"id in POST", "POST", "/Users", userBody("a", "id", "x"), nil, 400, "mutability"},
		{"meta in POST", "POST", "/Users", userBody("a", "meta", map[string]any{"resourceType": "User"}), nil, 400, "mutability"},
		{"id in PUT", "PUT", "/Users/" + id, userBody("seeded", "id", id), nil, 400, "mutability"},
		{"meta in PUT", "PUT", "/Users/" + id, userBody("seeded", "Meta", map[string]any{}), nil, 400, "mutability"},
		{"schemas as a string", "POST", "/Users", `{"schemas":"urn:ietf:params:scim:schemas:core:2.0:User","userName":"a"}`, nil, 400, "invalidSyntax"},
		{"no schemas", "POST", "/Users", `{"userName":"a"}`, nil, 400, "invalidSyntax"},
		{"extension not in schemas", "POST", "/Users", userBody("a", enterprise, map[string]any{"department": "x"}), nil, 400, "invalidSyntax"},
		{"no userName", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`, nil, 400, "invalidValue"},
		{"empty userName", "POST", "/Users", userBody(""), nil, 400, "invalidValue"},
		{"boolean as a string", "POST", "/Users", userBody("a", "active", "False"), nil, 400, "invalidValue"},
		{"not JSON", "POST", "/Users", `{"schemas":`, nil, 400, "invalidSyntax"},
		{"Entra-style op", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "Replace", "path": "active", "value": false}), nil, 400, "invalidSyntax"},
		{"string boolean in PATCH", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "active", "value": "False"}), nil, 400, "invalidValue"},
		{"PATCH without PatchOp schema", "PATCH", "/Users/" + id, `{"Operations":[{"op":"remove","path":"active"}]}`, nil, 400, "invalidValue"},
		{"PATCH of id", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "replace", "path": "id", "value": "x"}), nil, 400, "invalidPath"},
		{"remove without path", "PATCH", "/Users/" + id, patchBody(map[string]any{"op": "remove"}), nil, 400, "noTarget"},
		{"outside the base", "GET", "/../other", nil, nil, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*http.Request)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			wantSCIMError(t, do(t, srv, tc.method, tc.path, tc.body, mods...), tc.status, tc.scimType)
		})
	}
	if n := len(srv.Users()); n != 1 {
		t.Errorf("%d users after refused requests, want 1", n)
	}
	u, _ := srv.UserByID(id)
	if u.Get("active") != true || u.UserName() != "seeded" {
		t.Errorf("refused requests changed the account: %v", u.Attributes)
	}
	// A charset parameter and the lower-case Bearer scheme are fine.
	r := do(t, srv, "POST", "/Users", userBody("ok"), header("Content-Type", "application/scim+json; charset=utf-8"),
		header("Authorization", "bearer "+srv.Token), header("Accept", "application/json"))
	wantStatus(t, r, http.StatusCreated)
}

func TestPatchOperations(t *testing.T) {
	workEmails := []any{
		map[string]any{"value": "a@work.example", "type": "work", "primary": true},
		map[string]any{"value": "a@home.example", "type": "home"},
	}
	for _, tc := range []struct {
		name  string
		ops   []map[string]any
		check func(t *testing.T, u User)
	}{
		{"replace simple", []map[string]any{{"op": "replace", "path": "displayName", "value": "Ann"}},
			func(t *testing.T, u User) { eq(t, u.Get("displayName"), "Ann") }},
		{"replace sub-attribute", []map[string]any{{"op": "replace", "path": "name.givenName", "value": "Ann"}},
			func(t *testing.T, u User) {
				eq(t, u.Get("name.givenName"), "Ann")
				eq(t, u.Get("name.familyName"), "Smith")
			}},
		{"replace complex merges", []map[string]any{{"op": "replace", "path": "name", "value": map[string]any{"givenName": "Ann"}}},
			func(t *testing.T, u User) {
				eq(t, u.Get("name.givenName"), "Ann")
				eq(t, u.Get("name.familyName"), "Smith")
			}},
		{"replace multi-valued", []map[string]any{{"op": "replace", "path": "emails", "value": []any{map[string]any{"value": "new@example.com", "type": "work"}}}},
			func(t *testing.T, u User) { eq(t, len(u.Get("emails").([]any)), 1) }},
		{"add multi-valued appends", []map[string]any{{"op": "add", "path": "emails", "value": []any{map[string]any{"value": "new@example.com", "type": "other"}}}},
			func(t *testing.T, u User) { eq(t, len(u.Get("emails").([]any)), 3) }},
		{"replace with filter", []map[string]any{{"op": "replace", "path": `emails[type eq "work"].value`, "value": "b@work.example"}},
			func(t *testing.T, u User) {
				e := u.Get("emails").([]any)
				eq(t, e[0].(map[string]any)["value"], "b@work.example")
				eq(t, e[1].(map[string]any)["value"], "a@home.example")
			}},
		{"remove with filter", []map[string]any{{"op": "remove", "path": `emails[type eq "home"]`}},
			func(t *testing.T, u User) { eq(t, len(u.Get("emails").([]any)), 1) }},
		{"remove attribute", []map[string]any{{"op": "remove", "path": "emails"}, {"op": "remove", "path": "name.givenName"}},
			func(t *testing.T, u User) {
				eq(t, u.Get("emails"), nil)
				eq(t, u.Get("name.givenName"), nil)
				eq(t, u.Get("name.familyName"), "Smith")
			}},
		{"extension path", []map[string]any{{"op": "add", "path": enterprise + ":department", "value": "R&D"}},
			func(t *testing.T, u User) {
				eq(t, u.Get(enterprise+":department"), "R&D")
				eq(t, u.Get(enterprise+":employeeNumber"), "7")
			}},
		{"remove last extension attribute", []map[string]any{{"op": "remove", "path": enterprise + ":employeeNumber"}},
			func(t *testing.T, u User) { eq(t, u.Get(enterprise), nil) }},
		{"no path", []map[string]any{{"op": "replace", "value": map[string]any{"active": false, "name.givenName": "Ann", enterprise: map[string]any{"costCenter": "9"}}}},
			func(t *testing.T, u User) {
				eq(t, u.Get("active"), false)
				eq(t, u.Get("name.givenName"), "Ann")
				eq(t, u.Get(enterprise+":costCenter"), "9")
				eq(t, u.Get(enterprise+":employeeNumber"), "7")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(t, Options{})
			id := srv.Seed(map[string]any{"userName": "ann", "active": true, "emails": workEmails,
				"name": map[string]any{"givenName": "Anne", "familyName": "Smith"}, enterprise: map[string]any{"employeeNumber": "7"}})
			ops := make([]map[string]any, len(tc.ops))
			copy(ops, tc.ops)
			wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, patchBody(ops...)), http.StatusOK)
			u, _ := srv.UserByID(id)
			tc.check(t, u)
		})
	}

	t.Run("no match is noTarget", func(t *testing.T) {
		srv := New(t, Options{})
		id := srv.Seed(map[string]any{"userName": "ann", "emails": workEmails})
		r := do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": `emails[type eq "other"].value`, "value": "x@y"}))
		wantSCIMError(t, r, http.StatusBadRequest, "noTarget")
	})
	t.Run("PatchNoContent answers 204", func(t *testing.T) {
		srv := New(t, Options{PatchNoContent: true})
		id := srv.Seed(map[string]any{"userName": "ann"})
		r := do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "add", "path": "active", "value": false}))
		wantStatus(t, r, http.StatusNoContent)
		if len(r.raw) != 0 {
			t.Errorf("204 with a body: %s", r.raw)
		}
		u, _ := srv.UserByID(id)
		eq(t, u.Get("active"), false)
	})
}

func eq(t *testing.T, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestFaults(t *testing.T) {
	srv := New(t, Options{})
	id := srv.Seed(map[string]any{"userName": "ann"})

	t.Run("status with Retry-After, Times", func(t *testing.T) {
		srv.Inject(Fault{Method: "GET", PathPrefix: "/Users", Times: 2, Status: 429, RetryAfter: "1", Detail: "slow down"})
		for range 2 {
			r := do(t, srv, "GET", "/Users/"+id, nil)
			wantSCIMError(t, r, http.StatusTooManyRequests, "")
			if r.header.Get("Retry-After") != "1" || r.str("detail") != "slow down" {
				t.Errorf("Retry-After %q detail %q", r.header.Get("Retry-After"), r.str("detail"))
			}
		}
		wantStatus(t, do(t, srv, "GET", "/Users/"+id, nil), http.StatusOK)
	})
	t.Run("method and path must match", func(t *testing.T) {
		srv.Inject(Fault{Method: "POST", PathPrefix: "/Users", Times: 1, Status: 500})
		wantStatus(t, do(t, srv, "GET", "/Users/"+id, nil), http.StatusOK)
		wantStatus(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), http.StatusOK)
		wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("x")), 500, "")
		wantStatus(t, do(t, srv, "POST", "/Users", userBody("x")), http.StatusCreated)
	})
	t.Run("Times 0 lasts until cleared", func(t *testing.T) {
		srv.Inject(Fault{Status: 503})
		for range 3 {
			wantStatus(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), 503)
		}
		srv.ClearFaults()
		wantStatus(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), 200)
	})
	t.Run("latency", func(t *testing.T) {
		srv.ResetRequests()
		srv.Inject(Fault{Times: 1, Latency: 50 * time.Millisecond})
		wantStatus(t, do(t, srv, "GET", "/Users/"+id, nil), http.StatusOK)
		reqs := srv.Requests()
		if len(reqs) != 1 || reqs[0].Duration < 50*time.Millisecond || !reqs[0].Faulted {
			t.Errorf("requests %+v", reqs)
		}
	})
	t.Run("latency ends when the client goes away", func(t *testing.T) {
		own := New(t, Options{}) // its Close (in Cleanup) would wait an hour if the handler did not end
		own.Inject(Fault{Times: 1, Latency: time.Hour})
		hc := &http.Client{Timeout: 50 * time.Millisecond}
		if _, err := tryDo(own, hc, "GET", "/ServiceProviderConfig", nil); err == nil {
			t.Fatal("no timeout")
		}
	})
	t.Run("stalled body", func(t *testing.T) {
		body := []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[]}`)
		srv.Inject(Fault{Times: 1, Status: 200, Body: body, ContentType: "application/scim+json", StallBody: 50 * time.Millisecond})
		start := time.Now()
		rep := do(t, srv, "GET", "/Users", nil)
		wantStatus(t, rep, http.StatusOK)
		if !bytes.Equal(rep.raw, body) || time.Since(start) < 50*time.Millisecond {
			t.Errorf("after %v: body %s, want %s after the stall", time.Since(start), rep.raw, body)
		}
	})
	t.Run("stalled body ends when the client goes away", func(t *testing.T) {
		own := New(t, Options{}) // its Close (in Cleanup) would wait an hour if the handler did not end
		own.Inject(Fault{Times: 1, Status: 200, Body: []byte(`{"id":"x"}`), StallBody: time.Hour})
		hc := &http.Client{Timeout: 50 * time.Millisecond}
		if _, err := tryDo(own, hc, "GET", "/ServiceProviderConfig", nil); err == nil {
			t.Fatal("no timeout")
		}
	})
	t.Run("drop", func(t *testing.T) {
		srv.ResetRequests()
		srv.Inject(Fault{Method: "POST", Times: 1, Drop: true})
		_, err := tryDo(srv, http.DefaultClient, "POST", "/Users", userBody("dropped"))
		if err == nil {
			t.Fatal("a dropped connection gave an answer")
		}
		if _, ok := srv.UserByUserName("dropped"); ok {
			t.Error("a dropped request was applied")
		}
		if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].Status != 0 || !reqs[0].Faulted {
			t.Errorf("requests %+v", reqs)
		}
	})
	t.Run("lost response", func(t *testing.T) {
		srv.Inject(Fault{Method: "POST", Times: 1, DropResponse: true})
		if _, err := tryDo(srv, http.DefaultClient, "POST", "/Users", userBody("lost")); err == nil {
			t.Fatal("a lost response arrived")
		}
		if _, ok := srv.UserByUserName("lost"); !ok {
			t.Error("the request whose response was lost was not applied")
		}
		wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("lost")), http.StatusConflict, "uniqueness")
	})
	t.Run("held answer", func(t *testing.T) {
		srv.ResetRequests()
		srv.Inject(Fault{Method: "POST", Times: 1, Hold: time.Minute})
		impatient := &http.Client{Timeout: 300 * time.Millisecond}
		if _, err := tryDo(srv, impatient, "POST", "/Users", userBody("held")); err == nil {
			t.Fatal("a held answer arrived within the hold")
		}
		if _, ok := srv.UserByUserName("held"); !ok {
			t.Error("the request whose answer was held was not applied")
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.Requests()[0].Duration == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the handler ends when it sees the client gone
		}
		if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].Status != 0 || !reqs[0].Faulted || reqs[0].Duration == 0 {
			t.Errorf("requests %+v: want one, faulted, ended with status 0", reqs)
		}

		srv.Inject(Fault{Method: "POST", Times: 1, Hold: 50 * time.Millisecond})
		start := time.Now()
		wantStatus(t, do(t, srv, "POST", "/Users", userBody("held-briefly")), http.StatusCreated)
		if waited := time.Since(start); waited < 50*time.Millisecond {
			t.Errorf("answered after %v, within the hold", waited)
		}
	})
	t.Run("raw body", func(t *testing.T) {
		srv.Inject(Fault{Times: 1, Status: 502, Body: []byte("<html>Bad Gateway</html>")})
		r, err := tryDo(srv, http.DefaultClient, "GET", "/ServiceProviderConfig", nil)
		if err == nil || r.status != 0 {
			// tryDo insists on JSON: the HTML page must have come through.
			t.Fatalf("status %d err %v", r.status, err)
		}
		if !strings.Contains(err.Error(), "Bad Gateway") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("SetDown", func(t *testing.T) {
		srv.SetDown(true)
		wantSCIMError(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), 503, "")
		srv.SetDown(false)
		wantStatus(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), 200)
	})
}

func TestReject(t *testing.T) {
	srv := New(t, Options{})
	var methods []string
	srv.Reject(func(method string, attrs map[string]any) *Fault {
		methods = append(methods, method)
		for _, e := range asList(attrs["emails"]) {
			if e.(map[string]any)["value"] == "bad@example.com" {
				return &Fault{Detail: "mail domain refused"}
			}
		}
		return nil
	})
	bad := []any{map[string]any{"value": "bad@example.com"}}
	r := do(t, srv, "POST", "/Users", userBody("bad", "emails", bad))
	wantSCIMError(t, r, http.StatusBadRequest, "invalidValue")
	if r.str("detail") != "mail domain refused" {
		t.Errorf("detail %q", r.str("detail"))
	}
	good := do(t, srv, "POST", "/Users", userBody("good", "emails", []any{map[string]any{"value": "good@example.com"}}))
	wantStatus(t, good, http.StatusCreated)
	id := good.str("id")
	wantSCIMError(t, do(t, srv, "PUT", "/Users/"+id, userBody("good", "emails", bad)), 400, "invalidValue")
	wantSCIMError(t, do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "add", "path": "emails", "value": bad})), 400, "invalidValue")
	u, _ := srv.UserByID(id)
	eq(t, len(u.Get("emails").([]any)), 1)
	eq(t, strings.Join(methods, ","), "POST,POST,PUT,PATCH")

	srv.Reject(func(string, map[string]any) *Fault { return &Fault{Status: 503, RetryAfter: "2"} })
	r = do(t, srv, "POST", "/Users", userBody("other"))
	wantSCIMError(t, r, 503, "")
	eq(t, r.header.Get("Retry-After"), "2")
	srv.Reject(nil)
	wantStatus(t, do(t, srv, "POST", "/Users", userBody("other")), http.StatusCreated)
}

func TestRequestLog(t *testing.T) {
	srv := New(t, Options{})
	body := userBody("ann")
	do(t, srv, "POST", "/Users", body, header("X-Trace", "1"))
	do(t, srv, "GET", "/Users?filter="+url.QueryEscape(`userName eq "ann"`), nil)
	do(t, srv, "GET", "/Users", nil, header("Authorization", "Bearer wrong"))

	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	post := reqs[0]
	eq(t, post.Method, "POST")
	eq(t, post.Path, "/Users")
	eq(t, post.Status, 201)
	eq(t, post.ContentType, "application/scim+json")
	eq(t, post.JSON()["userName"], "ann")
	eq(t, post.Header.Get("X-Trace"), "1")
	eq(t, reqs[1].Query.Get("filter"), `userName eq "ann"`)
	eq(t, reqs[2].Status, 401)
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the log kept the Authorization header: %v", r.Header)
		}
		if r.Time.IsZero() || r.Faulted {
			t.Errorf("request %+v", r)
		}
	}
	eq(t, srv.CountRequests("GET", "/Users"), 2)
	eq(t, srv.CountRequests("", ""), 3)
	eq(t, srv.CountRequests("post", "/Users"), 1)
	srv.ResetRequests()
	eq(t, len(srv.Requests()), 0)
}

func TestSeedEditRemove(t *testing.T) {
	srv := New(t, Options{})
	id := srv.Seed(map[string]any{"id": "fixed-id", "username": "Ann", "meta": map[string]any{"x": 1},
		"emails": []map[string]any{{"value": "ann@example.com"}}})
	eq(t, id, "fixed-id")
	u, ok := srv.UserByUserName("ANN")
	if !ok || u.ID != id || u.Attributes["userName"] != "Ann" || u.Attributes["meta"] != nil {
		t.Fatalf("seeded %+v", u)
	}
	before := u.Version
	if !srv.Edit(id, func(a map[string]any) { a["active"] = false }) {
		t.Fatal("Edit found no account")
	}
	u, _ = srv.UserByID(id)
	if u.Get("active") != false || u.Version == before {
		t.Errorf("after Edit %+v", u)
	}
	got := do(t, srv, "GET", "/Users/"+id, nil)
	eq(t, got.body["active"], false)
	if srv.CountRequests("", "") != 1 {
		t.Error("Seed or Edit recorded a request")
	}
	if !srv.Remove(id) || srv.Remove(id) || srv.Edit(id, func(map[string]any) {}) {
		t.Error("Remove/Edit of a removed account")
	}
	wantSCIMError(t, do(t, srv, "GET", "/Users/"+id, nil), 404, "")
}

func TestTLS(t *testing.T) {
	srv := New(t, Options{TLS: true})
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", srv.URL)
	}
	_, err := tryDo(srv, &http.Client{Transport: &http.Transport{}}, "GET", "/ServiceProviderConfig", nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unverified certificate was accepted: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()}}}
	r, err := tryDo(srv, hc, "GET", "/ServiceProviderConfig", nil)
	if err != nil || r.status != 200 {
		t.Fatalf("with the CA: %v %v", r.status, err)
	}
	if !bytes.Contains(srv.CACertPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Error("CACertPEM is not PEM")
	}
	if New(t, Options{}).CertPool() != nil {
		t.Error("a plain server has a CertPool")
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:0"} {
		if s, err := Start(Options{Addr: addr}); err == nil {
			s.Close()
			t.Errorf("Start listened on %s", addr)
		}
	}
	s, err := Start(Options{Addr: "localhost:0", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eq(t, s.Token, "tok")
}

// TestWorkPerRequest: a server that spends CPU on each SCIM request
// answers exactly as one that does not, and spends it on every request.
func TestWorkPerRequest(t *testing.T) {
	srv := New(t, Options{WorkPerRequest: 500})
	created := do(t, srv, "POST", "/Users", userBody("worker"))
	wantStatus(t, created, http.StatusCreated)
	wantStatus(t, do(t, srv, "GET", "/Users/"+created.str("id"), nil), http.StatusOK)
	wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("WORKER")), http.StatusConflict, "uniqueness")
	if n := srv.UserCount(); n != 1 {
		t.Fatalf("UserCount() = %d, want 1", n)
	}
	if got := srv.worked.Load(); got != 3*500 {
		t.Fatalf("%d rounds spent, want 500 for each of 3 requests", got)
	}
}

// TestWaitPerWrite: a server that waits after each write (a database
// commit) answers as one that does not, and waits for writes only.
func TestWaitPerWrite(t *testing.T) {
	const wait = 20 * time.Millisecond
	srv := New(t, Options{WaitPerWrite: wait})
	start := time.Now()
	created := do(t, srv, "POST", "/Users", userBody("waiter"))
	wantStatus(t, created, http.StatusCreated)
	if took := time.Since(start); took < wait {
		t.Fatalf("the POST was answered after %s, before its %s commit wait", took, wait)
	}
	wantStatus(t, do(t, srv, "GET", "/Users/"+created.str("id"), nil), http.StatusOK)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+created.str("id"), patchBody(map[string]any{"op": "replace", "path": "active", "value": false})), http.StatusOK)
	wantStatus(t, do(t, srv, "DELETE", "/Users/"+created.str("id"), ""), http.StatusNoContent)
	if n := srv.waited.Load(); n != 3 {
		t.Fatalf("%d writes waited, want the POST, PATCH and DELETE", n)
	}
}
