package scimtest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
)

// User is a snapshot of one account on the server.
type User struct {
	// ID is the server-assigned id (a random UUID).
	ID string
	// Attributes holds everything stored except id, meta and schemas:
	// userName, externalId, active, name, emails, ... with the enterprise
	// extension as an object under its URN. Values have JSON types (string,
	// bool, json.Number, map[string]any, []any).
	Attributes map[string]any
	// Created, LastModified and Version are the meta values.
	Created, LastModified time.Time
	Version               string
}

// UserName returns the userName attribute.
func (u User) UserName() string { s, _ := u.Get("userName").(string); return s }

// ExternalID returns the externalId attribute.
func (u User) ExternalID() string { s, _ := u.Get("externalId").(string); return s }

// Get returns the value at a SCIM attribute path: "active",
// "name.givenName", or an extension attribute with its URN prefix
// ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department").
// Names match case-insensitively; a missing value is nil.
func (u User) Get(path string) any {
	if strings.HasPrefix(strings.ToLower(path), "urn:") {
		i := strings.LastIndex(path, ":")
		ext, _ := lookupFold(u.Attributes, path[:i]).(map[string]any)
		return lookupFold(ext, path[i+1:])
	}
	attr, sub, _ := strings.Cut(path, ".")
	v := lookupFold(u.Attributes, attr)
	if sub == "" {
		return v
	}
	m, _ := v.(map[string]any)
	return lookupFold(m, sub)
}

func lookupFold(m map[string]any, name string) any {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// user is one stored account.
type user struct {
	id                string
	attrs             map[string]any
	created, modified time.Time
	version           string
	seq               uint64
	nameKey           string // the userName index key it is filed under (see names)
	named             bool
}

func (u *user) snapshot() User {
	return User{ID: u.id, Attributes: deepCopyMap(u.attrs), Created: u.created, LastModified: u.modified, Version: u.version}
}

// resource renders the account for elimity (a deep copy: elimity
// marshals it after the store lock is released).
func (u *user) resource() scim.Resource {
	attrs := deepCopyMap(u.attrs)
	var ext optional.String
	if e, ok := attrs["externalId"].(string); ok {
		ext = optional.NewString(e)
	}
	created, modified := u.created, u.modified
	return scim.Resource{
		ID:         u.id,
		ExternalID: ext,
		Attributes: attrs,
		Meta:       scim.Meta{Created: &created, LastModified: &modified, Version: u.version},
	}
}

// Users returns a snapshot of every account, oldest first.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.sortedLocked()
	out := make([]User, len(list))
	for i, u := range list {
		out[i] = u.snapshot()
	}
	return out
}

// UserCount returns the number of accounts, cheaply (Users copies them
// all): for a test polling a server that fills up.
func (s *Server) UserCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users)
}

// UserByID returns the account with the id.
func (s *Server) UserByID(id string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return User{}, false
	}
	return u.snapshot(), true
}

// UserByUserName returns the account whose userName matches
// case-insensitively (userName has caseExact false, RFC 7643 §4.1.1).
func (s *Server) UserByUserName(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if holders := s.names.holders(name); len(holders) > 0 {
		return holders[0].snapshot(), true
	}
	return User{}, false
}

// Seed stores an account directly, without a request: one that existed on
// the server before the agent ran. attrs is a User resource as JSON would
// decode it (nested maps, the extension under its URN); an "id" string in
// it becomes the account's id, otherwise a random UUID is assigned. meta
// and schemas are ignored. Seed does not validate nor enforce uniqueness,
// so a test can build any state it needs.
func (s *Server) Seed(attrs map[string]any) string {
	a := s.normalize(attrs)
	id, _ := attrs["id"].(string)
	if id == "" {
		id = newID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(id, a)
	return id
}

// Edit changes an account without a request, as an administrator editing
// it by hand does (drift). fn gets a copy of the attributes to change in
// place; it runs without the store lock. Edit reports whether the account
// exists.
func (s *Server) Edit(id string, fn func(attrs map[string]any)) bool {
	s.mu.Lock()
	u, ok := s.users[id]
	var attrs map[string]any
	if ok {
		attrs = deepCopyMap(u.attrs)
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	fn(attrs)
	a := s.normalize(attrs)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok = s.users[id]
	if !ok {
		return false
	}
	s.setAttrsLocked(u, a)
	s.touchLocked(u)
	return true
}

// Remove deletes an account without a request. It reports whether it
// existed.
func (s *Server) Remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.removeLocked(id)
	s.dropMemberLocked(id)
	return ok
}

func (s *Server) insertLocked(id string, attrs map[string]any) *user {
	now := time.Now().UTC()
	s.seq++
	u := &user{id: id, created: now, seq: s.seq}
	s.touchLocked(u)
	u.modified = now
	s.removeLocked(id) // Seed may reuse an id
	s.setAttrsLocked(u, attrs)
	s.users[id] = u
	return u
}

// touchLocked gives the account a new version and modification time.
func (s *Server) touchLocked(u *user) {
	s.version++
	u.version = fmt.Sprintf(`W/"%d"`, s.version)
	u.modified = time.Now().UTC()
}

func (s *Server) sortedLocked() []*user { return sortedRecords(s.users) }

// sortedRecords returns the resources of m (users or groups) in the
// order they were created.
func sortedRecords(m map[string]*user) []*user {
	list := make([]*user, 0, len(m))
	for _, u := range m {
		list = append(list, u)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	return list
}

// takenLocked reports whether another account than id holds the userName
// of attrs, compared case-insensitively.
func (s *Server) takenLocked(attrs map[string]any, id string) bool {
	name, _ := userNameOf(attrs)
	for _, u := range s.names.holders(name) {
		if u.id != id {
			return true
		}
	}
	return false
}

// holderLocked returns the account holding the userName of attrs
// (compared case-insensitively), or nil.
func (s *Server) holderLocked(attrs map[string]any) *user {
	name, _ := userNameOf(attrs)
	if holders := s.names.holders(name); len(holders) > 0 {
		return holders[0]
	}
	return nil
}

// normalize turns attributes given by a test into what a request would
// have stored: JSON types, canonical attribute names, no id/meta/schemas.
func (s *Server) normalize(attrs map[string]any) map[string]any {
	raw, err := json.Marshal(attrs)
	if err != nil {
		panic(fmt.Sprintf("scimtest: attributes are not JSON: %v", err))
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		panic(fmt.Sprintf("scimtest: attributes are not a JSON object: %v", err))
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch {
		case strings.EqualFold(k, "id"), strings.EqualFold(k, "meta"), strings.EqualFold(k, "schemas"):
			continue
		case s.patcher.exts[k].ID != "":
			out[k] = v
		default:
			if a, ok := s.patcher.core.Attributes.ContainsAttribute(k); ok {
				k = a.Name()
			}
			out[k] = v
		}
	}
	return out
}

// userHandler is the elimity ResourceHandler for /Users, backed by the
// Server's store.
type userHandler struct{ s *Server }

func notFound(id string) error { return scimerrors.ScimErrorResourceNotFound(id) }

func checkUserName(attrs map[string]any) error {
	if n, _ := attrs["userName"].(string); strings.TrimSpace(n) == "" {
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue,
			Detail: "userName must be a non-empty string (RFC 7643 §4.1.1)"}
	}
	return nil
}

// reject runs the Reject hook and hands its fault to ServeHTTP.
func (h userHandler) reject(r *http.Request, attrs map[string]any) error {
	return handOver(r, h.s.rejected(r.Method, attrs))
}

// handOver hands a reject hook's fault, if any, to ServeHTTP, which
// answers it instead of the handler's answer.
func handOver(r *http.Request, f *Fault) error {
	if f == nil {
		return nil
	}
	if hr, ok := r.Context().Value(hookKey{}).(*hookResult); ok {
		hr.fault = f
	}
	return errRejected
}

// Create stores a new account (POST /Users).
func (h userHandler) Create(r *http.Request, attributes scim.ResourceAttributes) (scim.Resource, error) {
	attrs := deepCopyMap(attributes)
	if err := checkUserName(attrs); err != nil {
		return scim.Resource{}, err
	}
	if err := h.reject(r, attrs); err != nil {
		return scim.Resource{}, err
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.takenLocked(attrs, "") {
		if s.opts.LenientCreate {
			// The existing account, as it is, with 200.
			if hr, ok := r.Context().Value(hookKey{}).(*hookResult); ok {
				hr.answerExisting()
			}
			return s.holderLocked(attrs).resource(), nil
		}
		return scim.Resource{}, scimerrors.ScimErrorUniqueness
	}
	for _, name := range s.opts.DropOnCreate {
		delete(attrs, name)
	}
	return s.insertLocked(newID(), attrs).resource(), nil
}

// Get returns one account (GET /Users/{id}).
func (h userHandler) Get(r *http.Request, id string) (scim.Resource, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	return u.resource(), nil
}

// GetAll lists accounts (GET /Users), filtered and paged.
func (h userHandler) GetAll(r *http.Request, params scim.ListRequestParams) (scim.Page, error) {
	s := h.s
	s.mu.Lock()
	list := s.sortedLocked()
	resources := make([]scim.Resource, len(list))
	for i, u := range list {
		resources[i] = u.resource()
	}
	s.mu.Unlock()

	mode := s.filterMode()
	if params.FilterValidator != nil && mode == FilterCountOnly {
		return scim.Page{TotalResults: len(resources)}, nil
	}
	if params.FilterValidator != nil && mode != FilterIgnored {
		v := s.patcher.filterValidator(params.FilterValidator.GetFilter())
		matched := resources[:0]
		for _, res := range resources {
			if passes(v, filterView(res)) {
				matched = append(matched, res)
			}
		}
		resources = matched
	}
	total := len(resources)
	start := min(max(params.StartIndex-1, 0), total)
	end := min(start+max(params.Count, 0), total)
	return scim.Page{TotalResults: total, Resources: append([]scim.Resource{}, resources[start:end]...)}, nil
}

// Replace replaces every attribute of an account (PUT /Users/{id}).
func (h userHandler) Replace(r *http.Request, id string, attributes scim.ResourceAttributes) (scim.Resource, error) {
	attrs := deepCopyMap(attributes)
	if err := checkUserName(attrs); err != nil {
		return scim.Resource{}, err
	}
	s := h.s
	if _, ok := s.UserByID(id); !ok {
		return scim.Resource{}, notFound(id)
	}
	if err := h.reject(r, attrs); err != nil {
		return scim.Resource{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	if err := checkVersionLocked(s.ifMatch(r), u); err != nil {
		return scim.Resource{}, err
	}
	if s.takenLocked(attrs, id) {
		return scim.Resource{}, scimerrors.ScimErrorUniqueness
	}
	s.setAttrsLocked(u, attrs)
	s.touchLocked(u)
	return u.resource(), nil
}

// Patch applies PATCH operations (PATCH /Users/{id}) to a copy of the
// account, runs the Reject hook on the result, then stores it unless the
// account changed meanwhile (then it starts again).
func (h userHandler) Patch(r *http.Request, id string, operations []scim.PatchOperation) (scim.Resource, error) {
	s := h.s
	if err := s.checkValueFilterPaths(operations); err != nil {
		return scim.Resource{}, err
	}
	for {
		s.mu.Lock()
		u, ok := s.users[id]
		if !ok {
			s.mu.Unlock()
			return scim.Resource{}, notFound(id)
		}
		if err := checkVersionLocked(s.ifMatch(r), u); err != nil {
			s.mu.Unlock()
			return scim.Resource{}, err
		}
		attrs, version := deepCopyMap(u.attrs), u.version
		s.mu.Unlock()

		for _, op := range operations {
			if s.opts.IgnoreValueFilterPaths && op.Path != nil && op.Path.ValueExpression != nil {
				continue
			}
			if err := s.patcher.apply(attrs, op); err != nil {
				return scim.Resource{}, err
			}
		}
		if err := checkUserName(attrs); err != nil {
			return scim.Resource{}, err
		}
		if err := h.reject(r, attrs); err != nil {
			return scim.Resource{}, err
		}

		s.mu.Lock()
		u, ok = s.users[id]
		if !ok {
			s.mu.Unlock()
			return scim.Resource{}, notFound(id)
		}
		if u.version != version {
			s.mu.Unlock()
			continue
		}
		if s.takenLocked(attrs, id) {
			s.mu.Unlock()
			return scim.Resource{}, scimerrors.ScimErrorUniqueness
		}
		s.setAttrsLocked(u, attrs)
		s.touchLocked(u)
		res := u.resource()
		s.mu.Unlock()
		if s.opts.PatchNoContent {
			return scim.Resource{}, nil // no attributes: elimity answers 204
		}
		return res, nil
	}
}

// Delete removes an account (DELETE /Users/{id}); later requests for it
// get 404.
func (h userHandler) Delete(r *http.Request, id string) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return notFound(id)
	}
	if err := checkVersionLocked(s.ifMatch(r), u); err != nil {
		return err
	}
	s.removeLocked(id)
	s.dropMemberLocked(id)
	return nil
}

// newID returns a random (version 4) UUID.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("scimtest: random id: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return deepCopyMap(v)
	case scim.ResourceAttributes:
		return deepCopyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopyMap(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	default:
		return v
	}
}
