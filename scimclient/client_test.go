package scimclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// newClient returns a client of srv with test-sized backoff; mods adjust
// the config.
func newClient(t *testing.T, srv *scimtest.Server, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:     srv.URL,
		Token:       srv.Token,
		RootCAs:     srv.CertPool(),
		Timeout:     5 * time.Second,
		MinBackoff:  time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		MaxAttempts: 5,
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func user(name string) Resource {
	return Resource{"userName": name, "active": true, "externalId": "ext-" + name}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative URL", Config{BaseURL: "/scim/v2", Token: "t"}, "absolute"},
		{"no scheme", Config{BaseURL: "idp.example.com/scim", Token: "t"}, "absolute"},
		{"ftp", Config{BaseURL: "ftp://idp.example.com/scim", Token: "t"}, "absolute"},
		{"no host", Config{BaseURL: "https:///scim", Token: "t"}, "no host"},
		{"credentials", Config{BaseURL: "https://u:p@idp.example.com/scim", Token: "t"}, "credentials"},
		{"query", Config{BaseURL: "https://idp.example.com/scim?x=1", Token: "t"}, "query"},
		{"no token", Config{BaseURL: "https://idp.example.com/scim"}, "token"},
		{"token with newline", Config{BaseURL: "https://idp.example.com/scim", Token: "abc\n"}, "control"},
		{"negative attempts", Config{BaseURL: "https://idp.example.com/scim", Token: "t", MaxAttempts: -1}, "MaxAttempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one about %q", err, tc.want)
			}
			if tc.cfg.Token != "" && tc.cfg.Token != "t" && strings.Contains(err.Error(), tc.cfg.Token) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
	c, err := New(Config{BaseURL: "https://idp.example.com/scim/v2/", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://idp.example.com/scim/v2" || c.cfg.Timeout != DefaultTimeout || c.cfg.MinBackoff != DefaultMinBackoff ||
		c.cfg.MaxBackoff != DefaultMaxBackoff || c.cfg.MaxResponseBytes != DefaultMaxResponseBytes || c.cfg.UserAgent != DefaultUserAgent {
		t.Errorf("defaults: %+v base %s", c.cfg, c.base)
	}
}

func TestUserRoundTrip(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv, func(c *Config) { c.UserAgent = "scim-agent/test" })

	// A sloppy resource: schemas as a string, read-only id and meta, an
	// extension not listed in schemas. The strict server would refuse it
	// as it is.
	in := user("alice@example.com")
	in["schemas"] = UserSchema
	in["id"] = "client-made-id"
	in["meta"] = map[string]any{"resourceType": "User"}
	in[EnterpriseUserSchema] = map[string]any{"department": "R&D"}
	created, res, err := c.CreateUser(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusCreated || res.Attempts != 1 || res.Duration <= 0 {
		t.Errorf("result %+v", res)
	}
	id, _ := created["id"].(string)
	if id == "" || id == "client-made-id" {
		t.Fatalf("created %v", created)
	}
	if in["id"] != "client-made-id" || in["schemas"] != UserSchema {
		t.Error("CreateUser changed the caller's resource")
	}
	post := srv.RequestsMatching("POST", "/Users")[0]
	if post.ContentType != MediaType || post.Header.Get("Accept") != "application/scim+json, application/json" ||
		post.Header.Get("User-Agent") != "scim-agent/test" {
		t.Errorf("headers %v", post.Header)
	}
	body := post.JSON()
	if fmt.Sprint(body["schemas"]) != fmt.Sprintf("[%s %s]", UserSchema, EnterpriseUserSchema) || body["id"] != nil || body["meta"] != nil {
		t.Errorf("POST body %s", post.Body)
	}
	if strings.Contains(string(post.Body), `\u0026`) {
		t.Errorf("the body is HTML-escaped: %s", post.Body)
	}

	got, res, err := c.GetUser(ctx, id)
	if err != nil || res.Status != 200 || got["userName"] != "alice@example.com" {
		t.Fatalf("GET %v %+v %v", got, res, err)
	}

	// PUT back what GET returned (with id, meta, schemas, and the groups
	// a server lists on a member): the client strips the read-only
	// attributes.
	got["displayName"] = "Alice"
	got["Groups"] = []any{map[string]any{"value": "g1", "display": "Staff"}}
	replaced, _, err := c.ReplaceUser(ctx, id, got)
	if err != nil || replaced["displayName"] != "Alice" {
		t.Fatalf("PUT %v %v", replaced, err)
	}

	patched, res, err := c.PatchUser(ctx, id, []PatchOp{
		{Op: "Replace", Path: "active", Value: false}, // sent lower-case
		{Op: "remove", Path: "displayName"},
	})
	if err != nil || res.Status != 200 || patched["active"] != false || patched["displayName"] != nil {
		t.Fatalf("PATCH %v %+v %v", patched, res, err)
	}
	if ops := srv.RequestsMatching("PATCH", "/Users")[0].JSON()["Operations"]; !strings.Contains(fmt.Sprint(ops), "op:replace") {
		t.Errorf("PATCH ops %v", ops)
	}
	if _, _, err := c.PatchUser(ctx, id, nil); err == nil {
		t.Error("a PATCH without operations was sent")
	}

	list, res, err := c.ListUsers(ctx, FilterEq("userName", "ALICE@example.com"), 1, 10)
	if err != nil || res.Status != 200 || list.TotalResults != 1 || len(list.Resources) != 1 || list.Resources[0]["id"] != id {
		t.Fatalf("list %+v %v", list, err)
	}

	res, err = c.DeleteUser(ctx, id)
	if err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("DELETE %+v %v", res, err)
	}
	_, _, err = c.GetUser(ctx, id)
	if !IsStatus(err, http.StatusNotFound) {
		t.Errorf("GET after DELETE: %v", err)
	}
	_, err = c.DeleteUser(ctx, id)
	var se *Error
	if !errors.As(err, &se) || se.Status != 404 || se.Method != "DELETE" || se.Path != "/Users/"+id || IsRetryable(err) {
		t.Errorf("second DELETE: %#v", err)
	}
	if _, _, err := c.GetUser(ctx, ""); err == nil {
		t.Error("GetUser with an empty id")
	}
}

func TestPatchNoContentAndPathEscaping(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{PatchNoContent: true})
	c := newClient(t, srv)
	id := srv.Seed(map[string]any{"id": "a/b c?d", "userName": "odd"})
	r, res, err := c.PatchUser(ctx, id, []PatchOp{{Op: "replace", Path: "active", Value: false}})
	if err != nil || r != nil || res.Status != http.StatusNoContent {
		t.Fatalf("PATCH answered 204: %v %+v %v", r, res, err)
	}
	u, _ := srv.UserByID(id)
	if u.Get("active") != false {
		t.Errorf("user %v", u.Attributes)
	}
	if got, _, err := c.GetUser(ctx, id); err != nil || got["id"] != id {
		t.Fatalf("GET of an id needing escapes: %v %v", got, err)
	}
	if srv.CountRequests("GET", "/Users/a/b c?d") != 1 {
		t.Errorf("requests %+v", srv.Requests())
	}
}

func TestServiceProviderConfig(t *testing.T) {
	for _, disable := range []bool{false, true} {
		srv := scimtest.New(t, scimtest.Options{DisablePatch: disable, MaxResults: 50})
		spc, res, err := newClient(t, srv).ServiceProviderConfig(context.Background())
		if err != nil || res.Status != 200 {
			t.Fatal(err)
		}
		want := ServiceProviderConfig{PatchSupported: !disable, FilterSupported: true, FilterMaxResults: 50}
		if spc != want {
			t.Errorf("got %+v, want %+v", spc, want)
		}
		if disable {
			id := srv.Seed(map[string]any{"userName": "x"})
			_, _, err := newClient(t, srv).PatchUser(context.Background(), id, []PatchOp{{Op: "add", Path: "active", Value: true}})
			if !IsStatus(err, http.StatusMethodNotAllowed) {
				t.Errorf("PATCH on a server without it: %v", err)
			}
		}
	}
}

func TestListUsersPages(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{MaxResults: 2})
	for i := range 5 {
		srv.Seed(map[string]any{"userName": fmt.Sprintf("u%d", i)})
	}
	c := newClient(t, srv)
	var names []string
	for start := 1; ; {
		page, _, err := c.ListUsers(context.Background(), "", start, 10)
		if err != nil {
			t.Fatal(err)
		}
		if page.TotalResults != 5 || page.StartIndex != start || page.ItemsPerPage != 2 {
			t.Fatalf("page %+v", page)
		}
		for _, r := range page.Resources {
			names = append(names, r["userName"].(string))
		}
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			break
		}
	}
	if strings.Join(names, ",") != "u0,u1,u2,u3,u4" {
		t.Errorf("names %v", names)
	}
	q := srv.Requests()[0].RawQuery
	if q != "count=10&startIndex=1" {
		t.Errorf("query %q", q)
	}
}

func TestConflictIsDecoded(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv)
	if _, _, err := c.CreateUser(context.Background(), user("bob")); err != nil {
		t.Fatal(err)
	}
	_, res, err := c.CreateUser(context.Background(), user("BOB"))
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err %v", err)
	}
	if se.Status != 409 || se.ScimType != "uniqueness" || ScimType(err) != "uniqueness" || se.Detail == "" || !IsStatus(err, 409) {
		t.Errorf("error %#v", se)
	}
	if res.Attempts != 1 || res.Status != 409 || IsRetryable(err) {
		t.Errorf("result %+v retryable %v", res, IsRetryable(err))
	}
	if !strings.Contains(err.Error(), "scim POST /Users: 409 Conflict (uniqueness)") {
		t.Errorf("message %q", err.Error())
	}
}

func TestBadRequestIsNotRetried(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	srv.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if attrs["userName"] == "refused" {
			return &scimtest.Fault{Detail: "mail domain refused"}
		}
		return nil
	})
	c := newClient(t, srv, func(c *Config) { c.MaxAttempts = 0 })
	_, res, err := c.CreateUser(context.Background(), user("refused"))
	if !IsStatus(err, 400) || ScimType(err) != "invalidValue" || res.Attempts != 1 || srv.CountRequests("POST", "") != 1 {
		t.Fatalf("err %v result %+v", err, res)
	}
	if _, _, err := c.CreateUser(context.Background(), user("accepted")); err != nil {
		t.Fatal(err)
	}
}

func TestRetriesUntilSuccess(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = log })
	srv.Inject(scimtest.Fault{Method: "POST", Times: 3, Status: 503})
	created, res, err := c.CreateUser(context.Background(), user("carol"))
	if err != nil || created["id"] == nil {
		t.Fatal(err)
	}
	if res.Attempts != 4 || res.Status != 201 || srv.CountRequests("POST", "/Users") != 4 || len(srv.Users()) != 1 {
		t.Errorf("result %+v, %d POSTs", res, srv.CountRequests("POST", "/Users"))
	}
	retries := logs.FilterMessage(MsgRetry).All()
	if len(retries) != 3 {
		t.Fatalf("%d retry lines", len(retries))
	}
	for i, e := range retries {
		f := e.ContextMap()
		if e.Level != zapcore.WarnLevel || f["method"] != "POST" || f["path"] != "/Users" || f["status"] != int64(503) ||
			f["attempt"] != int64(i+1) || f["retry_in_ms"] == nil {
			t.Errorf("retry line %d: %v %v", i, e.Level, f)
		}
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = log })
	srv.Inject(scimtest.Fault{Method: "GET", Times: 1, Status: 429, RetryAfter: "1"})
	_, res, err := c.ListUsers(context.Background(), "", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Duration < 900*time.Millisecond {
		t.Errorf("result %+v: the wait ignored Retry-After: 1", res)
	}
	retries := logs.FilterMessage(MsgRetry).All()
	if len(retries) != 1 || retries[0].ContextMap()["retry_in_ms"] != int64(1000) || retries[0].ContextMap()["status"] != int64(429) {
		t.Errorf("retry lines %v", retries)
	}
}

func TestRetryAfterZeroStillBacksOff(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) {
		c.Logger = log
		c.MinBackoff = 20 * time.Millisecond
		c.MaxBackoff = 40 * time.Millisecond
	})
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	srv.Inject(scimtest.Fault{Method: "GET", Times: 2, Status: 429, RetryAfter: "0"})
	srv.Inject(scimtest.Fault{Method: "GET", Times: 2, Status: 503, RetryAfter: past})
	if _, _, err := c.ListUsers(context.Background(), "", 1, 1); err != nil {
		t.Fatal(err)
	}
	retries := logs.FilterMessage(MsgRetry).All()
	if len(retries) != 4 {
		t.Fatalf("%d retry lines, want 4", len(retries))
	}
	for _, e := range retries {
		if ms, _ := e.ContextMap()["retry_in_ms"].(int64); ms < 20 {
			t.Errorf("waited %d ms after %v: a server saying Retry-After 0 or a past date made a tight loop", ms, e.ContextMap())
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"86400", MaxRetryAfter, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDroppedConnectionIsRetried(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = log })
	srv.Inject(scimtest.Fault{Method: "POST", Times: 1, Drop: true})
	_, res, err := c.CreateUser(context.Background(), user("dave"))
	if err != nil || res.Attempts != 2 || len(srv.Users()) != 1 {
		t.Fatalf("err %v result %+v users %d", err, res, len(srv.Users()))
	}
	retries := logs.FilterMessage(MsgRetry).All()
	if len(retries) != 1 || retries[0].ContextMap()["error"] == nil {
		t.Errorf("retry lines %v", retries)
	}
}

// A POST whose response is lost was applied: the retry meets a 409, as
// CreateUser documents, and the caller adopts the account.
func TestLostCreateResponseGivesConflict(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv)
	srv.Inject(scimtest.Fault{Method: "POST", Times: 1, DropResponse: true})
	_, res, err := c.CreateUser(context.Background(), user("erin"))
	if !IsStatus(err, http.StatusConflict) || ScimType(err) != "uniqueness" || res.Attempts != 2 {
		t.Fatalf("err %v result %+v", err, res)
	}
	list, _, err := c.ListUsers(context.Background(), FilterEq("userName", "erin"), 1, 2)
	if err != nil || list.TotalResults != 1 {
		t.Fatalf("lookup %+v %v", list, err)
	}
}

// An attempt is cut at Timeout, whether the server is slow to answer or
// stalls in the middle of its body: the attempt is made again, and the
// last one's error names the timeout, matches context.DeadlineExceeded
// and stays retryable (it is not the caller's context ending).
func TestAttemptCutAtTimeout(t *testing.T) {
	config := []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],"patch":{"supported":true}}`)
	for _, tc := range []struct {
		name  string
		fault scimtest.Fault
	}{
		{"slow headers", scimtest.Fault{Method: "GET", Times: 1, Latency: 10 * time.Second}},
		{"stalled body", scimtest.Fault{Method: "GET", Times: 1, Status: 200, Body: config, ContentType: MediaType, StallBody: 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := scimtest.New(t, scimtest.Options{})
			c := newClient(t, srv, func(c *Config) { c.Timeout = 100 * time.Millisecond })
			srv.Inject(tc.fault)
			_, res, err := c.ServiceProviderConfig(context.Background())
			if err != nil || res.Attempts != 2 || res.Status != 200 {
				t.Fatalf("err %v result %+v", err, res)
			}
			if res.Duration > 5*time.Second {
				t.Errorf("the attempt was not cut at Timeout: %v", res.Duration)
			}

			once := newClient(t, srv, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.MaxAttempts = 1 })
			srv.Inject(tc.fault)
			_, _, err = once.ServiceProviderConfig(context.Background())
			if err == nil || !strings.Contains(err.Error(), "no complete answer within the timeout of 100ms") {
				t.Fatalf("err %v: want it to name the attempt's timeout", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
				t.Errorf("err %v: want it to match context.DeadlineExceeded and be retryable", err)
			}
		})
	}
}

// CloseIdleConnections reaches the connections below the client's own
// transports (the attempt's timeout, the authorization): the next
// request comes on a new connection.
func TestCloseIdleConnections(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv)
	for range 2 {
		if _, _, err := c.ServiceProviderConfig(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	c.CloseIdleConnections()
	if _, _, err := c.ServiceProviderConfig(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[0].RemoteAddr != reqs[1].RemoteAddr || reqs[1].RemoteAddr == reqs[2].RemoteAddr {
		t.Errorf("connections %v: want the first two requests on one, the third on a new one", remoteAddrs(reqs))
	}
}

func remoteAddrs(reqs []scimtest.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.RemoteAddr
	}
	return out
}

func TestMaxAttempts(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv, func(c *Config) { c.MaxAttempts = 3 })
	srv.Inject(scimtest.Fault{Status: 500, Detail: "database on fire"})
	_, res, err := c.GetUser(context.Background(), "x")
	var se *Error
	if !errors.As(err, &se) || se.Status != 500 || se.Detail != "database on fire" {
		t.Fatalf("err %#v", err)
	}
	if res.Attempts != 3 || res.Status != 500 || srv.CountRequests("GET", "") != 3 || !IsRetryable(err) {
		t.Errorf("result %+v, %d requests, retryable %v", res, srv.CountRequests("GET", ""), IsRetryable(err))
	}

	// 501 says the server will never do it: not retried.
	srv.ClearFaults()
	srv.ResetRequests()
	srv.Inject(scimtest.Fault{Status: 501})
	_, res, err = c.GetUser(context.Background(), "x")
	if !IsStatus(err, 501) || res.Attempts != 1 || IsRetryable(err) {
		t.Errorf("501: %v %+v", err, res)
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	srv.Inject(scimtest.Fault{Status: 503, RetryAfter: "3600"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The retry line is logged just before the wait: cancel then.
	core, _ := observer.New(zapcore.DebugLevel)
	log := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == MsgRetry {
			cancel()
		}
		return nil
	}))
	c := newClient(t, srv, func(c *Config) {
		c.MaxAttempts = 0
		c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour
	})
	_, res, err := c.CreateUser(ContextWithLogger(ctx, log), user("frank"))
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Fatalf("err %v", err)
	}
	var se *Error
	if errors.As(err, &se) {
		t.Errorf("a cancelled call returned an *Error: %v", err)
	}
	if res.Attempts != 1 || res.Duration > 10*time.Second {
		t.Errorf("result %+v", res)
	}
}

func TestDeadlineDuringAttempt(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	srv.Inject(scimtest.Fault{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := newClient(t, srv, func(c *Config) { c.MaxAttempts = 0 })
	_, res, err := c.GetUser(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) || IsRetryable(err) || res.Attempts != 1 {
		t.Fatalf("err %v result %+v", err, res)
	}
	if strings.Contains(err.Error(), "within the timeout") {
		t.Errorf("err %v: the caller's deadline is not the attempt's timeout", err)
	}
}

func TestFilterEq(t *testing.T) {
	for _, tc := range []struct {
		value, want string
	}{
		{"alice@example.com", `userName eq "alice@example.com"`},
		{`o"brien`, `userName eq "o\"brien"`},
		{`back\slash`, `userName eq "back\\slash"`},
		{`\"`, `userName eq "\\\""`},
		{"zoë 日本", `userName eq "zoë 日本"`},
		{"a<b>&c", `userName eq "a<b>&c"`},
		{"tab\there\nnl", `userName eq "tab\there\nnl"`},
		{"ctl\x01\x1f\x7f", `userName eq "ctl\u0001\u001F\u007F"`},
		{"bad\xffutf8", "userName eq \"bad\uFFFDutf8\""},
		{"", `userName eq ""`},
	} {
		if got := FilterEq("userName", tc.value); got != tc.want {
			t.Errorf("FilterEq(%q) = %s, want %s", tc.value, got, tc.want)
		}
	}

	// The strict server finds exactly the account each filter names.
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv)
	names := []string{`o"brien`, `o\"brien`, `back\slash`, "zoë 日本", "a<b>&c", "tab\there", `o'brien`}
	for _, n := range names {
		if _, _, err := c.CreateUser(context.Background(), user(n)); err != nil {
			t.Fatalf("create %q: %v", n, err)
		}
	}
	for _, n := range names {
		for _, attr := range []string{"userName", "externalId"} {
			v := n
			if attr == "externalId" {
				v = "ext-" + n
			}
			list, _, err := c.ListUsers(context.Background(), FilterEq(attr, v), 1, 10)
			if err != nil {
				t.Fatalf("%s: %v", FilterEq(attr, v), err)
			}
			if list.TotalResults != 1 || list.Resources[0]["userName"] != n {
				t.Errorf("%s found %+v", FilterEq(attr, v), list)
			}
		}
	}
}

func TestTLSVerification(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{TLS: true})
	// MaxAttempts 0: an untrusted certificate must end the call, not be
	// retried for ever.
	c := newClient(t, srv, func(c *Config) { c.RootCAs = nil; c.MaxAttempts = 0 })
	_, res, err := c.ServiceProviderConfig(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") || res.Attempts != 1 || IsRetryable(err) {
		t.Fatalf("without the CA: err %v result %+v", err, res)
	}
	if srv.CountRequests("", "") != 0 {
		t.Error("a request got through an unverified connection")
	}
	c = newClient(t, srv)
	if _, _, err := c.ServiceProviderConfig(context.Background()); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
}

func TestResponseTooLarge(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	id := srv.Seed(map[string]any{"userName": "big", "displayName": strings.Repeat("x", 4096)})
	c := newClient(t, srv, func(c *Config) { c.MaxResponseBytes = 1024; c.MaxAttempts = 0 })
	_, res, err := c.GetUser(context.Background(), id)
	if !errors.Is(err, ErrResponseTooLarge) || res.Attempts != 1 || IsRetryable(err) {
		t.Fatalf("err %v result %+v", err, res)
	}
	// An error body is cut at the limit: the status is what matters.
	// (A 400: a 404 that is not a SCIM error would be retried.)
	srv.Inject(scimtest.Fault{Times: 1, Status: 400, Body: []byte(strings.Repeat("y", 2048))})
	_, _, err = c.GetUser(context.Background(), id)
	var se *Error
	if !errors.As(err, &se) || se.Status != 400 || se.Detail != strings.Repeat("y", 200)+"…" {
		t.Fatalf("error body: %v", err)
	}
	// At the limit is fine.
	small := srv.Seed(map[string]any{"userName": "small"})
	if _, _, err := c.GetUser(context.Background(), small); err != nil {
		t.Fatal(err)
	}
}

func TestErrorBodies(t *testing.T) {
	for _, tc := range []struct {
		name        string
		body        string
		contentType string
		wantType    string
		wantDetail  string
	}{
		{"SCIM status string", `{"schemas":["` + ErrorSchema + `"],"status":"400","scimType":"invalidValue","detail":"bad mail"}`, MediaType, "invalidValue", "bad mail"},
		{"SCIM status number", `{"status":400,"scimType":"invalidSyntax","detail":"bad\njson"}`, "application/json", "invalidSyntax", "bad json"},
		{"other JSON", `{"error":"nope","message":"go away"}`, "application/json", "", `{"error":"nope","message":"go away"}`},
		{"HTML page", "<html><head><style>p{}</style></head><body><h1>400 Bad Request</h1>\n<p>nginx</p></body></html>", "text/html", "", "400 Bad Request nginx"},
		{"long text", strings.Repeat("z", 300), "text/plain", "", strings.Repeat("z", 200) + "…"},
		{"empty", "", "text/plain", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := scimtest.New(t, scimtest.Options{})
			srv.Inject(scimtest.Fault{Status: 400, Body: []byte(tc.body), ContentType: tc.contentType})
			_, _, err := newClient(t, srv).GetUser(context.Background(), "x")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err %v", err)
			}
			if se.Status != 400 || se.ScimType != tc.wantType || se.Detail != tc.wantDetail {
				t.Errorf("got %#v", se)
			}
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	srv.Inject(scimtest.Fault{Times: 1, Status: http.StatusPermanentRedirect,
		Header: http.Header{"Location": {"http://elsewhere.example/scim/v2/Users"}}})
	_, res, err := newClient(t, srv).ListUsers(context.Background(), "", 0, 0)
	var se *Error
	if !errors.As(err, &se) || se.Status != 308 || !strings.Contains(se.Detail, "http://elsewhere.example/scim/v2/Users") ||
		res.Attempts != 1 || IsRetryable(err) {
		t.Fatalf("err %v result %+v", err, res)
	}
	if n := srv.CountRequests("", ""); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestSuccessMustBeJSON(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	srv.Inject(scimtest.Fault{Times: 1, Status: 200, Body: []byte("<html>captive portal</html>")})
	_, _, err := newClient(t, srv).ServiceProviderConfig(context.Background())
	if !errors.Is(err, ErrInvalidResponse) || IsRetryable(err) {
		t.Fatalf("err %v", err)
	}
	srv.Inject(scimtest.Fault{Times: 1, Status: 200, Body: []byte(`{"patch":{"supported":"true"},"filter":{"supported":true,"maxResults":"7"}}`), ContentType: "application/json"})
	spc, _, err := newClient(t, srv).ServiceProviderConfig(context.Background())
	if err != nil || !spc.PatchSupported || spc.FilterMaxResults != 7 {
		t.Fatalf("lenient config: %+v %v", spc, err)
	}
}

func TestContextLogger(t *testing.T) {
	srv := scimtest.New(t, scimtest.Options{})
	base, baseLogs := observed()
	ctxLog, ctxLogs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = base })
	srv.Inject(scimtest.Fault{Times: 1, Status: 502})
	ctx := ContextWithLogger(context.Background(), ctxLog.With(zap.Uint32("uid", 42)))
	if _, _, err := c.ListUsers(ctx, "", 0, 0); err != nil {
		t.Fatal(err)
	}
	if baseLogs.Len() != 0 || ctxLogs.Len() != 1 || ctxLogs.All()[0].ContextMap()["uid"] != uint32(42) {
		t.Errorf("base %v ctx %v", baseLogs.All(), ctxLogs.All())
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	const token = "s3cr3t-T0KEN-do-not-log"
	srv := scimtest.New(t, scimtest.Options{Token: token})
	log, logs := observed()
	c := newClient(t, srv, func(c *Config) { c.Logger = log; c.MaxAttempts = 3 })
	var errs []error
	call := func(faults ...scimtest.Fault) {
		srv.ClearFaults()
		for _, f := range faults {
			srv.Inject(f)
		}
		_, _, err := c.CreateUser(context.Background(), user(fmt.Sprint("u", len(errs))))
		errs = append(errs, err)
	}
	// Servers quoting the request's Authorization header back.
	call(scimtest.Fault{Times: 2, Status: 503, Detail: "Bearer " + token + " is rate limited"},
		scimtest.Fault{Times: 1, Status: 400, Detail: "token " + token + " refused"})
	call(scimtest.Fault{Status: 502, Body: []byte("<html>Authorization: Bearer " + token + "</html>")})
	call(scimtest.Fault{Status: 401, Body: []byte(`{"error":"` + token + `"}`), ContentType: "application/json"})
	call(scimtest.Fault{Times: 3, Drop: true})
	call(scimtest.Fault{Times: 1, Status: 200, Body: []byte("not json " + token)})
	// A wrong token, and an untrusted certificate.
	wrong := newClient(t, srv, func(c *Config) { c.Token = token + "-old"; c.Logger = log })
	_, _, err := wrong.GetUser(context.Background(), "x")
	errs = append(errs, err)
	tlsSrv := scimtest.New(t, scimtest.Options{Token: token, TLS: true})
	_, _, err = newClient(t, tlsSrv, func(c *Config) { c.RootCAs = nil; c.Logger = log }).GetUser(context.Background(), "x")
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d succeeded", i)
			continue
		}
		if strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprintf("%#v", err), token) {
			t.Errorf("call %d: the error holds the token: %v", i, err)
		}
		var se *Error
		if errors.As(err, &se) && strings.Contains(se.Detail, token) {
			t.Errorf("call %d: Detail holds the token", i)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the test proves nothing")
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, token) {
			t.Errorf("a log line holds the token: %s", line)
		}
	}
	// And the request log never kept it either.
	if slices.ContainsFunc(srv.Requests(), func(r scimtest.Request) bool { return strings.Contains(fmt.Sprint(r.Header), token) }) {
		t.Error("scimtest kept the token")
	}
}

func TestRequestTimeoutIsRetried(t *testing.T) {
	// 408 comes from a proxy that gave up before the server took the
	// request: parking the user for it would be wrong.
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv)
	srv.Inject(scimtest.Fault{Method: "POST", Times: 1, Status: http.StatusRequestTimeout})
	_, res, err := c.CreateUser(context.Background(), user("behindproxy"))
	if err != nil || res.Attempts != 2 || res.Status != http.StatusCreated {
		t.Fatalf("err %v, result %+v; want a retry that succeeds", err, res)
	}
}

func TestEncodedTokenNeverLeaks(t *testing.T) {
	const token = "AbCdEf0123/xyzSECRET+tok=="
	tests := []struct{ name, quoted string }{
		{"JSON with / escaped (PHP)", strings.ReplaceAll(token, "/", `\/`)},
		{"URL-escaped", url.QueryEscape(token)},
		{"as sent", token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := scimtest.New(t, scimtest.Options{Token: token})
			c := newClient(t, srv)
			srv.Inject(scimtest.Fault{Times: 1, Status: http.StatusForbidden, ContentType: "application/json",
				Body: []byte(`{"error":"forbidden","token":"` + tt.quoted + `"}`)})
			_, _, err := c.GetUser(context.Background(), "x")
			if err == nil || !strings.Contains(err.Error(), "[REDACTED]") {
				t.Fatalf("err = %v, want the quoted token redacted", err)
			}
			if strings.Contains(err.Error(), "xyzSECRET") {
				t.Fatalf("the error holds the token: %v", err)
			}
		})
	}
}
