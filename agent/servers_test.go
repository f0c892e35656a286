package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// The agent against the SCIM servers of the wild (README, "SCIM
// servers"): each test gives scimtest a mode and the agent the settings
// for it, and asserts the server's final state and the requests it got.

// createUsers makes n Drupal users named prefix0, prefix1, ...
func (h *harness) createUsers(prefix string, n int) {
	h.t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s%d", prefix, i)
		h.create(drupaltest.User{Name: name, Mail: str(name + "@example.org"), Status: 1})
	}
}

// waitReady polls the agent's readiness until it is ready.
func (h *harness) waitReady() {
	h.t.Helper()
	if !agenttest.Poll(agenttest.Timeout, func() bool { return h.agent.Readiness().Ready }) {
		h.t.Fatalf("not ready: %s", h.agent.Readiness().Reason)
	}
}

// writeFile writes data to a file in the harness's directory.
func (h *harness) writeFile(name string, data []byte) string {
	h.t.Helper()
	path := filepath.Join(h.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return path
}

func TestRateLimitIsNeverReached(t *testing.T) {
	const users = 40
	for _, tc := range []struct {
		name string
		rate float64
	}{{"without max_requests_per_second", 0}, {"max_requests_per_second 8", 8}} {
		t.Run(tc.name, func(t *testing.T) {
			// A server that allows 10 requests a second, as Slack and
			// GitHub publish limits, answering 429 + Retry-After above.
			h := newHarness(t, withSCIM(scimtest.Options{RateLimit: 10}))
			h.cfg.SCIM.MaxRequestsPerSecond = tc.rate
			h.createUsers("burst", users) // the initial sync: a burst of creates
			h.start()
			h.settle()

			h.assertServerMatchesDB()
			if n := h.count("POST"); n < users {
				t.Fatalf("%d POSTs for %d users", n, users)
			}
			limited := h.scim.RateLimited()
			if tc.rate == 0 {
				// The limit bites: this is what the setting prevents.
				if limited == 0 {
					t.Fatal("no 429 without a client-side limit: the test proves nothing")
				}
				return
			}
			if limited != 0 {
				t.Fatalf("the server answered %d requests 429 despite max_requests_per_second: %v", limited, tc.rate)
			}
			for _, r := range h.scim.Requests() {
				if r.Status == http.StatusTooManyRequests {
					t.Fatalf("a 429: %+v", r)
				}
			}
			if n := h.count("POST"); n != users {
				t.Errorf("%d POSTs for %d users, want one each", n, users)
			}
		})
	}
}

func TestOAuth2TokenRotatedDuringARun(t *testing.T) {
	const secret = "cl1ent-s3cret-never-logged"
	rememberSecret(secret)
	h := newHarness(t, withSCIM(scimtest.Options{OAuth2: &scimtest.OAuth2{ClientID: "scim-agent", ClientSecret: secret,
		TokenLifetime: 2 * time.Second, RequiredScope: "scim"}}))
	h.cfg.SCIM.Token = ""
	h.cfg.SCIM.OAuth2 = config.OAuth2{TokenURL: h.scim.TokenURL, ClientID: "scim-agent", ClientSecret: secret, Scopes: []string{"scim"}}
	defer func() {
		for _, tok := range h.scim.IssuedTokens() {
			rememberSecret(tok)
		}
	}()
	if r, ok := findCheck(Check(context.Background(), h.cfg), "scim.auth"); !ok || !r.OK || !strings.Contains(r.Detail, h.scim.TokenURL) {
		t.Fatalf("scim.auth = %+v (found %v)", r, ok)
	}
	uid := h.create(drupaltest.User{Name: "first", Mail: str("first@example.org"), Status: 1})
	logsBefore := len(collectedLines())
	h.start()
	h.settle()

	// Changes keep coming while tokens expire and are renewed, and once
	// the server revokes them all at once.
	i := 0
	if !agenttest.Poll(30*time.Second, func() bool {
		if h.scim.TokensIssued() >= 4 && i >= 3 {
			return true
		}
		if i == 2 {
			h.scim.RevokeTokens()
		}
		h.create(drupaltest.User{Name: fmt.Sprintf("later%d", i), Mail: str(fmt.Sprintf("later%d@example.org", i)), Status: 1})
		h.update(uid, func(u *drupaltest.User) { u.Mail = str(fmt.Sprintf("first%d@example.org", i)) })
		h.settle()
		time.Sleep(300 * time.Millisecond) // let time pass for the tokens to expire (not for ordering)
		i++
		return false
	}) {
		t.Fatalf("only %d tokens issued in 30s", h.scim.TokensIssued())
	}
	h.assertServerMatchesDB()
	// No call of a reconcile ended in a 401: each was renewed and retried
	// inside the call.
	for _, line := range collectedLines()[logsBefore:] {
		if strings.Contains(line, `"status":401`) && !strings.Contains(line, `"msg":"scim.retry"`) || strings.Contains(line, "refuses the token") {
			t.Errorf("a 401 counted as refused: %s", line)
		}
	}
	if h.agent.health.refused.Load() != 0 {
		t.Errorf("readiness: %s", h.agent.Readiness().Reason)
	}
	if st := h.agent.Status(); len(st.Parked) != 0 {
		t.Errorf("parked users: %+v", st)
	}
	// Every 401 (after the revocation, or a token that expired in flight)
	// was followed by a new token and a success.
	var refused int
	for _, r := range h.userRequests() {
		if r.Status == http.StatusUnauthorized {
			refused++
		}
	}
	if refused == 0 {
		t.Error("no request met a revoked token: the refresh path went untested")
	}
	t.Logf("%d tokens issued, %d requests refused and retried with a new token", h.scim.TokensIssued(), refused)
}

func TestBasicAuthentication(t *testing.T) {
	const pass = "b4sic pass-never-logged"
	rememberSecret(pass)
	h := newHarness(t, withSCIM(scimtest.Options{Basic: &scimtest.BasicAuth{Username: "scim-agent", Password: pass}}))
	h.cfg.SCIM.Token = ""
	h.cfg.SCIM.Basic = config.Basic{Username: "scim-agent", Password: pass}
	if results := Check(context.Background(), h.cfg); AnyFailed(results) {
		t.Fatalf("check: %+v", results)
	}
	uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
	h.start()
	h.settle()
	h.update(uid, func(u *drupaltest.User) { u.Status = 0 })
	h.settle()
	h.assertServerMatchesDB()
	if u := h.mustServerUser(uid); u.Get("active") != false {
		t.Fatalf("server user %+v", u)
	}
	h.stop()

	wrong := *h.cfg
	wrong.SCIM.Basic.Password = pass + "-old"
	r, found := findCheck(Check(context.Background(), &wrong), "scim.service_provider_config")
	if !found || r.OK || !strings.Contains(r.Detail, "refused the user and password") || !strings.Contains(r.Fix, "scim.basic.password") {
		t.Fatalf("check with a wrong password = %+v (found %v)", r, found)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, err := scimtest.NewCA("scim-agent test CA")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withSCIM(scimtest.Options{ClientCA: ca}))
	certPEM, keyPEM, err := ca.IssueClient("scim-agent")
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.SCIM.CAFile = h.writeFile("server-ca.pem", h.scim.CACertPEM())

	// Without the certificate: a clear failure.
	r, found := findCheck(Check(context.Background(), h.cfg), "scim.service_provider_config")
	if !found || r.OK || !strings.Contains(r.Detail, "client certificate") || !strings.Contains(r.Fix, "scim.cert_file") {
		t.Fatalf("check without the client certificate = %+v (found %v)", r, found)
	}

	h.cfg.SCIM.CertFile = h.writeFile("client.pem", certPEM)
	h.cfg.SCIM.KeyFile = h.writeFile("client-key.pem", keyPEM)
	results := Check(context.Background(), h.cfg)
	if AnyFailed(results) {
		t.Fatalf("check with the certificate: %+v", results)
	}
	if r, ok := findCheck(results, "scim.client_certificate"); !ok || !r.OK {
		t.Errorf("scim.client_certificate = %+v", r)
	}
	uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
	h.start()
	h.settle()
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("ann@example.com") })
	h.settle()
	h.assertServerMatchesDB()
	for _, r := range h.scim.Requests() {
		if r.ClientCert != "scim-agent" {
			t.Fatalf("a request without the client certificate: %+v", r)
		}
	}
}

func TestServerWithoutServiceProviderConfig(t *testing.T) {
	// GitLab-like: no /ServiceProviderConfig; this one has no PATCH
	// either, which scim.capabilities says.
	h := newHarness(t, withSCIM(scimtest.Options{Token: testToken, NoServiceProviderConfig: true, DisablePatch: true}))

	// Only patch overridden: check warns and names what was assumed.
	h.cfg.SCIM.Capabilities.Patch = "false"
	r, found := findCheck(Check(context.Background(), h.cfg), "scim.service_provider_config")
	if !found || !r.Warn || !strings.Contains(r.Detail, "ServiceProviderConfig is missing") ||
		!strings.Contains(r.Detail, "patch not supported (scim.capabilities.patch)") || !strings.Contains(r.Detail, "etag not supported (assumed)") ||
		!strings.Contains(r.Fix, "scim.capabilities.filter, scim.capabilities.etag, scim.capabilities.bulk") {
		t.Fatalf("scim.service_provider_config = %+v (found %v)", r, found)
	}
	// All four set: nothing left to guess.
	h.cfg.SCIM.Capabilities = config.Capabilities{Patch: "false", Filter: "true", ETag: "false", Bulk: "false"}
	results := Check(context.Background(), h.cfg)
	if r, _ := findCheck(results, "scim.service_provider_config"); AnyFailed(results) || !r.OK || !strings.Contains(r.Detail, "missing") ||
		!strings.Contains(r.Detail, "filter supported (scim.capabilities.filter)") {
		t.Fatalf("check with every capability set: %+v", results)
	}

	uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
	h.start()
	h.settle()
	h.waitReady()
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("ann@example.com") })
	h.settle()
	h.assertServerMatchesDB()
	if n := h.count("PATCH"); n != 0 {
		t.Errorf("%d PATCHes to a server the config says has none", n)
	}
	if n := h.count("PUT"); n != 1 {
		t.Errorf("%d PUTs for one mail change, want 1", n)
	}
}
