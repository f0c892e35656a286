package scimclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Resource is a SCIM resource as decoded JSON (numbers are float64).
type Resource map[string]any

// PatchOp is one PATCH operation (RFC 7644 §3.5.2). Op is sent in lower
// case ("add", "remove", "replace"), whatever case it is given in.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// ListResponse is one page of a query (RFC 7644 §3.4.2); StartIndex is
// 1-based.
type ListResponse struct {
	TotalResults int
	StartIndex   int
	ItemsPerPage int
	Resources    []Resource
}

// ServiceProviderConfig is what the server says it supports (RFC 7643
// §5).
type ServiceProviderConfig struct {
	PatchSupported   bool
	FilterSupported  bool
	BulkSupported    bool
	EtagSupported    bool
	FilterMaxResults int
}

// ServiceProviderConfig reads GET /ServiceProviderConfig.
func (c *Client) ServiceProviderConfig(ctx context.Context) (ServiceProviderConfig, Result, error) {
	const path = "/ServiceProviderConfig"
	a, res, err := c.do(ctx, call{method: http.MethodGet, path: path, ok: []int{http.StatusOK}})
	if err != nil {
		return ServiceProviderConfig{}, res, err
	}
	var raw struct {
		Patch  struct{ Supported flexBool } `json:"patch"`
		Bulk   struct{ Supported flexBool } `json:"bulk"`
		Etag   struct{ Supported flexBool } `json:"etag"`
		Filter struct {
			Supported  flexBool
			MaxResults flexInt
		} `json:"filter"`
	}
	if err := a.decode(http.MethodGet, path, &raw); err != nil {
		return ServiceProviderConfig{}, res, err
	}
	return ServiceProviderConfig{
		PatchSupported:   bool(raw.Patch.Supported),
		FilterSupported:  bool(raw.Filter.Supported),
		BulkSupported:    bool(raw.Bulk.Supported),
		EtagSupported:    bool(raw.Etag.Supported),
		FilterMaxResults: int(raw.Filter.MaxResults),
	}, res, nil
}

// CreateUser POSTs a user to /Users and returns the server's resource
// (with its id). The body is sent as the client's bodies always are:
// "schemas" an array holding the core User schema and every extension
// used, without id and meta.
//
// A POST is not idempotent: when an attempt's connection drops after the
// server applied it, the retry meets a 409 (scimType "uniqueness") for the
// account the first attempt created. The caller handles that 409, e.g. by
// looking the account up by userName and adopting it.
//
// Result.Status tells a 201 (created) from a 200: a lenient server
// answers a POST for a userName it holds with 200 and the existing
// account as it is, so a caller that gets 200 (or a resource that differs
// from what it sent) must make the account match with a PATCH or PUT.
func (c *Client) CreateUser(ctx context.Context, r Resource) (Resource, Result, error) {
	const path = "/Users"
	a, res, err := c.do(ctx, call{method: http.MethodPost, path: path, body: resourceBody(r), ok: []int{http.StatusCreated, http.StatusOK}})
	if err != nil {
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodPost, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// CreateUserID is CreateUser for a caller that needs only the new
// account's id: it decodes nothing else of the answer (a provisioning run
// makes one for every user, and decoding the whole resource into a map
// was a fifth of the client's CPU). id is "" when the answer's id is not
// a string; Result.Version is set as by CreateUser.
func (c *Client) CreateUserID(ctx context.Context, r Resource) (id string, res Result, err error) {
	const path = "/Users"
	a, res, err := c.do(ctx, call{method: http.MethodPost, path: path, body: resourceBody(r), ok: []int{http.StatusCreated, http.StatusOK}})
	if err != nil {
		return "", res, err
	}
	if len(a.body) == 0 {
		return "", res, fmt.Errorf("scim %s %s: %w: %d without a resource", http.MethodPost, path, ErrInvalidResponse, a.status)
	}
	if err := a.checkJSON(http.MethodPost, path); err != nil {
		return "", res, err
	}
	if b := strings.TrimLeft(string(a.body), " \t\r\n"); !strings.HasPrefix(b, "{") {
		return "", res, fmt.Errorf("scim %s %s: %w: the answer is not a resource", http.MethodPost, path, ErrInvalidResponse)
	}
	if raw, ok := member(a.body, "id"); ok {
		_ = json.Unmarshal(raw, &id) // a number or an object is no id
	}
	res.Version = strings.TrimSpace(a.header.Get("ETag"))
	if meta, ok := member(a.body, "meta"); res.Version == "" && ok {
		if raw, ok := member(meta, "version"); ok {
			_ = json.Unmarshal(raw, &res.Version)
		}
	}
	return id, res, nil
}

// member returns the value of the last member called name of obj, when
// obj is a JSON object; obj must be valid JSON (json.Valid). It reads one
// member of an answer without decoding the rest.
func member(obj []byte, name string) (json.RawMessage, bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	var found json.RawMessage
	ok := false
	for i = skipSpace(obj, i+1); i < len(obj) && obj[i] != '}'; {
		keyEnd := endOfValue(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, skipSpace(obj, keyEnd)+1) // past the ':'
		end := endOfValue(obj, i)
		if keyIs(key, name) {
			found, ok = obj[i:end], true
		}
		if i = skipSpace(obj, end); i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return found, ok
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfValue returns the index just past the JSON value that starts at i.
func endOfValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(b)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfValue(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	return j
}

// keyIs reports whether the quoted JSON string key is name.
func keyIs(key []byte, name string) bool {
	if len(key) >= 2 && !bytes.ContainsRune(key, '\\') {
		return string(key[1:len(key)-1]) == name
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// GetUser reads /Users/{id}; Result.Version is the version to pass to
// IfMatch. A missing account is an *Error for which IsNotFound holds (a
// 404 that is not a SCIM error is retried, and then only IsStatus 404).
func (c *Client) GetUser(ctx context.Context, id string) (Resource, Result, error) {
	path, err := userPath(id)
	if err != nil {
		return nil, Result{}, err
	}
	a, res, err := c.do(ctx, call{method: http.MethodGet, path: path, ok: []int{http.StatusOK}, check: scimNotFound})
	if err != nil {
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodGet, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// ReplaceUser PUTs the whole resource to /Users/{id} (RFC 7644 §3.5.1),
// prepared like CreateUser's body, and returns the server's resource.
// IfMatch makes it conditional (412 when the resource changed).
func (c *Client) ReplaceUser(ctx context.Context, id string, r Resource, opts ...CallOption) (Resource, Result, error) {
	path, err := userPath(id)
	if err != nil {
		return nil, Result{}, err
	}
	cl := call{method: http.MethodPut, path: path, body: resourceBody(r), ok: []int{http.StatusOK}, check: scimNotFound}
	a, res, err := c.do(ctx, with(cl, opts))
	if err != nil {
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodPut, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// PatchUser applies operations to /Users/{id} (RFC 7644 §3.5.2). Both
// success answers are success: 200 returns the resource, 204 returns a nil
// Resource. A server without PATCH answers 405 (an *Error): use
// ReplaceUser then. IfMatch makes it conditional (412 when the resource
// changed).
func (c *Client) PatchUser(ctx context.Context, id string, ops []PatchOp, opts ...CallOption) (Resource, Result, error) {
	path, err := userPath(id)
	if err != nil {
		return nil, Result{}, err
	}
	if len(ops) == 0 {
		return nil, Result{}, fmt.Errorf("scim PATCH %s: no operations", path)
	}
	sent := make([]PatchOp, len(ops))
	for i, op := range ops {
		op.Op = strings.ToLower(op.Op)
		sent[i] = op
	}
	body := map[string]any{"schemas": []string{PatchOpSchema}, "Operations": sent}
	cl := call{method: http.MethodPatch, path: path, body: body, ok: []int{http.StatusOK, http.StatusNoContent}, check: scimNotFound}
	a, res, err := c.do(ctx, with(cl, opts))
	if err != nil || a.status == http.StatusNoContent || len(a.body) == 0 {
		if err == nil {
			res.Version = versionOf(a, nil)
		}
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodPatch, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// DeleteUser deletes /Users/{id}. A missing account is an *Error for
// which IsNotFound holds: whether that counts as done is the caller's
// choice. IfMatch makes it conditional (412 when the resource changed).
func (c *Client) DeleteUser(ctx context.Context, id string, opts ...CallOption) (Result, error) {
	path, err := userPath(id)
	if err != nil {
		return Result{}, err
	}
	cl := call{method: http.MethodDelete, path: path, ok: []int{http.StatusNoContent, http.StatusOK}, check: scimNotFound}
	_, res, err := c.do(ctx, with(cl, opts))
	return res, err
}

// with applies call options.
func with(cl call, opts []CallOption) call {
	for _, o := range opts {
		o(&cl)
	}
	return cl
}

// ListUsers queries GET /Users. filter ("" = none) is a SCIM filter, best
// built with FilterEq; startIndex (1-based) and count are sent when
// positive (otherwise the server's defaults apply). The server may return
// fewer than count (its page-size cap).
//
// An answer that cannot be right is an error wrapping
// ErrUntrustedAnswer, retried like a 5xx: totalResults > 0 with no
// Resources on a page that should hold some, or, for an equality filter
// (`attr eq "value"`, as FilterEq builds), a Resource whose attribute is
// not the value (a server that ignored or loosened the filter). It is
// never to be read as "no match".
func (c *Client) ListUsers(ctx context.Context, filter string, startIndex, count int) (ListResponse, Result, error) {
	const path = "/Users"
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	if startIndex > 0 {
		q.Set("startIndex", strconv.Itoa(startIndex))
	}
	if count > 0 {
		q.Set("count", strconv.Itoa(count))
	}
	a, res, err := c.do(ctx, call{method: http.MethodGet, path: path, query: q, ok: []int{http.StatusOK},
		check: listCheck(filter, startIndex)})
	if err != nil {
		return ListResponse{}, res, err
	}
	var raw listAnswer
	if err := a.decode(http.MethodGet, path, &raw); err != nil {
		return ListResponse{}, res, err
	}
	return ListResponse{
		TotalResults: int(raw.TotalResults),
		StartIndex:   int(raw.StartIndex),
		ItemsPerPage: int(raw.ItemsPerPage),
		Resources:    raw.Resources,
	}, res, nil
}

// FilterEq returns the filter `attr eq "value"` with value quoted and
// escaped as a JSON string (RFC 7644 §3.4.2.2), e.g. FilterEq("userName",
// `o"brien`) is `userName eq "o\"brien"`. Control characters are escaped
// with upper-case hex digits, which strict filter parsers require; other
// characters, non-ASCII included, are sent as they are.
func FilterEq(attr, value string) string {
	return attr + " eq " + quote(value)
}

func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, string(utf8.RuneError)) {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// userPath is the path of one user; the id is path-escaped.
func userPath(id string) (string, error) {
	if id == "" {
		return "", errors.New("scim: empty user id")
	}
	return "/Users/" + url.PathEscape(id), nil
}

// resourceBody prepares a resource for POST or PUT: a copy without the
// read-only id and meta (RFC 7643 §3.1) and groups (§4.1.2: membership
// is changed through the Group, and a PUT built from a GET holds it), with "schemas" an array holding
// the core User schema, the schemas it had, and every extension whose
// object it holds.
func resourceBody(r Resource) map[string]any {
	out := make(map[string]any, len(r)+1)
	var had []string
	for k, v := range r {
		switch {
		case strings.EqualFold(k, "id"), strings.EqualFold(k, "meta"), strings.EqualFold(k, "groups"):
		case strings.EqualFold(k, "schemas"):
			had = schemaList(v)
		default:
			out[k] = v
		}
	}
	schemas := []string{UserSchema}
	seen := map[string]bool{UserSchema: true}
	for _, s := range had {
		if !seen[s] {
			seen[s] = true
			schemas = append(schemas, s)
		}
	}
	var exts []string
	for k, v := range out {
		if _, isObject := v.(map[string]any); isObject && strings.HasPrefix(strings.ToLower(k), "urn:") && !seen[k] {
			exts = append(exts, k)
		}
	}
	sort.Strings(exts)
	out["schemas"] = append(schemas, exts...)
	return out
}

// schemaList reads a "schemas" value given as an array or, wrongly, as a
// single string.
func schemaList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, s := range v {
			if s, ok := s.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// listAnswer is a ListResponse as sent.
type listAnswer struct {
	TotalResults flexInt    `json:"totalResults"`
	StartIndex   flexInt    `json:"startIndex"`
	ItemsPerPage flexInt    `json:"itemsPerPage"`
	Resources    []Resource `json:"Resources"` // "resources" matches too
}

// Version returns the resource's meta.version ("" when it has none).
func (r Resource) Version() string {
	meta, _ := r["meta"].(map[string]any)
	v, _ := meta["version"].(string)
	return v
}

// versionOf is the version an answer gives its resource: the ETag header
// (RFC 7644 §3.14), else meta.version of the resource in it.
func versionOf(a answer, r Resource) string {
	if v := strings.TrimSpace(a.header.Get("ETag")); v != "" {
		return v
	}
	return r.Version()
}

func decodeResource(a answer, method, path string) (Resource, error) {
	if len(a.body) == 0 {
		return nil, fmt.Errorf("scim %s %s: %w: %d without a resource", method, path, ErrInvalidResponse, a.status)
	}
	var r Resource
	if err := a.decode(method, path, &r); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("scim %s %s: %w: the answer is not a resource", method, path, ErrInvalidResponse)
	}
	return r, nil
}

// flexBool decodes true/false, also when a lenient server sends them as
// strings.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		*b = flexBool(strings.EqualFold(v, "true"))
	}
	return nil
}

// flexInt decodes a number, also when sent as a string.
type flexInt int

func (n *flexInt) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case float64:
		*n = flexInt(v)
	case string:
		i, _ := strconv.Atoi(strings.TrimSpace(v))
		*n = flexInt(i)
	}
	return nil
}
