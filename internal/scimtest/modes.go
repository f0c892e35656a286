package scimtest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"golang.org/x/time/rate"
)

// FilterMode says how the server answers a filtered GET /Users: as
// RFC 7644 says (the zero value), or as lenient servers seen in the wild
// do.
type FilterMode int

// Filter modes.
const (
	// FilterHonoured answers the accounts that match the filter.
	FilterHonoured FilterMode = iota
	// FilterIgnored answers every account (paged) as if no filter had
	// been sent.
	FilterIgnored
	// FilterCountOnly answers totalResults = every account and no
	// Resources at all, as a Drupal SCIM server module was seen to.
	FilterCountOnly
)

// String names the mode, for test names.
func (m FilterMode) String() string {
	switch m {
	case FilterHonoured:
		return "honoured"
	case FilterIgnored:
		return "ignored"
	case FilterCountOnly:
		return "count-only"
	}
	return fmt.Sprintf("FilterMode(%d)", int(m))
}

// SetFilter changes how a filtered GET /Users is answered from now on
// (Options.Filter), so that a test can make a lenient server behave, or
// misbehave, while a client runs.
func (s *Server) SetFilter(m FilterMode) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.filter = m
}

func (s *Server) filterMode() FilterMode {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.filter
}

// checkValueFilterPaths refuses, with Options.NoValueFilterPaths, an
// operation whose path holds a value filter: 400 invalidPath, as a server
// that takes only plain attribute paths answers.
func (s *Server) checkValueFilterPaths(ops []scim.PatchOperation) error {
	if !s.opts.NoValueFilterPaths {
		return nil
	}
	for i, op := range ops {
		if op.Path != nil && op.Path.ValueExpression != nil {
			return patchError(scimerrors.ScimTypeInvalidPath,
				"Operations[%d].path: this server does not support value filters in PATCH paths", i)
		}
	}
	return nil
}

// BeforeServe installs a hook called for each request after it is logged
// and before it is answered (before SetDown, faults and every check), in
// the request's goroutine and without any lock held: it may call Edit,
// Seed or Remove, so that a test can change an account between two
// requests of a client deterministically (a concurrent edit between a
// GET and the PATCH built from it). A nil fn removes the hook.
func (s *Server) BeforeServe(fn func(r Request)) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.before = fn
}

func (s *Server) beforeServe(r Request) {
	s.fmu.Lock()
	fn := s.before
	s.fmu.Unlock()
	if fn != nil {
		fn(r)
	}
}

// HTMLNotFound returns a fault answering 404 with an HTML page, not a
// SCIM error, as Google's SCIM endpoint answers a PUT and as a proxy
// answers a path it does not route: a client must not read it as "the
// account is gone". Inject it with the method ("" = any) and path
// prefix ("" = any) it applies to.
func HTMLNotFound(method, pathPrefix string) Fault {
	return Fault{
		Method:      method,
		PathPrefix:  pathPrefix,
		Status:      http.StatusNotFound,
		ContentType: "text/html; charset=UTF-8",
		Body: []byte("<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 404 (Not Found)!!1</title>" +
			"<p><b>404.</b> <ins>That’s an error.</ins><p>The requested URL was not found on this server. <ins>That’s all we know.</ins></html>\n"),
	}
}

// newRateLimiter returns the limiter of Options.RateLimit, or nil.
func newRateLimiter(o Options) *rate.Limiter {
	if o.RateLimit <= 0 {
		return nil
	}
	burst := o.RateBurst
	if burst <= 0 {
		burst = int(math.Ceil(o.RateLimit))
	}
	return rate.NewLimiter(rate.Limit(o.RateLimit), burst)
}

// overLimit reports whether a SCIM request exceeds Options.RateLimit,
// counting it when it does.
func (s *Server) overLimit() bool {
	if s.limiter == nil || s.limiter.Allow() {
		return false
	}
	s.fmu.Lock()
	s.limited++
	s.fmu.Unlock()
	return true
}

// RateLimited returns how many requests were answered 429 because they
// exceeded Options.RateLimit (injected 429 faults are not counted).
func (s *Server) RateLimited() int {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.limited
}

// advertiseETags rewrites a ServiceProviderConfig answer to say
// etag.supported=true (elimity always says false).
func advertiseETags(body []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return body
	}
	m["etag"] = map[string]any{"supported": true}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// ifMatchKey carries a request's If-Match header to the resource handler,
// which compares it with the account's version under the store lock.
type ifMatchKey struct{}

// ifMatch returns the If-Match a write must satisfy ("" = none, or
// ETags off).
func (s *Server) ifMatch(r *http.Request) string {
	if !s.opts.ETags {
		return ""
	}
	v, _ := r.Context().Value(ifMatchKey{}).(string)
	return v
}

// checkVersionLocked answers 412 when If-Match names no version the
// account has (RFC 7232 §3.1; "*" matches any existing account). SCIM's
// versions are weak ETags and are compared as written (RFC 7644 §3.14).
func checkVersionLocked(ifMatch string, u *user) error {
	if ifMatch == "" {
		return nil
	}
	for _, tag := range strings.Split(ifMatch, ",") {
		if tag = strings.TrimSpace(tag); tag == "*" || tag == u.version {
			return nil
		}
	}
	return scimerrors.ScimError{Status: http.StatusPreconditionFailed,
		Detail: fmt.Sprintf("If-Match %s does not match the account's version %s: it changed since it was read", ifMatch, u.version)}
}

// answerExisting marks, on the request's hookResult, that a lenient POST
// answered an existing account: ServeHTTP answers 200, not 201.
func (hr *hookResult) answerExisting() { hr.status = http.StatusOK }

// rewriteStatus applies a status the resource handler asked for.
func rewriteStatus(code int, hr *hookResult) int {
	if hr.status != 0 && code >= 200 && code < 300 {
		return hr.status
	}
	return code
}
