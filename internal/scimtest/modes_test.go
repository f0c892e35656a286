package scimtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestETags(t *testing.T) {
	srv := New(t, Options{ETags: true})
	spc := do(t, srv, "GET", "/ServiceProviderConfig", nil)
	if e, _ := spc.body["etag"].(map[string]any); e["supported"] != true {
		t.Fatalf("etag %v, want supported", spc.body["etag"])
	}
	if p, _ := spc.body["patch"].(map[string]any); p["supported"] != true {
		t.Fatalf("the rewrite lost the rest: %v", spc.body)
	}
	id := srv.Seed(map[string]any{"userName": "ann", "displayName": "Ann"})
	got := do(t, srv, "GET", "/Users/"+id, nil)
	v1 := got.header.Get("ETag")
	if meta, _ := got.body["meta"].(map[string]any); v1 == "" || meta["version"] != v1 {
		t.Fatalf("ETag %q, meta %v", v1, got.body["meta"])
	}
	replace := patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "A"})

	// A matching If-Match applies; the version moves on.
	r := do(t, srv, "PATCH", "/Users/"+id, replace, header("If-Match", v1))
	wantStatus(t, r, http.StatusOK)
	v2 := r.header.Get("ETag")
	if v2 == "" || v2 == v1 {
		t.Fatalf("version after PATCH %q (was %q)", v2, v1)
	}
	// The old version is refused for PATCH, PUT and DELETE, and nothing changes.
	wantSCIMError(t, do(t, srv, "PATCH", "/Users/"+id, replace, header("If-Match", v1)), http.StatusPreconditionFailed, "")
	wantSCIMError(t, do(t, srv, "PUT", "/Users/"+id, userBody("ann", "displayName", "B"), header("If-Match", v1)), http.StatusPreconditionFailed, "")
	wantSCIMError(t, do(t, srv, "DELETE", "/Users/"+id, nil, header("If-Match", v1)), http.StatusPreconditionFailed, "")
	if u, ok := srv.UserByID(id); !ok || u.Get("displayName") != "A" || u.Version != v2 {
		t.Fatalf("after refused writes: %+v %v", u, ok)
	}
	// "*", a list holding the version, and no If-Match at all are accepted.
	wantStatus(t, do(t, srv, "PUT", "/Users/"+id, userBody("ann", "displayName", "C"), header("If-Match", `W/"0", `+v2)), http.StatusOK)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, replace, header("If-Match", "*")), http.StatusOK)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, replace), http.StatusOK)
	cur, _ := srv.UserByID(id)
	wantStatus(t, do(t, srv, "DELETE", "/Users/"+id, nil, header("If-Match", cur.Version)), http.StatusNoContent)

	// Without the mode, If-Match is ignored and etag is not advertised.
	plain := New(t, Options{})
	pid := plain.Seed(map[string]any{"userName": "bob"})
	wantStatus(t, do(t, plain, "PATCH", "/Users/"+pid, replace, header("If-Match", `W/"stale"`)), http.StatusOK)
	if e, _ := do(t, plain, "GET", "/ServiceProviderConfig", nil).body["etag"].(map[string]any); e["supported"] != false {
		t.Errorf("a plain server advertises etag: %v", e)
	}
}

func TestBeforeServeEditsBetweenRequests(t *testing.T) {
	srv := New(t, Options{ETags: true})
	id := srv.Seed(map[string]any{"userName": "ann", "title": "old"})
	var edits atomic.Int32
	srv.BeforeServe(func(r Request) {
		if r.Method == "PATCH" && edits.Add(1) == 1 {
			srv.Edit(id, func(a map[string]any) { a["title"] = "edited on the server" })
		}
	})
	v := do(t, srv, "GET", "/Users/"+id, nil).header.Get("ETag")
	r := do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Ann"}), header("If-Match", v))
	wantSCIMError(t, r, http.StatusPreconditionFailed, "")
	u, _ := srv.UserByID(id)
	eq(t, u.Get("title"), "edited on the server")
	eq(t, u.Get("displayName"), nil)
	srv.BeforeServe(nil)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Ann"}), header("If-Match", u.Version)), http.StatusOK)
	eq(t, edits.Load(), int32(1))
}

func TestLenientCreate(t *testing.T) {
	srv := New(t, Options{LenientCreate: true})
	first := do(t, srv, "POST", "/Users", userBody("ann", "displayName", "Old"))
	wantStatus(t, first, http.StatusCreated)
	again := do(t, srv, "POST", "/Users", userBody("ANN", "displayName", "New"))
	wantStatus(t, again, http.StatusOK)
	eq(t, again.str("id"), first.str("id"))
	eq(t, again.str("displayName"), "Old")
	eq(t, len(srv.Users()), 1)
	strict := New(t, Options{})
	do(t, strict, "POST", "/Users", userBody("ann"))
	wantSCIMError(t, do(t, strict, "POST", "/Users", userBody("ann")), http.StatusConflict, "uniqueness")

	// Groups: a taken displayName answers the existing group with 200.
	group := func(name, ext string) map[string]any {
		return map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": name, "externalId": ext}
	}
	g := do(t, srv, "POST", "/Groups", group("Staff", "staff"))
	wantStatus(t, g, http.StatusCreated)
	same := do(t, srv, "POST", "/Groups", group("STAFF", "team"))
	wantStatus(t, same, http.StatusOK)
	eq(t, same.str("id"), g.str("id"))
	eq(t, same.str("externalId"), "staff")
	eq(t, len(srv.Groups()), 1)
	do(t, strict, "POST", "/Groups", group("Staff", "staff"))
	wantSCIMError(t, do(t, strict, "POST", "/Groups", group("Staff", "team")), http.StatusConflict, "uniqueness")
}

func TestDropOnCreate(t *testing.T) {
	srv := New(t, Options{DropOnCreate: []string{"displayName"}})
	created := do(t, srv, "POST", "/Users", userBody("ann", "displayName", "Ann", "title", "kept"))
	wantStatus(t, created, http.StatusCreated)
	eq(t, created.str("displayName"), "")
	u, _ := srv.UserByID(created.str("id"))
	eq(t, u.Get("displayName"), nil)
	eq(t, u.Get("title"), "kept")
	// Taken by a later PATCH.
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+u.ID, patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Ann"})), http.StatusOK)
	u, _ = srv.UserByID(u.ID)
	eq(t, u.Get("displayName"), "Ann")
}

func TestFilterModes(t *testing.T) {
	for _, tc := range []struct {
		mode      FilterMode
		total     float64
		resources int
	}{{FilterHonoured, 1, 1}, {FilterIgnored, 3, 2}, {FilterCountOnly, 3, 0}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			srv := New(t, Options{Filter: tc.mode})
			for _, n := range []string{"ann", "bob", "cyd"} {
				srv.Seed(map[string]any{"userName": n})
			}
			r := do(t, srv, "GET", "/Users?count=2&filter="+url.QueryEscape(`userName eq "bob"`), nil)
			wantStatus(t, r, http.StatusOK)
			res, _ := r.body["Resources"].([]any)
			if r.body["totalResults"] != tc.total || len(res) != tc.resources {
				t.Fatalf("totalResults %v, %d Resources: %s", r.body["totalResults"], len(res), r.raw)
			}
			// An unfiltered list is the same in every mode.
			all := do(t, srv, "GET", "/Users", nil)
			if res, _ := all.body["Resources"].([]any); len(res) != 3 {
				t.Errorf("unfiltered: %s", all.raw)
			}
		})
	}
}

func TestNoServiceProviderConfig(t *testing.T) {
	srv := New(t, Options{NoServiceProviderConfig: true})
	wantSCIMError(t, do(t, srv, "GET", "/ServiceProviderConfig", nil), http.StatusNotFound, "")
	wantStatus(t, do(t, srv, "GET", "/Users", nil), http.StatusOK)
	wantStatus(t, do(t, srv, "GET", "/ServiceProviderConfig", nil, header("Authorization", "Bearer wrong")), http.StatusUnauthorized)
}

func TestHTMLNotFound(t *testing.T) {
	srv := New(t, Options{})
	id := srv.Seed(map[string]any{"userName": "ann"})
	srv.Inject(HTMLNotFound("PUT", ""))
	_, err := tryDo(srv, http.DefaultClient, "PUT", "/Users/"+id, userBody("ann"))
	if err == nil || !strings.Contains(err.Error(), "answer 404 is not JSON") || !strings.Contains(err.Error(), "<html") {
		t.Fatalf("err %v, want an HTML 404", err)
	}
	wantStatus(t, do(t, srv, "GET", "/Users/"+id, nil), http.StatusOK)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, patchBody(map[string]any{"op": "replace", "path": "title", "value": "x"})), http.StatusOK)
	if _, ok := srv.UserByID(id); !ok {
		t.Fatal("the account went away")
	}
}

func TestRateLimit(t *testing.T) {
	srv := New(t, Options{RateLimit: 1, RateBurst: 3})
	codes := map[int]int{}
	for range 12 {
		r := do(t, srv, "GET", "/Users", nil)
		codes[r.status]++
		if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != "1" {
			t.Errorf("429 without Retry-After: %v", r.header)
		}
	}
	// 3 at once (the burst), then one a second: a loop of 12 gets 3,
	// plus one for each second it takes.
	if codes[200] < 3 || codes[429] == 0 || codes[200]+codes[429] != 12 {
		t.Fatalf("answers %v", codes)
	}
	eq(t, srv.RateLimited(), codes[429])
	if New(t, Options{}).RateLimited() != 0 {
		t.Error("RateLimited without a limit")
	}
}

func TestOAuth2(t *testing.T) {
	srv := New(t, Options{OAuth2: &OAuth2{ClientID: "agent", ClientSecret: "s3cret/+", TokenLifetime: time.Second, RequiredScope: "scim"}})
	if srv.TokenURL != strings.TrimSuffix(srv.URL, BasePath)+TokenPath {
		t.Fatalf("TokenURL %q", srv.TokenURL)
	}
	token := func(t *testing.T, mod func(*http.Request), form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "POST", srv.TokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if mod != nil {
			mod(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
	grant := url.Values{"grant_type": {"client_credentials"}, "scope": {"scim read"}}
	basic := func(id, secret string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
	}

	status, m := token(t, basic("agent", "wrong"), grant)
	if status != 401 || m["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", status, m)
	}
	status, m = token(t, basic("agent", "s3cret/+"), url.Values{"grant_type": {"client_credentials"}})
	if status != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("no scope: %d %v", status, m)
	}
	status, m = token(t, basic("agent", "s3cret/+"), url.Values{"grant_type": {"password"}, "scope": {"scim"}})
	if status != 400 || m["error"] != "unsupported_grant_type" {
		t.Fatalf("password grant: %d %v", status, m)
	}
	status, m = token(t, basic("agent", "s3cret/+"), grant)
	first, _ := m["access_token"].(string)
	if status != 200 || first == "" || m["token_type"] != "Bearer" || m["expires_in"] != float64(1) {
		t.Fatalf("token: %d %v", status, m)
	}
	// client_secret_post works too, and each grant is a new token.
	post := url.Values{"grant_type": {"client_credentials"}, "scope": {"scim"}, "client_id": {"agent"}, "client_secret": {"s3cret/+"}}
	status, m = token(t, nil, post)
	second, _ := m["access_token"].(string)
	if status != 200 || second == "" || second == first {
		t.Fatalf("client_secret_post: %d %v", status, m)
	}
	eq(t, srv.TokenRequests(), 5)
	eq(t, srv.TokensIssued(), 2)
	eq(t, len(srv.IssuedTokens()), 2)

	bearer := func(tok string) func(*http.Request) { return header("Authorization", "Bearer "+tok) }
	wantStatus(t, do(t, srv, "GET", "/Users", nil, bearer(first)), http.StatusOK)
	wantStatus(t, do(t, srv, "GET", "/Users", nil, bearer(srv.Token)), http.StatusUnauthorized)
	r := do(t, srv, "GET", "/Users", nil, bearer("at-made-up"))
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("challenge %q", r.header.Get("WWW-Authenticate"))
	}
	// A token is refused once it expires (poll: no sleep for ordering).
	deadline := time.Now().Add(5 * time.Second)
	for do(t, srv, "GET", "/Users", nil, bearer(first)).status == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the token never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// RevokeTokens ends every token at once.
	_, m = token(t, nil, post)
	third, _ := m["access_token"].(string)
	wantStatus(t, do(t, srv, "GET", "/Users", nil, bearer(third)), http.StatusOK)
	srv.RevokeTokens()
	wantStatus(t, do(t, srv, "GET", "/Users", nil, bearer(third)), http.StatusUnauthorized)
	eq(t, len(srv.IssuedTokens()), 3)

	// The request log never keeps the client secret.
	for _, rq := range srv.Requests() {
		if strings.Contains(string(rq.Body), "s3cret") || strings.Contains(rq.Header.Get("Authorization"), "Basic") {
			t.Errorf("the log kept the client secret: %q %v", rq.Body, rq.Header)
		}
	}
	if New(t, Options{}).TokenURL != "" {
		t.Error("TokenURL without OAuth2")
	}
}

func TestBasicAuth(t *testing.T) {
	srv := New(t, Options{Basic: &BasicAuth{Username: "agent", Password: "pw:with:colons"}})
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	wantStatus(t, do(t, srv, "GET", "/Users", nil, basic("agent", "pw:with:colons")), http.StatusOK)
	r := do(t, srv, "GET", "/Users", nil, basic("agent", "wrong"))
	wantSCIMError(t, r, http.StatusUnauthorized, "")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("challenge %q", r.header.Get("WWW-Authenticate"))
	}
	wantStatus(t, do(t, srv, "GET", "/Users", nil), http.StatusUnauthorized) // the bearer token is not enough
	if _, err := Start(Options{Basic: &BasicAuth{}, OAuth2: &OAuth2{}}); err == nil {
		t.Error("Basic and OAuth2 at once started")
	}
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("scimtest client CA")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(t, Options{ClientCA: ca})
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("URL %s", srv.URL)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool(), Certificates: certs}}}
	}
	if _, err := tryDo(srv, client(), "GET", "/Users", nil); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	other, _ := NewCA("another CA")
	stranger, err := other.IssueClientCertificate("stranger")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryDo(srv, client(stranger), "GET", "/Users", nil); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	cert, err := ca.IssueClientCertificate("scim-agent")
	if err != nil {
		t.Fatal(err)
	}
	r, err := tryDo(srv, client(cert), "GET", "/Users", nil)
	if err != nil || r.status != 200 {
		t.Fatalf("with the CA's certificate: %v %v", r.status, err)
	}
	reqs := srv.RequestsMatching("GET", "/Users")
	eq(t, reqs[len(reqs)-1].ClientCert, "scim-agent")
	if !strings.Contains(string(ca.CertPEM()), "BEGIN CERTIFICATE") {
		t.Error("CertPEM is not PEM")
	}
	certPEM, keyPEM, err := ca.IssueClient("x")
	if err != nil || !strings.Contains(string(certPEM), "BEGIN CERTIFICATE") || !strings.Contains(string(keyPEM), "PRIVATE KEY") {
		t.Errorf("IssueClient: %v", err)
	}
}

func TestSetFilter(t *testing.T) {
	srv := New(t, Options{Filter: FilterCountOnly})
	for _, n := range []string{"ann", "bob"} {
		srv.Seed(map[string]any{"userName": n})
	}
	list := func() (float64, int) {
		r := do(t, srv, "GET", "/Users?filter="+url.QueryEscape(`userName eq "bob"`), nil)
		wantStatus(t, r, http.StatusOK)
		res, _ := r.body["Resources"].([]any)
		total, _ := r.body["totalResults"].(float64)
		return total, len(res)
	}
	if total, n := list(); total != 2 || n != 0 {
		t.Fatalf("count-only: totalResults %v, %d Resources", total, n)
	}
	srv.SetFilter(FilterIgnored)
	if total, n := list(); total != 2 || n != 2 {
		t.Fatalf("ignored: totalResults %v, %d Resources", total, n)
	}
	srv.SetFilter(FilterHonoured)
	if total, n := list(); total != 1 || n != 1 {
		t.Fatalf("honoured: totalResults %v, %d Resources", total, n)
	}
}

func TestValueFilterPathModes(t *testing.T) {
	emails := []any{
		map[string]any{"value": "a@work.example", "type": "work", "primary": true},
		map[string]any{"value": "a@home.example", "type": "home"},
	}
	filtered := patchBody(map[string]any{"op": "replace", "path": `emails[type eq "work"].value`, "value": "b@work.example"})
	plain := patchBody(map[string]any{"op": "replace", "path": "displayName", "value": "Ann"})

	srv := New(t, Options{NoValueFilterPaths: true})
	id := srv.Seed(map[string]any{"userName": "ann", "emails": emails})
	wantSCIMError(t, do(t, srv, "PATCH", "/Users/"+id, filtered), http.StatusBadRequest, "invalidPath")
	u, _ := srv.UserByID(id)
	eq(t, u.Get("emails").([]any)[0].(map[string]any)["value"], "a@work.example")
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+id, plain), http.StatusOK)

	// Ignored: a success that changes nothing the filter names.
	lax := New(t, Options{IgnoreValueFilterPaths: true})
	lid := lax.Seed(map[string]any{"userName": "ann", "emails": emails})
	wantStatus(t, do(t, lax, "PATCH", "/Users/"+lid, patchBody(
		map[string]any{"op": "replace", "path": `emails[type eq "work"].value`, "value": "b@work.example"},
		map[string]any{"op": "replace", "path": "displayName", "value": "Ann"})), http.StatusOK)
	lu, _ := lax.UserByID(lid)
	eq(t, lu.Get("emails").([]any)[0].(map[string]any)["value"], "a@work.example")
	eq(t, lu.Get("displayName"), "Ann")

	// Without the mode the same PATCH changes the work address only.
	strict := New(t, Options{})
	sid := strict.Seed(map[string]any{"userName": "ann", "emails": emails})
	wantStatus(t, do(t, strict, "PATCH", "/Users/"+sid, filtered), http.StatusOK)
	su, _ := strict.UserByID(sid)
	got := su.Get("emails").([]any)
	eq(t, got[0].(map[string]any)["value"], "b@work.example")
	eq(t, got[1].(map[string]any)["value"], "a@home.example")
}
