package scimclient

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

func TestETagsAndIfMatch(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{ETags: true})
	c := newClient(t, srv)
	created, cres, err := c.CreateUser(ctx, user("ann"))
	if err != nil {
		t.Fatal(err)
	}
	id := created["id"].(string)
	got, gres, err := c.GetUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if gres.Version == "" || gres.Version != got.Version() || gres.Version != cres.Version {
		t.Fatalf("versions: get %q (meta %q), create %q", gres.Version, got.Version(), cres.Version)
	}

	// An edit on the server between the GET and the PATCH: the PATCH
	// with If-Match gets 412 and changes nothing.
	var once atomic.Bool
	srv.BeforeServe(func(r scimtest.Request) {
		if r.Method == "PATCH" && once.CompareAndSwap(false, true) {
			srv.Edit(id, func(a map[string]any) { a["title"] = "set by an admin" })
		}
	})
	ops := []PatchOp{{Op: "replace", Path: "displayName", Value: "Ann"}}
	_, pres, err := c.PatchUser(ctx, id, ops, IfMatch(gres.Version))
	if !IsPreconditionFailed(err) || IsRetryable(err) || pres.Attempts != 1 {
		t.Fatalf("PATCH with a stale If-Match: err %v result %+v; want a 412 at once", err, pres)
	}
	patches := srv.RequestsMatching("PATCH", "/Users/")
	if h := patches[0].Header.Get("If-Match"); h != gres.Version {
		t.Errorf("If-Match sent %q, want %q", h, gres.Version)
	}
	// Read again, try again: both changes survive.
	_, gres, err = c.GetUser(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	patched, pres, err := c.PatchUser(ctx, id, ops, IfMatch(gres.Version))
	if err != nil {
		t.Fatal(err)
	}
	if pres.Version == "" || pres.Version == gres.Version || patched.Version() != pres.Version {
		t.Errorf("version after PATCH %q (meta %q), before %q", pres.Version, patched.Version(), gres.Version)
	}
	u, _ := srv.UserByID(id)
	if u.Get("title") != "set by an admin" || u.Get("displayName") != "Ann" {
		t.Fatalf("server state %v", u.Attributes)
	}

	// PUT and DELETE take IfMatch too; an empty version sends none.
	if _, _, err := c.ReplaceUser(ctx, id, user("ann"), IfMatch(gres.Version)); !IsPreconditionFailed(err) {
		t.Errorf("PUT with a stale version: %v", err)
	}
	if _, err := c.DeleteUser(ctx, id, IfMatch(gres.Version)); !IsPreconditionFailed(err) {
		t.Errorf("DELETE with a stale version: %v", err)
	}
	if _, _, err := c.ReplaceUser(ctx, id, user("ann"), IfMatch("")); err != nil {
		t.Fatal(err)
	}
	if h := srv.RequestsMatching("PUT", "/Users/"); h[len(h)-1].Header.Values("If-Match") != nil {
		t.Errorf("IfMatch(\"\") sent %v", h[len(h)-1].Header.Values("If-Match"))
	}
	_, gres, _ = c.GetUser(ctx, id)
	if _, err := c.DeleteUser(ctx, id, IfMatch(gres.Version)); err != nil {
		t.Fatal(err)
	}
}

func TestLenientCreateIsReported(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{LenientCreate: true})
	c := newClient(t, srv)
	first := user("ann")
	first["displayName"] = "Old"
	if _, res, err := c.CreateUser(ctx, first); err != nil || res.Status != http.StatusCreated {
		t.Fatalf("first POST: %v %+v", err, res)
	}
	second := user("ann")
	second["displayName"] = "New"
	got, res, err := c.CreateUser(ctx, second)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("second POST: err %v result %+v; want a 200 reported", err, res)
	}
	if got["displayName"] != "Old" {
		t.Errorf("the answer is not the server's account: %v", got)
	}
}

func TestCapabilities(t *testing.T) {
	ctx := context.Background()
	t.Run("advertised", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{ETags: true, DisablePatch: true})
		caps, _, err := newClient(t, srv).Capabilities(ctx, Overrides{})
		if err != nil || caps.Missing || caps.Patch || !caps.Filter || !caps.ETag || caps.Bulk ||
			len(caps.Overridden) != 0 || len(caps.Assumed) != 0 || caps.Source(CapETag) != "server" {
			t.Fatalf("%+v %v", caps, err)
		}
	})
	t.Run("overridden", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{DisablePatch: true})
		caps, _, err := newClient(t, srv).Capabilities(ctx, Overrides{Patch: On, ETag: Off, Filter: Off})
		if err != nil || !caps.Patch || caps.Filter || caps.ETag ||
			strings.Join(caps.Overridden, ",") != "patch,filter,etag" || caps.Source(CapPatch) != "override" || caps.Source(CapBulk) != "server" {
			t.Fatalf("%+v %v", caps, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{NoServiceProviderConfig: true})
		caps, _, err := newClient(t, srv).Capabilities(ctx, Overrides{ETag: On})
		if err != nil || !caps.Missing || !strings.Contains(caps.MissingReason, "404") || !caps.Patch || !caps.Filter || !caps.ETag || caps.Bulk {
			t.Fatalf("%+v %v", caps, err)
		}
		if strings.Join(caps.Overridden, ",") != "etag" || strings.Join(caps.Assumed, ",") != "patch,filter,bulk" || caps.Source(CapFilter) != "assumed" {
			t.Errorf("overridden %v assumed %v", caps.Overridden, caps.Assumed)
		}
	})
	t.Run("not a ServiceProviderConfig", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{})
		srv.Inject(scimtest.Fault{Status: 200, Body: []byte("<html>a portal</html>")})
		caps, _, err := newClient(t, srv).Capabilities(ctx, Overrides{})
		if err != nil || !caps.Missing || !strings.Contains(caps.MissingReason, "not JSON") {
			t.Fatalf("%+v %v", caps, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{})
		_, _, err := newClient(t, srv, func(c *Config) { c.Token = "wrong" }).Capabilities(ctx, Overrides{})
		if !IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("err %v, want the 401", err)
		}
	})
	for _, tc := range []struct {
		in   string
		want Setting
		bad  bool
	}{{"auto", Auto, false}, {"", Auto, false}, {"true", On, false}, {"FALSE", Off, false}, {"yes", Auto, true}} {
		got, err := ParseSetting(tc.in)
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("ParseSetting(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	const pass = "b4sic-PASS-never-logged"
	srv := scimtest.New(t, scimtest.Options{Basic: &scimtest.BasicAuth{Username: "agent", Password: pass}})
	c := newClient(t, srv, func(c *Config) { c.Token = ""; c.Auth = Basic("agent", pass) })
	if _, _, err := c.ListUsers(context.Background(), "", 1, 1); err != nil {
		t.Fatal(err)
	}
	log, logs := observed()
	wrong := newClient(t, srv, func(c *Config) { c.Token = ""; c.Auth = Basic("agent", pass+"x"); c.Logger = log })
	srv.Inject(scimtest.Fault{Times: 1, Status: 503, Detail: "no " + pass + "x or " + base64.StdEncoding.EncodeToString([]byte("agent:"+pass+"x"))})
	_, res, err := wrong.ListUsers(context.Background(), "", 1, 1)
	if !IsStatus(err, http.StatusUnauthorized) || res.Attempts != 2 {
		t.Fatalf("wrong password: %v %+v", err, res)
	}
	if logs.Len() != 1 || strings.Contains(fmt.Sprint(logs.All()[0].ContextMap()), pass) ||
		strings.Contains(fmt.Sprint(logs.All()[0].ContextMap()), "YWdlbnQ6") {
		t.Errorf("retry lines %v", logs.All())
	}
	for _, cfg := range []Config{
		{BaseURL: srv.URL, Auth: Basic("", "p")},
		{BaseURL: srv.URL, Auth: Basic("a:b", "p")},
		{BaseURL: srv.URL, Auth: Basic("a", "")},
		{BaseURL: srv.URL, Auth: Basic("a", "p"), Token: "t"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// oauthClient returns a client of srv with OAuth 2 client credentials.
func oauthClient(t *testing.T, srv *scimtest.Server, secret string, mods ...func(*Config)) (*Client, *OAuth2) {
	t.Helper()
	o, err := NewOAuth2(OAuth2Config{TokenURL: srv.TokenURL, ClientID: "agent", ClientSecret: secret, Scopes: []string{"scim"}})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, srv, append([]func(*Config){func(c *Config) { c.Token = ""; c.Auth = o }}, mods...)...), o
}

func TestOAuth2ClientCredentials(t *testing.T) {
	ctx := context.Background()
	const secret = "cl1ent-SECRET-never-logged"
	srv := scimtest.New(t, scimtest.Options{OAuth2: &scimtest.OAuth2{ClientID: "agent", ClientSecret: secret,
		TokenLifetime: 2 * time.Second, RequiredScope: "scim"}})
	c, o := oauthClient(t, srv, secret)

	// One token serves many calls.
	for range 5 {
		if _, _, err := c.ListUsers(ctx, "", 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.TokensIssued(); n != 1 {
		t.Fatalf("%d tokens for 5 calls", n)
	}
	// Before it expires it is replaced, with no 401 on the way (poll
	// until the server has issued a second one).
	agenttest.Eventually(t, "the token to be renewed", func() bool {
		if srv.TokensIssued() >= 2 {
			return true
		}
		if _, _, err := c.ListUsers(ctx, "", 1, 1); err != nil {
			t.Fatal(err)
		}
		return false
	})
	for _, r := range srv.RequestsMatching("GET", "/Users") {
		if r.Status == http.StatusUnauthorized {
			t.Fatalf("a request was refused before the renewal: %+v", r)
		}
	}

	// A token revoked by the server: the 401 renews it once, at once, and
	// the call succeeds without counting it as an attempt.
	srv.RevokeTokens()
	before := srv.TokensIssued()
	_, res, err := c.ListUsers(ctx, "", 1, 1)
	if err != nil || res.Status != http.StatusOK || res.Attempts != 2 || srv.TokensIssued() != before+1 {
		t.Fatalf("after a revocation: err %v result %+v, tokens %d → %d", err, res, before, srv.TokensIssued())
	}
	single, _ := oauthClient(t, srv, secret, func(c *Config) { c.MaxAttempts = 1 })
	if _, _, err := single.ListUsers(ctx, "", 1, 1); err != nil {
		t.Fatal(err)
	}
	srv.RevokeTokens()
	if _, res, err := single.ListUsers(ctx, "", 1, 1); err != nil || res.Attempts != 2 {
		t.Fatalf("MaxAttempts 1 after a revocation: %v %+v; want the refresh retry on top", err, res)
	}

	// Fetch tests the credentials.
	exp, err := o.Fetch(ctx)
	if err != nil || time.Until(exp) <= 0 {
		t.Fatalf("Fetch: %v %v", exp, err)
	}

	// Refused credentials: a 401 at once, not retried, secret not quoted.
	bad, badAuth := oauthClient(t, srv, secret+"-wrong", func(c *Config) { c.MaxAttempts = 0 })
	_, res, err = bad.ListUsers(ctx, "", 1, 1)
	var se *Error
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || !strings.Contains(se.Detail, "invalid_client") ||
		!strings.Contains(se.Detail, srv.TokenURL) || res.Status != http.StatusUnauthorized || IsRetryable(err) {
		t.Fatalf("wrong secret: err %#v result %+v", err, res)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("the error quotes the secret: %v", err)
	}
	if _, err := badAuth.Fetch(ctx); !IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "token endpoint") {
		t.Errorf("Fetch with a wrong secret: %v", err)
	}
	// A token endpoint that fails for a while is retried. (Times 2:
	// x/oauth2 tries the secret in the header, then in the form.)
	srv.Inject(scimtest.Fault{PathPrefix: scimtest.TokenPath, Times: 2, Status: 503})
	retrying, _ := oauthClient(t, srv, secret)
	if _, res, err := retrying.ListUsers(ctx, "", 1, 1); err != nil || res.Attempts != 2 {
		t.Fatalf("token endpoint 503 once: %v %+v", err, res)
	}
	for _, cfg := range []OAuth2Config{
		{TokenURL: "/token", ClientID: "a", ClientSecret: "s"},
		{TokenURL: srv.TokenURL, ClientSecret: "s"},
		{TokenURL: srv.TokenURL, ClientID: "a"},
	} {
		if _, err := NewOAuth2(cfg); err == nil {
			t.Errorf("NewOAuth2 accepted %+v", cfg)
		}
	}
}

func TestOAuth2SecretsNeverLeak(t *testing.T) {
	const secret = "cl1ent-SECRET-QX9"
	srv := scimtest.New(t, scimtest.Options{OAuth2: &scimtest.OAuth2{ClientID: "agent", ClientSecret: secret}})
	log, logs := observed()
	c, o := oauthClient(t, srv, secret, func(c *Config) { c.Logger = log; c.MaxAttempts = 2 })
	if _, _, err := c.ListUsers(context.Background(), "", 1, 1); err != nil {
		t.Fatal(err)
	}
	tokens := o.Secrets()[1:]
	if len(tokens) != 1 {
		t.Fatalf("secrets %d", len(tokens))
	}
	// A server quoting the token and the secret back.
	srv.Inject(scimtest.Fault{Times: 2, Status: 502, Detail: "token " + tokens[0] + " client " + secret})
	_, _, err := c.ListUsers(context.Background(), "", 1, 1)
	if err == nil || strings.Contains(err.Error(), tokens[0]) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Fatalf("err %v", err)
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.ContextMap()); strings.Contains(line, tokens[0]) || strings.Contains(line, secret) {
			t.Errorf("a log line holds a secret: %s", line)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test proves nothing")
	}
}

func TestRateLimiter(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{})
	// No refill to speak of: the bucket's tokens count the attempts.
	lim := rate.NewLimiter(rate.Every(time.Hour), 5)
	c := newClient(t, srv, func(c *Config) { c.Limiter = lim })
	srv.Inject(scimtest.Fault{Times: 1, Status: 503})
	if _, res, err := c.ListUsers(ctx, "", 1, 1); err != nil || res.Attempts != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if left := lim.Tokens(); left < 2.9 || left > 3.1 {
		t.Fatalf("%.2f tokens left after 2 attempts of 5: the retry did not wait for the limiter", left)
	}
	for range 3 {
		if _, _, err := c.ListUsers(ctx, "", 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket is empty: a call with a deadline does not wait an hour,
	// and nothing is sent.
	n := srv.CountRequests("", "")
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := c.ListUsers(dctx, "", 1, 1); err == nil || !IsRetryable(err) {
		t.Fatalf("err %v, want a retryable wait failure", err)
	}
	if srv.CountRequests("", "") != n {
		t.Error("a request went out past the limiter")
	}
}

func TestRetryAfterAboveTheLimiter(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = log; c.Limiter = rate.NewLimiter(100, 1) })
	srv.Inject(scimtest.Fault{Times: 1, Status: 429, RetryAfter: "1"})
	_, res, err := c.ListUsers(context.Background(), "", 1, 1)
	if err != nil || res.Attempts != 2 || res.Duration < 900*time.Millisecond {
		t.Fatalf("err %v result %+v: Retry-After ignored", err, res)
	}
	if r := logs.FilterMessage(MsgRetry).All(); len(r) != 1 || r[0].ContextMap()["retry_in_ms"] != int64(1000) {
		t.Errorf("retry lines %v", r)
	}
}

func TestClientCertificate(t *testing.T) {
	ca, err := scimtest.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	srv := scimtest.New(t, scimtest.Options{ClientCA: ca})
	cert, err := ca.IssueClientCertificate("scim-agent")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv, func(c *Config) { c.Certificates = []tls.Certificate{cert} })
	if _, _, err := c.ListUsers(context.Background(), "", 1, 1); err != nil {
		t.Fatal(err)
	}
	if r := srv.RequestsMatching("GET", "/Users"); r[0].ClientCert != "scim-agent" {
		t.Errorf("client cert %q", r[0].ClientCert)
	}
	none := newClient(t, srv, func(c *Config) { c.MaxAttempts = 0 })
	_, res, err := none.ListUsers(context.Background(), "", 1, 1)
	if !errors.Is(err, ErrCertificateRefused) || IsRetryable(err) || res.Attempts != 1 {
		t.Fatalf("without a certificate: err %v result %+v; want a refusal at once", err, res)
	}
}
