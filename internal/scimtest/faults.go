package scimtest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault is a misbehaviour injected in front of the SCIM handler (see
// Inject), or the answer a Reject hook gives to one request.
//
// A fault first waits Latency, then either drops the connection (Drop),
// answers a SCIM error (Status), or, with neither, lets the request go on
// to the SCIM handler (a slow but correct answer). DropResponse instead
// lets the request be applied and then drops the connection before the
// answer is sent: a lost response, as when a POST's reply is lost.
type Fault struct {
	// Method matches the request method ("" = any).
	Method string
	// PathPrefix matches the request path below the base URL, e.g.
	// "/Users" or "/Users/<id>" ("" = any).
	PathPrefix string
	// Times is how many matching requests the fault applies to; 0 = every
	// one until ClearFaults.
	Times int

	// Status is the HTTP status of the SCIM error answered (0 = none).
	Status int
	// RetryAfter is sent as the Retry-After header with Status (e.g. "1"
	// with 429, or an HTTP-date).
	RetryAfter string
	// ScimType and Detail go into the SCIM error body.
	ScimType, Detail string
	// Body, when set, is answered with Status instead of a SCIM error
	// body (a proxy's HTML page, a non-SCIM JSON error, an oversized
	// answer), with ContentType (default "text/html; charset=utf-8").
	Body        []byte
	ContentType string
	// Header holds extra response headers sent with Status (e.g. a
	// Location for a redirect).
	Header http.Header
	// Latency delays the request (ended early when the client goes away or
	// the server closes).
	Latency time.Duration
	// Drop closes the connection without any response.
	Drop bool
	// DropResponse applies the request, then closes the connection without
	// sending the response.
	DropResponse bool
	// StallBody, with Status and Body, sends the headers and the first
	// half of Body, then waits that long before the rest (ended early
	// when the client goes away or the server closes): a server or proxy
	// that stalls in the middle of an answer.
	StallBody time.Duration
	// Hold applies the request, then holds its answer that long (ended
	// early, unanswered, when the client goes away or the server closes):
	// the change is made and the client cannot know it, as when a server
	// or the client dies between the two (for crash tests).
	Hold time.Duration
}

type faultState struct {
	Fault
	left int // requests left; <= 0 with Times 0 means unlimited
}

// Inject adds a fault. Faults are tried in the order injected; the first
// that matches a request applies to it.
func (s *Server) Inject(f Fault) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f, left: f.Times})
}

// ClearFaults removes every injected fault (not the Reject hook nor
// SetDown).
func (s *Server) ClearFaults() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faults = nil
}

// Reject installs a validation hook called with the method (POST, PUT or
// PATCH) and the attributes a write would store (a copy; the enterprise
// extension nested under its URN). A non-nil Fault is answered instead of
// storing: Status defaults to 400 and ScimType to "invalidValue" with 400.
// A nil fn removes the hook. It runs without the store lock, so it may call
// Users, UserByID and the like.
func (s *Server) Reject(fn func(method string, attrs map[string]any) *Fault) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.reject = fn
}

// SetDown makes the server answer 503 to every request while down is true,
// as an unavailable server does (for readiness and outage tests).
func (s *Server) SetDown(down bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.down = down
}

func (s *Server) isDown() bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.down
}

// takeFault returns the fault that applies to a request, counting it.
func (s *Server) takeFault(method, path string) *Fault {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, method) {
			continue
		}
		if f.PathPrefix != "" && !strings.HasPrefix(path, f.PathPrefix) {
			continue
		}
		out := f.Fault
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return &out
	}
	return nil
}

// RejectGroups is Reject for groups: fn is called with the method (POST
// or PUT) and the attributes a write of /Groups would store, and a
// non-nil Fault is answered instead (a server's policy refusing a
// group's name, say). A nil fn removes the hook.
func (s *Server) RejectGroups(fn func(method string, attrs map[string]any) *Fault) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.rejectGroup = fn
}

// rejected runs the Reject hook, if any.
func (s *Server) rejected(method string, attrs map[string]any) *Fault {
	s.fmu.Lock()
	fn := s.reject
	s.fmu.Unlock()
	return s.ruled(fn, method, attrs)
}

// rejectedGroup runs the RejectGroups hook, if any.
func (s *Server) rejectedGroup(method string, attrs map[string]any) *Fault {
	s.fmu.Lock()
	fn := s.rejectGroup
	s.fmu.Unlock()
	return s.ruled(fn, method, attrs)
}

// ruled runs a reject hook on a copy of attrs and completes its fault.
func (s *Server) ruled(fn func(string, map[string]any) *Fault, method string, attrs map[string]any) *Fault {
	if fn == nil {
		return nil
	}
	f := fn(method, deepCopyMap(attrs))
	if f == nil {
		return nil
	}
	out := *f
	if out.Status == 0 && !out.Drop {
		out.Status = http.StatusBadRequest
	}
	if out.Status == http.StatusBadRequest && out.ScimType == "" {
		out.ScimType = "invalidValue"
	}
	return &out
}

// stallBody answers f.Body in two halves, f.StallBody apart.
func (s *Server) stallBody(w http.ResponseWriter, r *http.Request, f *Fault) {
	half := len(f.Body) / 2
	w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body[:half])
	_ = http.NewResponseController(w).Flush()
	t := time.NewTimer(f.StallBody)
	defer t.Stop()
	select {
	case <-t.C:
		_, _ = w.Write(f.Body[half:])
	case <-r.Context().Done():
	case <-s.closed:
	}
}

// applyFault carries out a fault. It reports whether the request should
// go on to the SCIM handler (a latency-only fault).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		case <-s.closed:
			t.Stop()
			return false
		}
	}
	if f.Drop {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			s.logf("drop: cannot hijack the connection: %v", err)
			panic(http.ErrAbortHandler)
		}
		if sw, ok := w.(*statusWriter); ok {
			sw.record() // before the client sees the connection close
		}
		_ = conn.Close()
		return false
	}
	if f.Status == 0 {
		return true
	}
	for k, v := range f.Header {
		w.Header()[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Body != nil {
		ct := f.ContentType
		if ct == "" {
			ct = "text/html; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		if f.StallBody > 0 {
			s.stallBody(w, r, f)
			return false
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write(f.Body)
		return false
	}
	detail := f.Detail
	if detail == "" {
		detail = "injected fault: " + http.StatusText(f.Status)
	}
	writeError(w, f.Status, f.ScimType, detail)
	return false
}
