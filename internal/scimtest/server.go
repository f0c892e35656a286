// Package scimtest runs a real, strict SCIM 2.0 server in-process on
// loopback, for the tests and the demo.
//
// The protocol work is done by github.com/elimity-com/scim with the core
// User schema and the enterprise User extension; this package adds an
// in-memory store, the checks a strict production server makes (bearer
// token, application/scim+json, no read-only attributes in request bodies,
// case-insensitive userName uniqueness, lowercase PATCH ops), fault
// injection (5xx, 429 + Retry-After, latency, dropped connections, lost
// responses) and a log of every request received, so that tests can assert
// both the server's final state and what a client sent to reach it.
//
// Options switch on the behaviours of real servers a client must cope
// with: ETags enforced with If-Match (412), a POST answering 200 with the
// existing account, a filter that is ignored (SetFilter changes it while
// the server runs), value filters in PATCH paths refused or ignored, no
// /ServiceProviderConfig,
// a rate limit answering 429, OAuth 2 client credentials with short-lived
// tokens, HTTP basic authentication and TLS client certificates (mTLS,
// with a CA made in-process). HTMLNotFound is a non-SCIM 404 to inject,
// and BeforeServe lets a test edit an account between two requests.
//
//	srv := scimtest.New(t, scimtest.Options{})
//	client := newClient(srv.URL, srv.Token)
//	srv.Inject(scimtest.Fault{Method: "POST", Status: 503, Times: 2})
//	... // run the code under test
//	u, ok := srv.UserByUserName("alice@example.com")
//	n := srv.CountRequests("POST", "/Users")
package scimtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	"golang.org/x/time/rate"
)

const (
	// DefaultToken is the bearer token required when Options.Token is empty.
	DefaultToken = "test-token"
	// BasePath is the path of the SCIM root on the server; Server.URL ends
	// with it.
	BasePath = "/scim/v2"
	// DefaultMaxResults is the page-size cap of GET /Users when
	// Options.MaxResults is zero.
	DefaultMaxResults = 100
	// MediaType is the only request Content-Type the server accepts for
	// bodies (RFC 7644 §3.1).
	MediaType = "application/scim+json"

	errorSchema    = "urn:ietf:params:scim:api:messages:2.0:Error"
	maxRequestBody = 4 << 20
)

// Options configures a Server. The zero value is a plain-HTTP server on a
// free 127.0.0.1 port that requires DefaultToken.
type Options struct {
	// Token is the bearer token required on every request (a 401 SCIM
	// error otherwise). Default DefaultToken.
	Token string
	// Addr is the listen address; it must be a loopback address. Default
	// "127.0.0.1:0" (a free port).
	Addr string
	// DisablePatch makes ServiceProviderConfig say patch.supported=false
	// and answers every PATCH with 405, as servers without PATCH do.
	DisablePatch bool
	// DisableFilter makes ServiceProviderConfig say filter.supported=false
	// and answers every filtered list with 400 invalidFilter.
	DisableFilter bool
	// PatchNoContent makes a successful PATCH answer 204 with no body
	// instead of 200 with the resource (both are allowed by RFC 7644
	// §3.5.2), so that clients are tested against both.
	PatchNoContent bool
	// MaxResults caps the page size of GET /Users (default
	// DefaultMaxResults); a larger count is capped, as RFC 7644 §3.4.2.4
	// allows.
	MaxResults int
	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1; the
	// certificate is available from CertPool and CACertPEM.
	TLS bool
	// Logf, when set, receives one line per request and server errors.
	Logf func(format string, args ...any)

	// ETags makes the server enforce If-Match (RFC 7644 §3.14) on PATCH,
	// PUT and DELETE of /Users/{id}: a write whose If-Match names another
	// version than the account's meta.version gets 412, and
	// ServiceProviderConfig says etag.supported=true. (meta.version and
	// the ETag header of a GET are sent either way.)
	ETags bool
	// NoGroups serves Users only, as servers without groups do: /Groups
	// answers 404 and /ResourceTypes lists no Group.
	NoGroups bool
	// GroupsWithoutMembers makes GET /Groups answer groups without their
	// members, as AWS IAM Identity Center does: a client must remember
	// what it pushed.
	GroupsWithoutMembers bool
	// GroupsDropMembersOnCreate makes a POST /Groups store the group
	// without the members it carries, unchecked, and answer without them,
	// as servers do that take members only through PATCH (the way Entra
	// ID sends them): a client must add them afterwards.
	GroupsDropMembersOnCreate bool
	// UniqueGroupExternalID answers 409 to a group whose externalId
	// another group already has, as servers that key groups by it do
	// (displayName is unique on every server here).
	UniqueGroupExternalID bool
	// MaxMembersPerRequest refuses (400) a request that adds or removes
	// more members of a group than this (AWS allows 100); 0 = no limit.
	MaxMembersPerRequest int
	// KeepMembersOfDeletedUsers leaves a deleted user's id in the groups
	// it was a member of (most servers drop it, as this one does by
	// default).
	KeepMembersOfDeletedUsers bool
	// LenientCreate makes a POST whose userName is taken answer 200 with
	// the existing account, unchanged, instead of 409: what a lenient
	// server does. A POST /Groups whose displayName is taken answers the
	// same way with the existing group.
	LenientCreate bool
	// DropOnCreate names top-level attributes a POST /Users leaves out of
	// the account it creates (answered 201 without them), as servers that
	// take some attributes only on a later PATCH or PUT do.
	DropOnCreate []string
	// Filter is how a filtered GET /Users is answered (default
	// FilterHonoured; see FilterIgnored and FilterCountOnly). SetFilter
	// changes it while the server runs.
	Filter FilterMode
	// NoValueFilterPaths answers a PATCH with an operation whose path
	// holds a value filter (`emails[type eq "work"].value`) with 400
	// invalidPath, as servers that take only plain attribute paths do.
	NoValueFilterPaths bool
	// IgnoreValueFilterPaths answers such a PATCH with success but leaves
	// what the filtered operation names unchanged (the other operations
	// apply), as a server that drops what it cannot parse does.
	IgnoreValueFilterPaths bool
	// NoServiceProviderConfig answers /ServiceProviderConfig with a 404,
	// as GitLab's and vCenter's SCIM endpoints do.
	NoServiceProviderConfig bool
	// RateLimit, when positive, allows that many SCIM requests a second
	// (a token bucket holding RateBurst, default RateLimit rounded up);
	// a request above it gets 429 with Retry-After: 1. RateLimited
	// counts them. The token endpoint is not limited.
	RateLimit float64
	RateBurst int
	// OAuth2, when set, serves a client-credentials token endpoint at
	// TokenURL, and the SCIM endpoints accept the tokens it issued, each
	// until it expires, instead of Token.
	OAuth2 *OAuth2
	// Basic, when set, makes the SCIM endpoints require HTTP basic
	// authentication with these credentials instead of a bearer token.
	Basic *BasicAuth
	// ClientCA, when set, makes the server require a TLS client
	// certificate issued by this CA (mTLS): a client without one fails
	// its TLS handshake. It implies TLS.
	ClientCA *CA
	// WorkPerRequest, when positive, makes the server spend CPU on every
	// SCIM request before answering it: that many rounds of SHA-256, as a
	// real server spends it on hashing a credential or writing its
	// database. On a machine shared with the client the server, not the
	// client, is then the bottleneck, as a production server of the
	// capacity chosen would be (the benchmarks compare the agent's
	// throughput with the server's own).
	WorkPerRequest int
	// WaitPerWrite, when positive, holds the answer to every write
	// (POST, PUT, PATCH, DELETE) of /Users that long after applying it,
	// as a server's database commit does: the requests wait in parallel,
	// holding no lock and no CPU, so a server that mostly waits is
	// bounded by how many requests its clients keep in flight.
	WaitPerWrite time.Duration
}

// Server is a running SCIM server. All methods are safe for concurrent use.
type Server struct {
	// URL is the SCIM base URL, e.g. http://127.0.0.1:40123/scim/v2.
	URL string
	// Token is the bearer token the server required when it started
	// (SetToken changes what it requires).
	Token string
	// TokenURL is the URL of the OAuth 2 token endpoint with
	// Options.OAuth2, else "".
	TokenURL string

	opts      Options
	ts        *httptest.Server
	scim      http.Handler
	patcher   *patcher
	closed    chan struct{}
	closeOnce sync.Once

	groupPatcher *patcher

	mu      sync.Mutex // guards the store
	users   map[string]*user
	groups  map[string]*user // the groups, kept like users
	names   names            // userName index of users
	seq     uint64           // insertion order, for stable listing
	version uint64           // source of meta.version

	fmu           sync.Mutex // guards faults, reject, rejectGroup, before, filter, down, token, the token endpoint's state and limited
	faults        []*faultState
	filter        FilterMode
	reject        func(method string, attrs map[string]any) *Fault
	rejectGroup   func(method string, attrs map[string]any) *Fault
	before        func(Request)
	down          bool
	token         string
	issued        map[string]time.Time // OAuth 2 access token → expiry
	tokenRequests int
	tokensIssued  int
	limited       int // requests answered 429 by the rate limit
	limiter       *rate.Limiter

	worked atomic.Int64  // rounds of Options.WorkPerRequest spent
	waited atomic.Int64  // writes held for Options.WaitPerWrite
	digest atomic.Uint32 // the last round's result, kept so the work is done

	lmu  sync.Mutex // guards reqs and the Requests they point to
	reqs []*Request
}

// Start starts a server; Close stops it.
func Start(opts Options) (*Server, error) {
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxResults <= 0 {
		opts.MaxResults = DefaultMaxResults
	}
	if opts.ClientCA != nil {
		opts.TLS = true
	}
	if opts.OAuth2 != nil && opts.Basic != nil {
		return nil, errors.New("scimtest: Options.OAuth2 and Options.Basic exclude each other")
	}
	if err := checkLoopback(opts.Addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("scimtest: listen on %s: %w", opts.Addr, err)
	}
	s := &Server{
		Token:        opts.Token,
		token:        opts.Token,
		opts:         opts,
		closed:       make(chan struct{}),
		users:        map[string]*user{},
		groups:       map[string]*user{},
		names:        names{},
		patcher:      newPatcher(),
		groupPatcher: newGroupPatcher(),
		issued:       map[string]time.Time{},
		limiter:      newRateLimiter(opts),
		filter:       opts.Filter,
	}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	s.URL = scheme + "://" + ln.Addr().String() + BasePath
	if opts.OAuth2 != nil {
		s.TokenURL = scheme + "://" + ln.Addr().String() + TokenPath
	}

	handler, err := s.newSCIMHandler()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	s.scim = http.StripPrefix(BasePath, handler)

	errLog := log.New(io.Discard, "", 0)
	if opts.Logf != nil {
		errLog = log.New(logfWriter(opts.Logf), "scimtest: ", 0)
	}
	s.ts = &httptest.Server{
		Listener: ln,
		Config:   &http.Server{Handler: s, ErrorLog: errLog, ReadHeaderTimeout: 10 * time.Second},
	}
	if opts.ClientCA != nil {
		s.ts.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: opts.ClientCA.Pool()}
	}
	if opts.TLS {
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	return s, nil
}

// New starts a server for one test and closes it when the test ends. It
// fails the test when the server cannot start.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("scimtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: requests waiting on an injected latency end at
// once, then Close waits for the handlers still running.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ts.Close()
	})
}

// CertPool returns a pool holding the server's self-signed certificate
// (nil without Options.TLS), for a client's RootCAs.
func (s *Server) CertPool() *x509.CertPool {
	if !s.opts.TLS {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ts.Certificate())
	return pool
}

// CACertPEM returns the server's self-signed certificate in PEM (nil
// without Options.TLS), for a config's CA file.
func (s *Server) CACertPEM() []byte {
	if !s.opts.TLS {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
}

// newSCIMHandler builds the elimity server: core User schema plus the
// enterprise extension, backed by this server's store.
func (s *Server) newSCIMHandler() (http.Handler, error) {
	users := scim.ResourceType{
		ID:          optional.NewString("User"),
		Name:        "User",
		Endpoint:    "/Users",
		Description: optional.NewString("User Account"),
		Schema:      schema.CoreUserSchema(),
		SchemaExtensions: []scim.SchemaExtension{
			{Schema: schema.ExtensionEnterpriseUser()},
		},
		Handler: userHandler{s},
	}
	config := &scim.ServiceProviderConfig{
		SupportFiltering: !s.opts.DisableFilter,
		SupportPatch:     !s.opts.DisablePatch,
		MaxResults:       s.opts.MaxResults,
		AuthenticationSchemes: []scim.AuthenticationScheme{{
			Type:        scim.AuthenticationTypeOauthBearerToken,
			Name:        "OAuth Bearer Token",
			Description: "Authentication with a bearer token (RFC 6750)",
			Primary:     true,
		}},
	}
	types := []scim.ResourceType{users, s.groupResourceType()}
	if s.opts.NoGroups {
		types = types[:1]
	}
	srv, err := scim.NewServer(&scim.ServerArgs{
		ServiceProviderConfig: config,
		ResourceTypes:         types,
	}, scim.WithBaseURL(s.URL))
	if err != nil {
		return nil, fmt.Errorf("scimtest: build the SCIM server: %w", err)
	}
	return srv, nil
}

// ServeHTTP records the request and answers it: SetDown, injected faults,
// the strict checks, then the SCIM handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	rec := Request{
		Method:      r.Method,
		Path:        relPath(r.URL.Path),
		RawQuery:    r.URL.RawQuery,
		Query:       r.URL.Query(),
		Body:        body,
		ContentType: r.Header.Get("Content-Type"),
		Header:      r.Header.Clone(),
		RemoteAddr:  r.RemoteAddr,
		Time:        start,
	}
	rec.Header.Del("Authorization")
	rec.Header.Del("Cookie")
	if rec.Path == TokenPath {
		rec.Body = redactForm(body)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.ClientCert = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	// The request is logged on arrival, so the log holds it even when the
	// client gives up first, and completed before the client can see the
	// outcome: a normal answer is flushed after ServeHTTP returns, a
	// dropped connection is closed after sw.record runs.
	logged := new(Request)
	*logged = rec
	s.lmu.Lock()
	s.reqs = append(s.reqs, logged)
	s.lmu.Unlock()
	s.beforeServe(*logged)
	sw := &statusWriter{ResponseWriter: w}
	var once sync.Once
	sw.record = func() {
		once.Do(func() {
			s.lmu.Lock()
			logged.Status, logged.Faulted, logged.Duration = sw.status, rec.Faulted, time.Since(start)
			s.lmu.Unlock()
			s.logf("%s %s%s -> %d%s", rec.Method, rec.Path, queryPart(rec.RawQuery), sw.status, faultNote(rec))
		})
	}
	s.serve(sw, r, &rec, body, readErr)
	sw.record()
}

// serve answers one request: SetDown, then an injected fault, then the
// strict checks and the SCIM handler (whose answer a Reject hook or a
// DropResponse fault may replace).
func (s *Server) serve(w *statusWriter, r *http.Request, rec *Request, body []byte, readErr error) {
	switch {
	case readErr != nil:
		writeError(w, http.StatusBadRequest, "", "cannot read the request body: "+readErr.Error())
		return
	case len(body) > maxRequestBody:
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the request body exceeds %d bytes", maxRequestBody))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	if s.isDown() {
		rec.Faulted = true
		writeError(w, http.StatusServiceUnavailable, "", "the server is down (scimtest SetDown)")
		return
	}
	var lost *Fault
	var hold time.Duration
	if f := s.takeFault(r.Method, rec.Path); f != nil {
		rec.Faulted = true
		hold = f.Hold
		if f.DropResponse {
			lost = f
			f = &Fault{Latency: f.Latency}
		}
		if !s.applyFault(w, r, f) {
			return
		}
	}

	if s.opts.OAuth2 != nil && rec.Path == TokenPath {
		s.tokenRequest(w, r)
		return
	}
	if isSCIMPath(r.URL.Path) && s.overLimit() {
		rec.Faulted = true
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "", fmt.Sprintf("rate limit: at most %g requests a second", s.opts.RateLimit))
		return
	}

	// The answer is built in a buffer, so that a Reject hook can replace
	// it and a DropResponse fault can discard it after the change was
	// applied.
	buf := httptest.NewRecorder()
	hr := &hookResult{}
	if s.strictChecks(buf, r, body) {
		ctx := context.WithValue(r.Context(), hookKey{}, hr)
		ctx = context.WithValue(ctx, ifMatchKey{}, strings.Join(r.Header.Values("If-Match"), ","))
		s.spend(s.opts.WorkPerRequest)
		s.scim.ServeHTTP(buf, r.WithContext(ctx))
		s.commitWait(r)
		if hr.fault != nil {
			rec.Faulted = true
			s.applyFault(w, r, hr.fault)
			return
		}
	}
	if lost != nil {
		s.applyFault(w, r, &Fault{Drop: true})
		return
	}
	if hold > 0 && !s.applyFault(w, r, &Fault{Latency: hold}) {
		return // unanswered: recorded with status 0
	}
	answer := buf.Body.Bytes()
	if s.opts.ETags && r.Method == http.MethodGet && rec.Path == "/ServiceProviderConfig" && buf.Code == http.StatusOK {
		answer = advertiseETags(answer)
		buf.Header().Del("Content-Length")
	}
	for k, v := range buf.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rewriteStatus(buf.Code, hr))
	_, _ = w.Write(answer)
}

// isSCIMPath reports whether a request path is below BasePath.
func isSCIMPath(p string) bool { return p == BasePath || strings.HasPrefix(p, BasePath+"/") }

// strictChecks makes the checks elimity does not make (or makes
// leniently), answering the error itself. It reports whether the request
// may go on.
func (s *Server) strictChecks(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if !isSCIMPath(r.URL.Path) {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no SCIM endpoint at %s (the base is %s)", r.URL.Path, BasePath))
		return false
	}
	if ok, challenge, detail := s.authorized(r); !ok {
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, http.StatusUnauthorized, "", detail)
		return false
	}
	if s.opts.NoServiceProviderConfig && strings.TrimPrefix(r.URL.Path, BasePath) == "/ServiceProviderConfig" {
		writeError(w, http.StatusNotFound, "", "this server has no /ServiceProviderConfig")
		return false
	}
	if !acceptable(r.Header.Values("Accept")) {
		writeError(w, http.StatusNotAcceptable, "", "the Accept header must allow application/scim+json or application/json")
		return false
	}
	hasBody := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	if hasBody {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != MediaType {
			writeError(w, http.StatusUnsupportedMediaType, "",
				fmt.Sprintf("Content-Type must be %s (RFC 7644 §3.1), got %q", MediaType, r.Header.Get("Content-Type")))
			return false
		}
	}
	if s.opts.DisableFilter && r.Method == http.MethodGet && r.URL.Query().Has("filter") {
		writeError(w, http.StatusBadRequest, "invalidFilter", "this server does not support filtering")
		return false
	}
	if r.Method == http.MethodPatch && s.opts.DisablePatch {
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "", "this server does not support PATCH; use PUT")
		return false
	}
	if !hasBody {
		return true
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, "invalidSyntax", "the request body is not a JSON object: "+err.Error())
		return false
	}
	if r.Method == http.MethodPatch {
		return checkPatchOps(w, m)
	}
	return checkResourceBody(w, m)
}

// checkResourceBody rejects read-only attributes (id, meta, and a User's
// groups; RFC 7643 §3.1 says a
// server SHALL ignore them; this one rejects them so the client's defect
// shows) and extension objects whose URN is missing from schemas (RFC 7643
// §3).
func checkResourceBody(w http.ResponseWriter, m map[string]json.RawMessage) bool {
	for k := range m {
		if strings.EqualFold(k, "id") || strings.EqualFold(k, "meta") || strings.EqualFold(k, "groups") {
			writeError(w, http.StatusBadRequest, "mutability",
				fmt.Sprintf("attribute %q is readOnly: a client must not send it (RFC 7643 §3.1, §4.1.2)", k))
			return false
		}
	}
	var schemas []string
	if raw, ok := m["schemas"]; ok {
		if err := json.Unmarshal(raw, &schemas); err != nil {
			writeError(w, http.StatusBadRequest, "invalidSyntax", "schemas must be an array of URIs (RFC 7643 §3)")
			return false
		}
	}
	for k := range m {
		if !strings.HasPrefix(strings.ToLower(k), "urn:") {
			continue
		}
		listed := false
		for _, sc := range schemas {
			listed = listed || sc == k
		}
		if !listed {
			writeError(w, http.StatusBadRequest, "invalidSyntax",
				fmt.Sprintf("extension %q is used but not listed in schemas (RFC 7643 §3)", k))
			return false
		}
	}
	return true
}

// checkPatchOps rejects ops other than exactly "add", "remove" and
// "replace": elimity lower-cases them (accepting Entra's "Replace"), a
// strict server does not.
func checkPatchOps(w http.ResponseWriter, m map[string]json.RawMessage) bool {
	var ops []struct {
		Op json.RawMessage `json:"op"`
	}
	if raw, ok := m["Operations"]; ok {
		if err := json.Unmarshal(raw, &ops); err != nil {
			writeError(w, http.StatusBadRequest, "invalidSyntax", "Operations must be an array of operations (RFC 7644 §3.5.2)")
			return false
		}
	}
	for i, o := range ops {
		var op string
		_ = json.Unmarshal(o.Op, &op)
		switch op {
		case "add", "remove", "replace":
		default:
			writeError(w, http.StatusBadRequest, "invalidSyntax",
				fmt.Sprintf("Operations[%d].op is %s: it must be \"add\", \"remove\" or \"replace\" (RFC 7644 §3.5.2)", i, string(o.Op)))
			return false
		}
	}
	return true
}

// authorized checks a SCIM request's credentials: HTTP basic with
// Options.Basic, a token the token endpoint issued and that has not
// expired with Options.OAuth2, else the bearer token. When they fail it
// returns the WWW-Authenticate challenge and the error's detail.
func (s *Server) authorized(r *http.Request) (ok bool, challenge, detail string) {
	if b := s.opts.Basic; b != nil {
		user, pass, found := r.BasicAuth()
		if found && user == b.Username && subtle.ConstantTimeCompare([]byte(pass), []byte(b.Password)) == 1 {
			return true, "", ""
		}
		return false, `Basic realm="scimtest"`, "a valid user and password (HTTP basic) are required"
	}
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return false, `Bearer realm="scimtest"`, "a valid bearer token is required"
	}
	if s.opts.OAuth2 != nil {
		if s.validToken(token) {
			return true, "", ""
		}
		return false, `Bearer realm="scimtest", error="invalid_token"`, "the access token is unknown or expired"
	}
	s.fmu.Lock()
	want := s.token
	s.fmu.Unlock()
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
		return true, "", ""
	}
	return false, `Bearer realm="scimtest"`, "a valid bearer token is required"
}

// SetToken changes the bearer token the server requires, as a rotation
// or revocation on a real server does.
func (s *Server) SetToken(token string) {
	s.fmu.Lock()
	s.token = token
	s.fmu.Unlock()
}

// acceptable reports whether an Accept header allows a SCIM JSON answer;
// no header allows anything.
func acceptable(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case MediaType, "application/json", "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// writeError answers a SCIM error (RFC 7644 §3.12): status as a string.
func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	body := map[string]any{
		"schemas": []string{errorSchema},
		"status":  fmt.Sprint(status),
	}
	if scimType != "" {
		body["scimType"] = scimType
	}
	if detail != "" {
		body["detail"] = detail
	}
	raw, _ := json.Marshal(body)
	w.Header().Set("Content-Type", MediaType)
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("scimtest: "+format, args...)
	}
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("scimtest: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("scimtest: listen address %q is not a loopback address", addr)
	}
	return nil
}

// relPath is a request path below BasePath ("/Users/x"); a path outside it
// is kept whole.
func relPath(p string) string {
	if p == BasePath {
		return "/"
	}
	if rest, ok := strings.CutPrefix(p, BasePath); ok && strings.HasPrefix(rest, "/") {
		return rest
	}
	return p
}

func queryPart(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

func faultNote(r Request) string {
	if r.Faulted {
		return " (fault)"
	}
	return ""
}

// statusWriter notes the status sent; Unwrap lets http.ResponseController
// reach the connection for a hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
	record func() // records the request (once)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hookKey carries a *hookResult from ServeHTTP to the resource handler.
type hookKey struct{}

// hookResult is how the resource handler hands a Reject hook's fault back
// to ServeHTTP: elimity would turn an arbitrary status into a 500.
type hookResult struct {
	fault  *Fault
	status int // a success status replacing elimity's (a lenient POST's 200)
}

var errRejected = errors.New("scimtest: rejected by the Reject hook")

// spend does rounds of SHA-256 (Options.WorkPerRequest) and counts them;
// the count also keeps the compiler from dropping the work.
func (s *Server) spend(rounds int) {
	if rounds <= 0 {
		return
	}
	var sum [sha256.Size]byte
	for range rounds {
		sum = sha256.Sum256(sum[:])
	}
	s.digest.Store(uint32(sum[0]))
	s.worked.Add(int64(rounds))
}

// commitWait holds a write's answer for Options.WaitPerWrite, ending
// early when the client goes away or the server closes.
func (s *Server) commitWait(r *http.Request) {
	if s.opts.WaitPerWrite <= 0 || r.Method == http.MethodGet || !strings.HasPrefix(relPath(r.URL.Path), "/Users") {
		return
	}
	s.waited.Add(1)
	t := time.NewTimer(s.opts.WaitPerWrite)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-s.closed:
	}
}
