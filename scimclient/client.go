// Package scimclient is the agent's SCIM 2.0 client (RFC 7643/7644) for
// the /Users endpoint of a provisioning server.
//
// It gets right what other provisioning clients get wrong: TLS
// verification is always on, bodies are application/scim+json with
// "schemas" as an array and without the read-only id and meta, filter
// values are quoted and escaped, ids are path-escaped, response bodies are
// bounded, and the bearer token never reaches a log line or an error.
//
// Every call retries what may heal (network errors, timeouts, dropped
// connections, 5xx except 501, 429) with exponential backoff and jitter,
// honouring Retry-After on 429 and 503, for MaxAttempts attempts or, with
// MaxAttempts 0, until the context is done. Other answers come back at
// once as *Error. Each call also returns a Result (status, attempts,
// duration) for the caller's one log line per call.
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

// Config configures a Client.
type Config struct {
	// BaseURL is the SCIM root, e.g. https://idp.example.com/scim/v2 (a
	// trailing slash is fine). It must be an absolute http or https URL
	// without credentials, query or fragment.
	BaseURL string
	// Token is the bearer token; it is never logged nor put in an error.
	Token string
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
	// OnRetry, when set, is called before each retry with the method, and
	// the status that caused it (0 for a network error): retries are
	// counted as they happen, not when the call finally ends.
	OnRetry func(method string, status int)
}

// Client is a SCIM client; it is safe for concurrent use.
type Client struct {
	base  string // BaseURL without a trailing slash
	token string
	cfg   Config
	http  *http.Client
	log   *zap.Logger
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
		return nil, errors.New("scimclient: base URL must not hold credentials: put the bearer token in Token")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("scimclient: base URL %q must not have a query or fragment", u.Redacted())
	}
	if cfg.Token == "" {
		return nil, errors.New("scimclient: no bearer token")
	}
	if strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("scimclient: the bearer token holds spaces or control characters")
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
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
	}
	return &Client{
		base:  strings.TrimRight(u.String(), "/"),
		token: cfg.Token,
		cfg:   cfg,
		http: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A SCIM server has no business redirecting: a redirect means a
			// wrong base URL, and following one could carry the token to
			// another scheme or place. It comes back as an *Error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log,
	}, nil
}

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

// request is one call: what to send and what was seen so far. Its hooks
// run in the calling goroutine (retryablehttp's loop is synchronous).
type request struct {
	c            *Client
	log          *zap.Logger
	method, path string // path below the base URL, without the query
	attempts     int
	status       int
	err          error  // the last attempt's transport error, if any
	body         []byte // the last response body read
	bodyRead     bool
	bo           *backoff.ExponentialBackOff
}

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

// do runs one call: method on path (below the base URL) with an optional
// query and JSON body. A final status not in ok becomes an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, ok ...int) (answer, Result, error) {
	start := time.Now()
	r := &request{c: c, log: c.logger(ctx), method: method, path: path}
	res := func() Result { return Result{Status: r.status, Attempts: r.attempts, Duration: time.Since(start)} }

	var raw any // nil, or the body bytes (rewound for each attempt)
	if body != nil {
		b, err := marshal(body)
		if err != nil {
			return answer{}, res(), fmt.Errorf("scim %s %s: encode the body: %w", method, path, err)
		}
		raw = b
	}
	target := c.base + path
	if q := encodeQuery(query); q != "" {
		target += "?" + q
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, target, raw)
	if err != nil {
		return answer{}, res(), fmt.Errorf("scim %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", MediaType+", application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if raw != nil {
		req.Header.Set("Content-Type", MediaType)
	}
	req.SetResponseHandler(r.readBody)

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
	retryMax := math.MaxInt
	if c.cfg.MaxAttempts > 0 {
		retryMax = c.cfg.MaxAttempts - 1
	}
	rc := &retryablehttp.Client{
		HTTPClient:     c.http,
		Logger:         nil, // it would log URLs; retries are logged by backoff
		RetryWaitMin:   c.cfg.MinBackoff,
		RetryWaitMax:   c.cfg.MaxBackoff,
		RetryMax:       retryMax,
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, i int) { r.attempts = i + 1 },
		CheckRetry:     r.checkRetry,
		Backoff:        r.backoff,
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(req)
	if resp != nil && !r.bodyRead && err == nil {
		// Retries ran out on a retryable status: its body is unread.
		r.status = resp.StatusCode
		err = r.readBody(resp)
	}
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		err = redactErr(err, c.token)
		if ctx.Err() != nil {
			if !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
			err = &contextDone{err}
		}
		return answer{status: r.status}, res(), fmt.Errorf("scim %s %s: %w", method, path, err)
	}
	a := answer{status: r.status, header: resp.Header, body: r.body}
	for _, s := range ok {
		if r.status == s {
			return a, res(), nil
		}
	}
	e := decodeError(method, path, r.status, resp.Header.Get("Content-Type"), r.body, c.token)
	if loc := resp.Header.Get("Location"); r.status >= 300 && r.status < 400 && loc != "" {
		e.Detail = clean("redirect to "+loc+" (not followed: check the base URL)", 300, c.token)
	}
	return answer{status: r.status}, res(), e
}

// readBody reads a final answer's body, bounded by MaxResponseBytes.
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
	return nil
}

// checkRetry decides whether an attempt is retried.
func (r *request) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	r.status = 0
	if resp != nil {
		r.status = resp.StatusCode
	}
	r.err = err
	if err != nil {
		if permanentTransportError(err) {
			return false, err
		}
		r.bodyRead = false
		return true, nil
	}
	if retryableStatus(resp.StatusCode) {
		r.bodyRead = false
		return true, nil
	}
	return false, nil
}

// backoff returns the wait before the next attempt and logs the retry:
// Retry-After on 429 and 503 (capped at MaxRetryAfter), else exponential
// backoff with jitter between MinBackoff and MaxBackoff.
func (r *request) backoff(_, _ time.Duration, _ int, resp *http.Response) time.Duration {
	wait, fromServer := time.Duration(0), false
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		wait, fromServer = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		// "Retry-After: 0" or a date already past would make a tight
		// loop of a server that keeps saying it: back off as usual.
		fromServer = fromServer && wait >= r.c.cfg.MinBackoff
	}
	if !fromServer {
		wait = min(max(r.bo.NextBackOff(), r.c.cfg.MinBackoff), r.c.cfg.MaxBackoff)
	}
	fields := []zap.Field{
		zap.String("method", r.method),
		zap.String("path", r.path),
		zap.Int("attempt", r.attempts),
		zap.Int64("retry_in_ms", wait.Milliseconds()),
	}
	if r.err != nil {
		fields = append(fields, zap.String("error", redact(r.err.Error(), r.c.token)))
	} else {
		fields = append(fields, zap.Int("status", r.status))
	}
	if fromServer {
		fields = append(fields, zap.Bool("retry_after", true))
	}
	r.log.Warn(MsgRetry, fields...)
	if r.c.cfg.OnRetry != nil {
		status := r.status
		if r.err != nil {
			status = 0
		}
		r.c.cfg.OnRetry(r.method, status)
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
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verification) || errors.As(err, &record) ||
		errors.Is(err, ErrResponseTooLarge) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
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
