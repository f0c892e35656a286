package scimtest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// Groups (RFC 7643 §4.2) as strict servers keep them: displayName unique
// (case-insensitively; a POST of a taken one is a 409), every member a
// user that exists (else 400 invalidValue), PATCH of members with add and
// with remove of members[value eq "<id>"], and members dropped from every
// group when their user is deleted. Options change that like the servers
// that differ: GroupsWithoutMembers (AWS IAM Identity Center returns no
// members on GET), MaxMembersPerRequest (AWS takes 100 member changes a
// request), KeepMembersOfDeletedUsers, GroupsDropMembersOnCreate.

// Group is a snapshot of one group on the server.
type Group struct {
	ID string
	// Attributes holds everything stored except id, meta and schemas.
	Attributes map[string]any
	Version    string
}

// DisplayName returns the displayName attribute.
func (g Group) DisplayName() string {
	s, _ := lookupFold(g.Attributes, "displayName").(string)
	return s
}

// ExternalID returns the externalId attribute.
func (g Group) ExternalID() string { s, _ := lookupFold(g.Attributes, "externalId").(string); return s }

// Members returns the member values (user ids), in the order stored.
func (g Group) Members() []string { return memberValues(g.Attributes) }

func memberValues(attrs map[string]any) []string {
	var out []string
	for _, m := range asList(lookupFold(attrs, "members")) {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm["value"].(string); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// groupResourceType is the /Groups endpoint.
func (s *Server) groupResourceType() scim.ResourceType {
	return scim.ResourceType{
		ID:          optional.NewString("Group"),
		Name:        "Group",
		Endpoint:    "/Groups",
		Description: optional.NewString("Group"),
		Schema:      schema.CoreGroupSchema(),
		Handler:     groupHandler{s},
	}
}

// newGroupPatcher applies PATCH operations to groups.
func newGroupPatcher() *patcher {
	core := schema.CoreGroupSchema()
	core.Attributes = append(append(schema.Attributes{}, core.Attributes...),
		schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{CaseExact: true, Name: "externalId"})))
	filterSchema := schema.CoreGroupSchema()
	filterSchema.Attributes = append(append(schema.Attributes{}, filterSchema.Attributes...), schema.CommonAttributes()...)
	return &patcher{core: core, filterSchema: filterSchema, exts: map[string]schema.Schema{}}
}

// Groups returns a snapshot of every group, oldest first.
func (s *Server) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Group, 0, len(s.groups))
	for _, g := range sortedRecords(s.groups) {
		out = append(out, Group{ID: g.id, Attributes: deepCopyMap(g.attrs), Version: g.version})
	}
	return out
}

// GroupByDisplayName returns the group with the displayName (matched
// case-insensitively).
func (s *Server) GroupByDisplayName(name string) (Group, bool) {
	for _, g := range s.Groups() {
		if strings.EqualFold(g.DisplayName(), name) {
			return g, true
		}
	}
	return Group{}, false
}

// GroupByID returns the group with the id.
func (s *Server) GroupByID(id string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return Group{}, false
	}
	return Group{ID: g.id, Attributes: deepCopyMap(g.attrs), Version: g.version}, true
}

// SeedGroup stores a group without a request (one that existed before
// the agent ran) and returns its id. attrs is a Group resource as JSON
// would decode it; members are stored as given, unchecked.
func (s *Server) SeedGroup(attrs map[string]any) string {
	a := deepCopyMap(attrs)
	delete(a, "id")
	delete(a, "schemas")
	delete(a, "meta")
	s.mu.Lock()
	defer s.mu.Unlock()
	id := newID()
	s.insertGroupLocked(id, a)
	return id
}

// EditGroup changes a group without a request, as an administrator does
// by hand; it reports whether the group exists. fn gets a copy of the
// attributes to change in place and runs without the store lock (it may
// call Users and the like).
func (s *Server) EditGroup(id string, fn func(attrs map[string]any)) bool {
	s.mu.Lock()
	g, ok := s.groups[id]
	var attrs map[string]any
	if ok {
		attrs = deepCopyMap(g.attrs)
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	fn(attrs)
	a := deepCopyMap(attrs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok = s.groups[id]; !ok {
		return false
	}
	g.attrs = a
	s.touchLocked(g)
	return true
}

// RemoveGroup deletes a group without a request.
func (s *Server) RemoveGroup(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.groups[id]
	delete(s.groups, id)
	return ok
}

func (s *Server) insertGroupLocked(id string, attrs map[string]any) *user {
	s.seq++
	g := &user{id: id, attrs: attrs, seq: s.seq}
	s.touchLocked(g)
	g.created = g.modified
	s.groups[id] = g
	return g
}

// dropMemberLocked removes a deleted user from every group.
func (s *Server) dropMemberLocked(userID string) {
	if s.opts.KeepMembersOfDeletedUsers {
		return
	}
	for _, g := range s.groups {
		list := asList(g.attrs["members"])
		keep := list[:0]
		for _, m := range list {
			if mm, ok := m.(map[string]any); !ok || mm["value"] != userID {
				keep = append(keep, m)
			}
		}
		if len(keep) != len(list) {
			setList(g.attrs, "members", keep)
			s.touchLocked(g)
		}
	}
}

// groupResource renders a group for elimity, without its members when
// the server keeps them to itself.
func (s *Server) groupResource(g *user) scim.Resource {
	attrs := deepCopyMap(g.attrs)
	if s.opts.GroupsWithoutMembers {
		delete(attrs, "members")
	}
	var ext optional.String
	if e, ok := attrs["externalId"].(string); ok {
		ext = optional.NewString(e)
	}
	created, modified := g.created, g.modified
	return scim.Resource{ID: g.id, ExternalID: ext, Attributes: attrs,
		Meta: scim.Meta{Created: &created, LastModified: &modified, Version: g.version}}
}

// groupHandler is the elimity ResourceHandler for /Groups.
type groupHandler struct{ s *Server }

// checkGroupLocked makes a strict server's checks of a group to store:
// a displayName no other group has (and, with UniqueGroupExternalID, an
// externalId), members that are existing users.
func (s *Server) checkGroupLocked(attrs map[string]any, id string) error {
	name, _ := attrs["displayName"].(string)
	if strings.TrimSpace(name) == "" {
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue,
			Detail: "displayName must be a non-empty string (RFC 7643 §4.2)"}
	}
	ext, _ := attrs["externalId"].(string)
	for _, g := range s.groups {
		if other, _ := g.attrs["displayName"].(string); g.id != id && strings.EqualFold(other, name) {
			return scimerrors.ScimErrorUniqueness
		}
		if other, _ := g.attrs["externalId"].(string); s.opts.UniqueGroupExternalID && g.id != id && ext != "" && other == ext {
			return scimerrors.ScimErrorUniqueness
		}
	}
	for _, m := range memberValues(attrs) {
		if _, ok := s.users[m]; !ok {
			return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue,
				Detail: fmt.Sprintf("member %q is no user of this server", m)}
		}
	}
	return nil
}

// memberLimit refuses a request that adds or removes more members than
// Options.MaxMembersPerRequest.
func (s *Server) memberLimit(n int) error {
	if max := s.opts.MaxMembersPerRequest; max > 0 && n > max {
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue,
			Detail: fmt.Sprintf("%d member changes in one request; at most %d are allowed", n, max)}
	}
	return nil
}

// Create stores a new group (POST /Groups).
func (h groupHandler) Create(r *http.Request, attributes scim.ResourceAttributes) (scim.Resource, error) {
	attrs := deepCopyMap(attributes)
	s := h.s
	if err := handOver(r, s.rejectedGroup(r.Method, attrs)); err != nil {
		return scim.Resource{}, err
	}
	if s.opts.GroupsDropMembersOnCreate {
		for k := range attrs {
			if strings.EqualFold(k, "members") {
				delete(attrs, k)
			}
		}
	}
	if err := s.memberLimit(len(memberValues(attrs))); err != nil {
		return scim.Resource{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.groupNamedLocked(attrs); held != nil && s.opts.LenientCreate {
		// The existing group, as it is, with 200.
		if hr, ok := r.Context().Value(hookKey{}).(*hookResult); ok {
			hr.answerExisting()
		}
		return s.groupResource(held), nil
	}
	if err := s.checkGroupLocked(attrs, ""); err != nil {
		return scim.Resource{}, err
	}
	return s.groupResource(s.insertGroupLocked(newID(), attrs)), nil
}

// groupNamedLocked returns the group whose displayName attrs' is
// (case-insensitively), or nil.
func (s *Server) groupNamedLocked(attrs map[string]any) *user {
	name, _ := attrs["displayName"].(string)
	for _, g := range sortedRecords(s.groups) {
		if other, _ := g.attrs["displayName"].(string); name != "" && strings.EqualFold(other, name) {
			return g
		}
	}
	return nil
}

// Get returns one group (GET /Groups/{id}).
func (h groupHandler) Get(r *http.Request, id string) (scim.Resource, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	return s.groupResource(g), nil
}

// GetAll lists groups (GET /Groups), filtered and paged.
func (h groupHandler) GetAll(r *http.Request, params scim.ListRequestParams) (scim.Page, error) {
	s := h.s
	s.mu.Lock()
	var resources []scim.Resource
	for _, g := range sortedRecords(s.groups) {
		resources = append(resources, s.groupResource(g))
	}
	s.mu.Unlock()
	if params.FilterValidator != nil {
		v := s.groupPatcher.filterValidator(params.FilterValidator.GetFilter())
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

// Replace replaces a group (PUT /Groups/{id}).
func (h groupHandler) Replace(r *http.Request, id string, attributes scim.ResourceAttributes) (scim.Resource, error) {
	attrs := deepCopyMap(attributes)
	s := h.s
	if err := handOver(r, s.rejectedGroup(r.Method, attrs)); err != nil {
		return scim.Resource{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	if err := checkVersionLocked(s.ifMatch(r), g); err != nil {
		return scim.Resource{}, err
	}
	if err := s.memberLimit(changedMembers(memberValues(g.attrs), memberValues(attrs))); err != nil {
		return scim.Resource{}, err
	}
	if err := s.checkGroupLocked(attrs, id); err != nil {
		return scim.Resource{}, err
	}
	g.attrs = attrs
	s.touchLocked(g)
	return s.groupResource(g), nil
}

// Patch applies PATCH operations (PATCH /Groups/{id}).
func (h groupHandler) Patch(r *http.Request, id string, operations []scim.PatchOperation) (scim.Resource, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	if err := checkVersionLocked(s.ifMatch(r), g); err != nil {
		return scim.Resource{}, err
	}
	attrs := deepCopyMap(g.attrs)
	for _, op := range operations {
		if err := s.groupPatcher.apply(attrs, op); err != nil {
			return scim.Resource{}, err
		}
	}
	if err := s.memberLimit(changedMembers(memberValues(g.attrs), memberValues(attrs))); err != nil {
		return scim.Resource{}, err
	}
	if err := s.checkGroupLocked(attrs, id); err != nil {
		return scim.Resource{}, err
	}
	g.attrs = attrs
	s.touchLocked(g)
	if s.opts.PatchNoContent {
		return scim.Resource{}, nil
	}
	return s.groupResource(g), nil
}

// Delete removes a group (DELETE /Groups/{id}).
func (h groupHandler) Delete(r *http.Request, id string) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return notFound(id)
	}
	if err := checkVersionLocked(s.ifMatch(r), g); err != nil {
		return err
	}
	delete(s.groups, id)
	return nil
}

// changedMembers counts the members added and removed between two lists.
func changedMembers(before, after []string) int {
	in := func(list []string, v string) bool {
		for _, e := range list {
			if e == v {
				return true
			}
		}
		return false
	}
	n := 0
	for _, v := range after {
		if !in(before, v) {
			n++
		}
	}
	for _, v := range before {
		if !in(after, v) {
			n++
		}
	}
	return n
}
