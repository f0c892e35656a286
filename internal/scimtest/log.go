package scimtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Request is one request the server received, as the client sent it.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the path below the base URL ("/Users/<id>"); a path outside
	// the base is kept whole.
	Path string
	// RawQuery is the query string as sent; Query is its decoding.
	RawQuery string
	Query    url.Values
	// Body is the raw request body.
	Body []byte
	// ContentType is the request's Content-Type header.
	ContentType string
	// Header holds the request headers less Authorization and Cookie (the
	// log never keeps credentials).
	Header http.Header
	// RemoteAddr is the client's end of the connection the request came
	// on: two requests with one RemoteAddr shared a connection.
	RemoteAddr string
	// ClientCert is the common name of the TLS client certificate the
	// request came with (mTLS), or "".
	ClientCert string
	// Status is the status answered; 0 when the connection was dropped,
	// the client went away before an answer, or the answer is not done.
	Status int
	// Faulted is true when an injected fault, SetDown or the Reject hook
	// shaped the answer.
	Faulted bool
	// Time is when the request arrived; Duration how long it took.
	Time     time.Time
	Duration time.Duration
}

// JSON decodes the body as a JSON object (nil when it is not one).
func (r Request) JSON() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return nil
	}
	return m
}

// Requests returns every request received so far, in arrival order. A
// request still being answered has Status 0 until it completes.
func (s *Server) Requests() []Request {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
	}
	return out
}

// ResetRequests forgets the requests received so far.
func (s *Server) ResetRequests() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.reqs = nil
}

// RequestsMatching returns the requests with the method ("" = any) whose
// Path starts with pathPrefix ("" = any).
func (s *Server) RequestsMatching(method, pathPrefix string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if (method == "" || strings.EqualFold(method, r.Method)) && strings.HasPrefix(r.Path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

// CountRequests counts the requests RequestsMatching would return.
func (s *Server) CountRequests(method, pathPrefix string) int {
	return len(s.RequestsMatching(method, pathPrefix))
}
