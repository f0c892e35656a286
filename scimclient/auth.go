package scimclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Auth puts the credentials on each attempt of a Client's calls. An Auth
// is safe for concurrent use and may be shared by the clients of one
// server (one OAuth 2 token for all of them).
type Auth interface {
	// Authorize sets the credentials of one attempt on req (its
	// Authorization header), fetching them with req's context if need be.
	Authorize(req *http.Request) error
	// Secrets returns the values in play that must never reach a log
	// line or an error: a token, a password, a client secret.
	Secrets() []string
}

// Refresher is an Auth whose credentials can be renewed: when the server
// answers 401, the client calls Refresh with the Authorization header the
// refused attempt carried and, when it reports true, makes one more
// attempt at once (not counted in MaxAttempts). Only a second 401 is a
// refusal.
type Refresher interface {
	Auth
	Refresh(authorization string) bool
}

// validator is implemented by the Auths of this package, checked by New.
type validator interface{ validate() error }

// httpBinder is implemented by the Auths that make requests of their own
// (OAuth 2): New gives them a client with the Client's TLS settings.
type httpBinder interface{ bind(*http.Client) }

// BearerToken authenticates with a static bearer token (RFC 6750).
func BearerToken(token string) Auth { return bearer(token) }

type bearer string

func (b bearer) Authorize(req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+string(b))
	return nil
}

func (b bearer) Secrets() []string { return []string{string(b)} }

func (b bearer) validate() error {
	if b == "" {
		return errors.New("scimclient: no bearer token")
	}
	if strings.ContainsFunc(string(b), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("scimclient: the bearer token holds spaces or control characters")
	}
	return nil
}

// Basic authenticates with HTTP basic authentication (RFC 7617).
func Basic(username, password string) Auth { return basicAuth{username, password} }

type basicAuth struct{ user, pass string }

func (b basicAuth) Authorize(req *http.Request) error {
	req.SetBasicAuth(b.user, b.pass)
	return nil
}

// Secrets holds the password, and the Authorization value a server may
// quote back (which is only base64 of user:password).
func (b basicAuth) Secrets() []string {
	return []string{b.pass, base64.StdEncoding.EncodeToString([]byte(b.user + ":" + b.pass))}
}

func (b basicAuth) validate() error {
	switch {
	case b.user == "":
		return errors.New("scimclient: basic authentication without a user name")
	case strings.Contains(b.user, ":"):
		return errors.New("scimclient: a basic authentication user name cannot hold ':' (RFC 7617)")
	case b.pass == "":
		return errors.New("scimclient: basic authentication without a password")
	case strings.ContainsFunc(b.user+b.pass, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return errors.New("scimclient: the basic authentication user name or password holds control characters")
	}
	return nil
}

// OAuth2Config configures OAuth 2 client-credentials authentication
// (RFC 6749 §4.4).
type OAuth2Config struct {
	// TokenURL is the token endpoint.
	TokenURL string
	// ClientID and ClientSecret are the client's credentials; the secret
	// is never logged nor put in an error.
	ClientID, ClientSecret string
	// Scopes are asked for (none by default).
	Scopes []string
	// RefreshMargin is how long before its expiry a token is replaced, at
	// most a fifth of its lifetime. Default DefaultRefreshMargin.
	RefreshMargin time.Duration
}

// DefaultRefreshMargin is how long before its expiry an OAuth 2 token is
// replaced by default.
const DefaultRefreshMargin = time.Minute

// recentTokens is how many of the last access tokens are redacted.
const recentTokens = 8

// OAuth2 is OAuth 2 client-credentials authentication: it fetches an
// access token from the token endpoint (golang.org/x/oauth2's
// clientcredentials), sends it as a bearer token, replaces it before it
// expires and, after a 401, fetches a new one for the one retry the
// client makes. A token endpoint that refuses the credentials (400, 401 or
// 403) fails the call as a 401 would, without retries; one that fails
// otherwise (5xx, network) is retried like any transport error.
type OAuth2 struct {
	cc     *clientcredentials.Config
	margin time.Duration

	mu        sync.Mutex // guards the fields below; held during a fetch, so concurrent calls share one
	hc        *http.Client
	tok       *oauth2.Token
	refreshAt time.Time // zero: no expiry given, kept until a 401
	recent    []string
}

// NewOAuth2 checks cfg and returns its Auth.
func NewOAuth2(cfg OAuth2Config) (*OAuth2, error) {
	u, err := url.Parse(cfg.TokenURL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return nil, fmt.Errorf("scimclient: OAuth 2 token URL %q is not an absolute http(s) URL", cfg.TokenURL)
	case u.User != nil:
		return nil, errors.New("scimclient: the OAuth 2 token URL must not hold credentials")
	case cfg.ClientID == "":
		return nil, errors.New("scimclient: OAuth 2 without a client id")
	case cfg.ClientSecret == "":
		return nil, errors.New("scimclient: OAuth 2 without a client secret")
	}
	margin := cfg.RefreshMargin
	if margin <= 0 {
		margin = DefaultRefreshMargin
	}
	return &OAuth2{
		cc: &clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     cfg.TokenURL,
			Scopes:       cfg.Scopes,
		},
		margin: margin,
	}, nil
}

func (o *OAuth2) validate() error { return nil }

func (o *OAuth2) bind(hc *http.Client) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hc == nil {
		o.hc = hc
	}
}

// Authorize sets the current access token, fetching one first when there
// is none or it is about to expire.
func (o *OAuth2) Authorize(req *http.Request) error {
	tok, _, err := o.token(req.Context())
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// Refresh drops the token a refused request carried, so the next
// Authorize fetches another.
func (o *OAuth2) Refresh(authorization string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tok != nil && authorization == "Bearer "+o.tok.AccessToken {
		o.tok = nil
	}
	return strings.HasPrefix(authorization, "Bearer ")
}

// Secrets holds the client secret and the last tokens issued.
func (o *OAuth2) Secrets() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string{o.cc.ClientSecret}, o.recent...)
}

// Fetch makes sure a token is at hand (fetching one unless the current
// one is good) and returns when it expires (zero when the endpoint did not
// say): a test of the credentials for `check`. A refusal is an *Error
// with the token endpoint's status.
func (o *OAuth2) Fetch(ctx context.Context) (time.Time, error) {
	_, exp, err := o.token(ctx)
	var tr *tokenRefused
	if errors.As(err, &tr) {
		return exp, &Error{Method: http.MethodPost, Path: o.cc.TokenURL, Status: tr.status, Detail: tr.detail}
	}
	return exp, err
}

// TokenURL returns the token endpoint.
func (o *OAuth2) TokenURL() string { return o.cc.TokenURL }

func (o *OAuth2) token(ctx context.Context) (string, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if o.tok != nil && (o.refreshAt.IsZero() || now.Before(o.refreshAt)) {
		return o.tok.AccessToken, o.tok.Expiry, nil
	}
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	t, err := o.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return "", time.Time{}, o.fetchError(err)
	}
	if !strings.EqualFold(t.Type(), "Bearer") {
		return "", time.Time{}, &tokenRefused{status: http.StatusUnauthorized,
			detail: fmt.Sprintf("the token endpoint %s issued a %q token; only bearer tokens are supported", o.cc.TokenURL, t.Type())}
	}
	o.tok, o.refreshAt = t, time.Time{}
	if !t.Expiry.IsZero() {
		life := max(t.Expiry.Sub(now), 0)
		o.refreshAt = t.Expiry.Add(-min(life/5, o.margin))
	}
	o.recent = append(o.recent, t.AccessToken)
	if len(o.recent) > recentTokens {
		o.recent = o.recent[len(o.recent)-recentTokens:]
	}
	return t.AccessToken, t.Expiry, nil
}

// fetchError sorts a failed token request: a refusal of the credentials
// (400, 401, 403: invalid_client, invalid_scope, ...) is permanent;
// anything else may heal. The endpoint's body is not quoted beyond its
// error code and description.
func (o *OAuth2) fetchError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status := re.Response.StatusCode
		what := strings.TrimSpace(strings.Trim(re.ErrorCode+": "+re.ErrorDescription, ": "))
		if what == "" {
			what = http.StatusText(status)
		}
		what = clean(what, 200, o.secretsLocked())
		if status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden {
			return &tokenRefused{status: status, detail: fmt.Sprintf("the token endpoint %s refused the client credentials (%d %s)", o.cc.TokenURL, status, what)}
		}
		return fmt.Errorf("fetch an OAuth 2 token from %s: %d %s", o.cc.TokenURL, status, what)
	}
	return fmt.Errorf("fetch an OAuth 2 token from %s: %w", o.cc.TokenURL, redactErr(err, o.secretsLocked()))
}

func (o *OAuth2) secretsLocked() []string { return append([]string{o.cc.ClientSecret}, o.recent...) }

// tokenRefused is a token endpoint's refusal of the client credentials:
// no retry helps, and the call fails as a 401 would.
type tokenRefused struct {
	status int
	detail string
}

func (e *tokenRefused) Error() string { return e.detail }

// authTransport authorizes each attempt as it is sent, so that a token
// renewed between attempts (after a 401, or on expiry during a backoff)
// is the one sent.
type authTransport struct {
	base http.RoundTripper
	auth Auth
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	if err := t.auth.Authorize(out); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return t.base.RoundTrip(out)
}

// CloseIdleConnections passes the call on to the transport below.
func (t *authTransport) CloseIdleConnections() { closeIdle(t.base) }
