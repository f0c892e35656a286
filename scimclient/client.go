// Package scimclient is the agent's SCIM 2.0 client (RFC 7643/7644) for
// the /Users and /Groups endpoints of a provisioning server.
//
// It gets right what other provisioning clients get wrong: TLS
// verification is always on, bodies are application/scim+json with
// "schemas" as an array and without the read-only id and meta, filter
// values are quoted and escaped, ids are path-escaped, response bodies are
// bounded, and no secret (bearer token, OAuth 2 token and client secret,
// basic password) ever reaches a log line or an error.
//
// Every call retries what may heal (network errors, timeouts, dropped
// connections, 5xx except 501, 429) with exponential backoff and jitter,
// honouring Retry-After on 429 and 503, for MaxAttempts attempts or, with
// MaxAttempts 0, until the context is done. Other answers come back at
// once as *Error. Each call also returns a Result (status, attempts,
// duration, the resource's version) for the caller's one log line per
// call.
//
// It trusts no server blindly: a list answer that cannot be right (a
// total without Resources, Resources that do not match an equality
// filter) is ErrUntrustedAnswer, and a 404 that is not a SCIM error (a
// proxy's or a load balancer's page) is not IsNotFound; both are retried
// like a 5xx. Authentication is an Auth (BearerToken, Basic, OAuth 2
// client credentials), optionally with a TLS client certificate, and a
// shared rate limiter paces every attempt.
package scimclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Schema URIs and the media type of RFC 7643/7644.
const (
	UserSchema           = "urn:ietf:params:scim:schemas:core:2.0:User"
	EnterpriseUserSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	PatchOpSchema        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	ListResponseSchema   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	ErrorSchema          = "urn:ietf:params:scim:api:messages:2.0:Error"
	MediaType            = "application/scim+json"
)

// Defaults of Config, and the longest Retry-After honoured.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMinBackoff       = 500 * time.Millisecond
	DefaultMaxBackoff       = time.Minute
	DefaultMaxResponseBytes = 1 << 20
	DefaultUserAgent        = "scim-agent"
	MaxRetryAfter           = 5 * time.Minute
)

// MsgRetry is the message of the warn line logged before each retry
// (fields method, path, status or error, attempt, retry_in_ms).
const MsgRetry = "scim.retry"

// ErrResponseTooLarge is wrapped by the error of a call whose response
// body exceeds Config.MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body too large")

// ErrInvalidResponse is wrapped by the error of a call whose successful
// answer is not the JSON it should be.
var ErrInvalidResponse = errors.New("invalid response")

// ErrUntrustedAnswer is wrapped by the error of a call whose answer
// cannot be right: a list with totalResults > 0 but no Resources on a
// page that should hold some, or Resources that do not satisfy the
// equality filter sent. It is a server fault, never "no match":
// retried like a 5xx, and IsRetryable.
var ErrUntrustedAnswer = errors.New("untrusted answer")

// ErrCertificateRefused is wrapped by the error of a call whose TLS
// handshake the server ended because it wants a client certificate it
// trusts (mTLS): none was offered, or not one it accepts.
var ErrCertificateRefused = errors.New("the server refused the TLS client certificate (or its absence)")

// Config configures a Client.
type Config struct {
	// BaseURL is the SCIM root, e.g. https://idp.example.com/scim/v2 (a
	// trailing slash is fine). It must be an absolute http or https URL
	// without credentials, query or fragment.
	BaseURL string
	// Token is the bearer token; it is never logged nor put in an error.
	// It is short for Auth: BearerToken(Token); set one of the two.
	Token string
	// Auth authenticates every attempt: BearerToken, Basic or NewOAuth2.
	Auth Auth
	// Certificates are the TLS client certificates offered to a server
	// that asks for one (mTLS); none by default.
	Certificates []tls.Certificate
	// Limiter, when set, paces every attempt, retries included: each waits
	// for a token of the bucket before it is sent, so a server's published
	// rate limit is never reached. Share one limiter between the clients
	// of one server: the limit is the server's. A Retry-After still comes
	// on top of it.
	Limiter *rate.Limiter
	// RootCAs verifies the server's certificate; nil means the system
	// roots. Verification is always on.
	RootCAs *x509.CertPool
	// Timeout bounds each attempt, from connecting to reading the whole
	// answer. Default DefaultTimeout.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered wait
	// between attempts; a server's Retry-After on 429 and 503 overrides
	// them, up to MaxRetryAfter. Defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts caps the attempts of one call; 0 retries retryable
	// failures for as long as it takes (until the context is done).
	MaxAttempts int
	// MaxResponseBytes bounds a response body; a larger one is an error
	// wrapping ErrResponseTooLarge. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Logger receives the retry lines (warn, MsgRetry); nil logs nothing.
	// A logger attached with ContextWithLogger takes precedence.
	Logger *zap.Logger
	// UserAgent is sent as User-Agent. Default DefaultUserAgent.
	UserAgent string
	// OnRetry, when set, is called before each retry with the method, the
	// status that caused it (0 for a network error or an answer that
	// failed its check) and that error (nil when a status caused it, its
	// secrets redacted): retries are counted as they happen, not when the
	// call finally ends, and an untrusted answer (ErrUntrustedAnswer) can
	// be named while its call is still retrying it.
	OnRetry func(method string, status int, err error)
}

// Client is a SCIM client; it is safe for concurrent use.
type Client struct {
	base string // BaseURL without a trailing slash
	auth Auth
	cfg  Config
	http *http.Client
	log  *zap.Logger
}

// New checks the config and builds a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.BaseURL))
	switch {
	case err != nil:
		return nil, fmt.Errorf("scimclient: base URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scimclient: base URL %q: must be an absolute http:// or https:// URL", cfg.BaseURL)
	case u.Host == "":
		return nil, fmt.Errorf("scimclient: base URL %q has no host", cfg.BaseURL)
	case u.User != nil:
		return nil, errors.New("scimclient: base URL must not hold credentials: put them in Auth")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("scimclient: base URL %q must not have a query or fragment", u.Redacted())
	}
	auth := cfg.Auth
	switch {
	case auth != nil && cfg.Token != "":
		return nil, errors.New("scimclient: set Token or Auth, not both")
	case auth == nil:
		auth = BearerToken(cfg.Token)
	}
	if v, ok := auth.(validator); ok {
		if err := v.validate(); err != nil {
			return nil, err
		}
	}
	if cfg.MaxAttempts < 0 {
		return nil, fmt.Errorf("scimclient: MaxAttempts %d is negative (0 retries until the context is done)", cfg.MaxAttempts)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12, Certificates: cfg.Certificates},
	}
	// A SCIM server has no business redirecting: a redirect means a wrong
	// base URL, and following one could carry the credentials to another
	// scheme or place. It comes back as an *Error.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if b, ok := auth.(httpBinder); ok {
		b.bind(&http.Client{Transport: transport, Timeout: cfg.Timeout, CheckRedirect: noRedirect})
	}
	return &Client{
		base: strings.TrimRight(u.String(), "/"),
		auth: auth,
		cfg:  cfg,
		http: &http.Client{
			Transport:     attemptTimeout{base: &authTransport{base: transport, auth: auth}, timeout: cfg.Timeout},
			CheckRedirect: noRedirect,
		},
		log: log,
	}, nil
}

// secrets returns every secret in play, for redaction.
func (c *Client) secrets() []string { return c.auth.Secrets() }

// Auth returns the client's authentication (for `check`, which tests an
// OAuth 2 token endpoint by itself).
func (c *Client) Auth() Auth { return c.auth }

// CloseIdleConnections closes the connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Result describes one call for the caller's log line.
type Result struct {
	// Status is the HTTP status of the last attempt (0 when it got none).
	Status int
	// Attempts is how many requests were sent.
	Attempts int
	// Duration is the time of the whole call, waits included.
	Duration time.Duration
	// Version is the version of the resource answered (its ETag header,
	// else its meta.version), for an IfMatch of a later write; "" when the
	// server keeps none or the call answers no resource.
	Version string
}

type loggerKey struct{}

// ContextWithLogger attaches a logger (typically with the caller's uid and
// binlog position fields) that the calls made with ctx log their retries
// to instead of Config.Logger.
func ContextWithLogger(ctx context.Context, l *zap.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

func (c *Client) logger(ctx context.Context) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok && l != nil {
		return l
	}
	return c.log
}

// call is what one call sends and accepts.
type call struct {
	method, path string     // path below the base URL, without the query
	query        url.Values // nil: none
	body         any        // nil: none
	header       http.Header
	ok           []int // the success statuses
	// check, when set, judges an answer before it is accepted: an error
	// makes the attempt fail and be retried like a 5xx, and is the call's
	// error when the attempts run out.
	check func(*request, answer) error
}

// CallOption adjusts one write (see IfMatch).
type CallOption func(*call)

// IfMatch makes a PATCH, PUT or DELETE conditional on the resource still
// being at version (RFC 7644 §3.14, from Result.Version or
// Resource.Version): a server with ETags answers 412 when it changed
// since (IsPreconditionFailed). An empty version sends nothing, so a
// caller without ETags passes what it has.
func IfMatch(version string) CallOption {
	return func(c *call) {
		if version != "" {
			if c.header == nil {
				c.header = http.Header{}
			}
			c.header.Set("If-Match", version)
		}
	}
}

// request is one call: what to send and what was seen so far. Its hooks
// run in the calling goroutine (retryablehttp's loop is synchronous).
type request struct {
	c            *Client
	log          *zap.Logger
	method, path string // path below the base URL, without the query
	check        func(*request, answer) error
	attempts     int
	free         int // attempts not counted in MaxAttempts (the retry after a token refresh)
	refreshed    bool
	immediate    bool // the next retry is at once (after a token refresh)
	status       int
	err          error  // the last attempt's transport error or failed check, if any
	body         []byte // the last response body read
	bodyRead     bool
	bo           *backoff.ExponentialBackOff
}

// failedCheck is an answer a call's check refused; the call retries it,
// and returns err when the attempts run out.
type failedCheck struct{ err error }

func (e *failedCheck) Error() string { return e.err.Error() }
func (e *failedCheck) Unwrap() error { return e.err }

// answer is the final response of a call.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// decode decodes a successful answer, which must be JSON.
func (a answer) decode(method, path string, v any) error {
	return decodeJSON(method, path, a.header, a.body, v)
}

// do runs one call: cl.method on cl.path (below the base URL) with an
// optional query and JSON body. A final status not in cl.ok becomes an
// *Error.
func (c *Client) do(ctx context.Context, cl call) (answer, Result, error) {
	start := time.Now()
	r := &request{c: c, log: c.logger(ctx), method: cl.method, path: cl.path, check: cl.check}
	res := func() Result { return Result{Status: r.status, Attempts: r.attempts, Duration: time.Since(start)} }

	req, err := c.newRequest(ctx, cl, r)
	if err != nil {
		return answer{}, res(), err
	}
	rc := r.retryClient()
	var resp *http.Response
	if err = c.pace(ctx); err == nil {
		resp, err = rc.Do(req)
	}
	if resp != nil && !r.bodyRead && err == nil {
		// Retries ran out on a retryable status: its body is unread.
		r.status = resp.StatusCode
		err = r.readBody(resp)
	}
	if resp != nil {
		_ = resp.Body.Close()
	}
	secrets := c.secrets()
	if err != nil {
		err = r.callError(ctx, err, secrets)
		return answer{status: r.status}, res(), err
	}
	a, err := r.final(cl.ok, resp, secrets)
	return a, res(), err
}

// newRequest builds the first attempt of cl: the URL with its query, the
// JSON body (rewound for each attempt), the headers, and r's handler
// reading the response body.
func (c *Client) newRequest(ctx context.Context, cl call, r *request) (*retryablehttp.Request, error) {
	method, path := cl.method, cl.path
	var raw any // nil, or the body bytes (rewound for each attempt)
	if cl.body != nil {
		b, err := marshal(cl.body)
		if err != nil {
			return nil, fmt.Errorf("scim %s %s: encode the body: %w", method, path, err)
		}
		raw = b
	}
	target := c.base + path
	if q := encodeQuery(cl.query); q != "" {
		target += "?" + q
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, target, raw)
	if err != nil {
		return nil, fmt.Errorf("scim %s %s: %w", method, path, err)
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", MediaType+", application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if raw != nil {
		req.Header.Set("Content-Type", MediaType)
	}
	req.SetResponseHandler(r.readBody)
	return req, nil
}

// retryClient sets up r's exponential backoff and returns the retrying
// HTTP client of one call: r counts the attempts, decides on retries and
// their waits, and every retry waits for the rate limiter.
func (r *request) retryClient() *retryablehttp.Client {
	c := r.c
	r.bo = &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.MinBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.cfg.MaxBackoff,
		MaxElapsedTime:      0, // the attempts or the context end the call
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	r.bo.Reset()
	return &retryablehttp.Client{
		HTTPClient:     c.http,
		Logger:         nil, // it would log URLs; retries are logged by backoff
		RetryWaitMin:   c.cfg.MinBackoff,
		RetryWaitMax:   c.cfg.MaxBackoff,
		RetryMax:       math.MaxInt, // checkRetry counts the attempts
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, i int) { r.attempts = i + 1 },
		CheckRetry:     r.checkRetry,
		Backoff:        r.backoff,
		PrepareRetry:   func(req *http.Request) error { return c.pace(req.Context()) },
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
	}
}

// callError is the error of a call that got no final answer, without
// secrets: a failed check's own error, a refused token as a 401 *Error
// (setting r.status), the context's end, or a transport error (a refused
// client certificate marked ErrCertificateRefused).
func (r *request) callError(ctx context.Context, err error, secrets []string) error {
	method, path := r.method, r.path
	var fc *failedCheck
	var tr *tokenRefused
	switch {
	case ctx.Err() == nil && errors.As(err, &fc):
		// The answer's check failed on the last attempt: its own error.
		return redactErr(fc.err, secrets)
	case ctx.Err() == nil && errors.As(err, &tr):
		// The token endpoint refused the client credentials: as a 401.
		r.status = http.StatusUnauthorized
		return &Error{Method: method, Path: path, Status: http.StatusUnauthorized,
			Detail: clean(tr.detail, 512, secrets)}
	}
	err = redactErr(err, secrets)
	if ctx.Err() != nil {
		if !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		err = &contextDone{err}
	} else if certificateRefused(err) {
		err = fmt.Errorf("%w: %w", ErrCertificateRefused, err)
	}
	return fmt.Errorf("scim %s %s: %w", method, path, err)
}

// final turns the final response into the call's answer when its status
// is one of ok, and otherwise into an *Error decoded from its body (a
// redirect names where it pointed).
func (r *request) final(ok []int, resp *http.Response, secrets []string) (answer, error) {
	a := answer{status: r.status, header: resp.Header, body: r.body}
	for _, s := range ok {
		if r.status == s {
			return a, nil
		}
	}
	e := decodeError(r.method, r.path, r.status, resp.Header.Get("Content-Type"), r.body, secrets)
	if loc := resp.Header.Get("Location"); r.status >= 300 && r.status < 400 && loc != "" {
		e.Detail = clean("redirect to "+loc+" (not followed: check the base URL)", 300, secrets)
	}
	return answer{status: r.status}, e
}

// pace waits for the rate limiter, if any, before an attempt.
func (c *Client) pace(ctx context.Context) error {
	if c.cfg.Limiter == nil {
		return nil
	}
	if err := c.cfg.Limiter.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wait for the client-side rate limit: %w", err)
	}
	return nil
}

// readBody reads a final answer's body, bounded by MaxResponseBytes, and
// runs the call's check on it.
func (r *request) readBody(resp *http.Response) error {
	defer resp.Body.Close()
	r.bodyRead = true
	r.body = nil
	limit := r.c.cfg.MaxResponseBytes
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("read the response body: %w", err)
	}
	if int64(len(b)) > limit {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
		}
		b = b[:limit] // an error's status is what matters; its body is cut
	}
	r.body = b
	if r.check != nil {
		if err := r.check(r, answer{status: resp.StatusCode, header: resp.Header, body: b}); err != nil {
			return &failedCheck{err}
		}
	}
	return nil
}

// checkRetry decides whether an attempt is retried: a transport error
// that may heal, a retryable status or a failed check, while attempts
// remain; a 401 once at once after the Auth renewed its credentials.
func (r *request) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	r.status = 0
	if resp != nil {
		r.status = resp.StatusCode
	}
	r.err = err
	switch {
	case err != nil:
		if permanentTransportError(err) {
			return false, err
		}
	case r.status == http.StatusUnauthorized:
		rf, ok := r.c.auth.(Refresher)
		if r.refreshed || !ok || !rf.Refresh(resp.Request.Header.Get("Authorization")) {
			return false, nil
		}
		r.refreshed, r.immediate = true, true
		r.free++
		r.bodyRead = false
		return true, nil
	case !retryableStatus(r.status):
		return false, nil
	}
	if max := r.c.cfg.MaxAttempts; max > 0 && r.attempts-r.free >= max {
		return false, nil
	}
	r.bodyRead = false
	return true, nil
}

// backoff returns the wait before the next attempt and logs the retry:
// Retry-After on 429 and 503 (capped at MaxRetryAfter), else exponential
// backoff with jitter between MinBackoff and MaxBackoff.
func (r *request) backoff(_, _ time.Duration, _ int, resp *http.Response) time.Duration {
	wait, fromServer := time.Duration(0), false
	// After a 401 for which the Auth renewed its credentials: at once.
	immediate := r.immediate
	r.immediate = false
	if !immediate && resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		wait, fromServer = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		// "Retry-After: 0" or a date already past would make a tight
		// loop of a server that keeps saying it: back off as usual.
		fromServer = fromServer && wait >= r.c.cfg.MinBackoff
	}
	if !fromServer && !immediate {
		wait = min(max(r.bo.NextBackOff(), r.c.cfg.MinBackoff), r.c.cfg.MaxBackoff)
	}
	fields := []zap.Field{
		zap.String("method", r.method),
		zap.String("path", r.path),
		zap.Int("attempt", r.attempts),
		zap.Int64("retry_in_ms", wait.Milliseconds()),
	}
	if r.err != nil {
		fields = append(fields, zap.String("error", redact(r.err.Error(), r.c.secrets())))
	} else {
		fields = append(fields, zap.Int("status", r.status))
	}
	if fromServer {
		fields = append(fields, zap.Bool("retry_after", true))
	}
	r.log.Warn(MsgRetry, fields...)
	if r.c.cfg.OnRetry != nil {
		status, err := r.status, error(nil)
		if r.err != nil {
			status, err = 0, redactErr(r.err, r.c.secrets())
		}
		r.c.cfg.OnRetry(r.method, status, err)
	}
	return wait
}

// retryableStatus: 408 (a proxy timed the request out before the server
// took it), 429 and 5xx may heal; 501 (not implemented) will not.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		status >= 500 && status != http.StatusNotImplemented
}

// permanentTransportError reports errors that another attempt cannot fix:
// an untrusted or mismatched certificate, a TLS/plain-HTTP mix-up, an
// oversized body.
func permanentTransportError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
	)
	var refused *tokenRefused
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verification) || errors.As(err, &record) ||
		errors.Is(err, ErrResponseTooLarge) || errors.As(err, &refused) || certificateRefused(err) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// certificateRefused reports a TLS alert by which the server refused the
// client's certificate, or the lack of one (mTLS): another attempt with
// the same certificate cannot succeed.
func certificateRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	msg := op.Err.Error()
	return strings.Contains(msg, "certificate") || strings.Contains(msg, "access denied")
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3), capped at MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// encodeQuery encodes query parameters with %20 for spaces: some servers
// do not decode "+" in a filter.
func encodeQuery(q url.Values) string {
	return strings.ReplaceAll(q.Encode(), "+", "%20")
}

// marshal encodes a body as JSON without HTML escaping (<, >, & stay as
// they are).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// decodeJSON decodes a successful answer, which must be JSON.
func decodeJSON(method, path string, header http.Header, body []byte, v any) error {
	if ct := header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != MediaType && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return fmt.Errorf("scim %s %s: %w: Content-Type %q is not JSON", method, path, ErrInvalidResponse, ct)
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("scim %s %s: %w: %v", method, path, ErrInvalidResponse, err)
	}
	return nil
}
