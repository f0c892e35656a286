package scimclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Error is a server's refusal: an HTTP error status with the SCIM error
// (RFC 7644 §3.12) it came with. Transport failures and cancelled contexts
// are other errors, never *Error.
type Error struct {
	// Method and Path are the request's method and path below the base
	// URL (without the query).
	Method, Path string
	// Status is the HTTP status.
	Status int
	// ScimType is the SCIM error keyword (e.g. "uniqueness"), if any.
	ScimType string
	// Detail is the server's detail, or for a body that is not a SCIM
	// error a short sanitized excerpt of it. It never holds a secret.
	Detail string
	// SCIM reports whether the body was a SCIM error (RFC 7644 §3.12):
	// JSON with the Error schema, or with its status, scimType or detail
	// members. A proxy's HTML page, plain text, other JSON or no body at
	// all is not: such a 404 does not say the resource is gone (see
	// IsNotFound).
	SCIM bool
}

// Error describes the refusal, e.g.
// `scim POST /Users: 409 Conflict (uniqueness): userName taken`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("scim")
	if e.Method != "" {
		b.WriteString(" " + e.Method)
	}
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
		if t := http.StatusText(e.Status); t != "" {
			b.WriteString(" " + t)
		}
	}
	if e.ScimType != "" {
		b.WriteString(" (" + e.ScimType + ")")
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Status == http.StatusNotFound && !e.SCIM {
		b.WriteString(" (not a SCIM error: not taken to mean the resource is gone)")
	}
	return b.String()
}

// IsStatus reports whether err is (or wraps) an *Error with the status,
// whatever its body was.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// IsNotFound reports whether err says the resource is gone: a 404 that is
// a SCIM error. A 404 that is not (an HTML page from a proxy, Google's
// answer to a PUT it does not route) is a fault of the path to the
// server, retried like a 5xx and IsRetryable: taking it for a deletion
// would create the account again.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound && e.SCIM
}

// IsPreconditionFailed reports whether err is a 412: an IfMatch write
// found the resource changed since its version was read. Read it again,
// recompute the change and try again.
func IsPreconditionFailed(err error) bool { return IsStatus(err, http.StatusPreconditionFailed) }

// ScimType returns the SCIM error keyword of err ("" when err is not an
// *Error or has none).
func ScimType(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.ScimType
	}
	return ""
}

// IsRetryable reports whether a failed call may succeed if made again
// later: a 429 or 5xx (except 501) or a 404 that is not a SCIM error
// after the attempts ran out, an untrusted answer (ErrUntrustedAnswer),
// or a transport failure (network, timeout, dropped connection). A
// refusal (other 4xx, 3xx), an untrusted certificate, a refused client
// certificate, an oversized or malformed answer and the caller's own
// cancelled context are not.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUntrustedAnswer) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return retryableStatus(e.Status) || e.Status == http.StatusNotFound && !e.SCIM
	}
	var done *contextDone
	if errors.As(err, &done) {
		return false
	}
	return !permanentTransportError(err) && !errors.Is(err, ErrInvalidResponse)
}

// contextDone marks an error caused by the caller's context ending (as
// opposed to an attempt's own timeout, which also matches
// context.DeadlineExceeded).
type contextDone struct{ err error }

func (e *contextDone) Error() string { return e.err.Error() }
func (e *contextDone) Unwrap() error { return e.err }

// decodeError builds the *Error of a refused call. The body's status may
// be a string (as RFC 7644 says) or a number; the HTTP status wins.
func decodeError(method, path string, status int, contentType string, body []byte, secrets []string) *Error {
	e := &Error{Method: method, Path: path, Status: status}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil && isSCIMError(m) {
		e.SCIM = true
		e.ScimType = clean(text(m["scimType"]), 64, secrets)
		e.Detail = clean(text(m["detail"]), 512, secrets)
		if e.Status == 0 {
			e.Status = statusOf(m["status"])
		}
		return e
	}
	if len(body) > 0 {
		e.Detail = clean(string(body), 200, secrets)
		if strings.Contains(contentType, "html") {
			e.Detail = clean(htmlTags.ReplaceAllString(string(body), " "), 200, secrets)
		}
	}
	return e
}

func isSCIMError(m map[string]any) bool {
	if m == nil {
		return false
	}
	if s, ok := m["schemas"].([]any); ok {
		for _, v := range s {
			if v == ErrorSchema {
				return true
			}
		}
	}
	_, detail := m["detail"]
	_, scimType := m["scimType"]
	_, status := m["status"]
	return detail || scimType || status
}

func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func statusOf(v any) int {
	switch v := v.(type) {
	case string:
		n, _ := strconv.Atoi(strings.TrimSpace(v))
		return n
	case float64:
		return int(v)
	}
	return 0
}

var htmlTags = regexp.MustCompile(`(?s)<(script|style)[^>]*>.*?</(script|style)>|<[^>]*>`)

// clean makes server text safe for a log line: the secrets redacted,
// control characters and runs of spaces folded, at most n runes.
func clean(s string, n int, secrets []string) string {
	s = redact(strings.ToValidUTF8(s, "\uFFFD"), secrets)
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return redact(s, secrets)
}

// redact removes every secret from s, also in the forms a server may
// quote it in: JSON-escaped (PHP's json_encode writes / as \/) and
// URL-escaped. Longer secrets go first, so a secret holding another is
// redacted whole.
func redact(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		for _, form := range tokenForms(secret) {
			s = strings.ReplaceAll(s, form, "[REDACTED]")
		}
	}
	return s
}

// tokenForms returns token as written, JSON-escaped, and URL-escaped.
func tokenForms(token string) []string {
	forms := []string{token}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	if b, err := json.Marshal(token); err == nil {
		j := string(b[1 : len(b)-1])
		add(j)
		add(strings.ReplaceAll(j, "/", `\/`))
	}
	add(url.QueryEscape(token))
	add(url.PathEscape(token))
	return forms
}

// redactedError keeps an error's chain while hiding the secrets from its
// message (a transport error could quote a server's words).
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactErr(err error, secrets []string) error {
	msg := err.Error()
	if r := redact(msg, secrets); r != msg {
		return &redactedError{err: err, msg: r}
	}
	return err
}
