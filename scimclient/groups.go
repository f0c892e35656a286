package scimclient

import (
	"context"
	"net/url"
	"strings"
)

// GroupSchema is the core Group schema (RFC 7643 §4.2).
const GroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"

// The /Groups endpoint, with the same guarantees as the /Users calls:
// retries of what may heal, typed refusals, bounded and checked answers,
// ETags through CallOption.

// CreateGroup POSTs a group to /Groups and returns the server's resource
// (with its id). Like CreateUser, a retry after a lost answer may meet a
// 409 for the group the first attempt made.
func (c *Client) CreateGroup(ctx context.Context, r Resource) (Resource, Result, error) {
	return groupsEndpoint.create(ctx, c, r)
}

// GetGroup reads /Groups/{id}. A missing group is an *Error with Status
// 404. Some servers (AWS IAM Identity Center) never return members.
func (c *Client) GetGroup(ctx context.Context, id string) (Resource, Result, error) {
	return groupsEndpoint.get(ctx, c, id)
}

// PatchGroup applies operations to /Groups/{id} (RFC 7644 §3.5.2): 200
// with the resource or 204 without are both success; 405 means the
// server has no PATCH (use ReplaceGroup).
func (c *Client) PatchGroup(ctx context.Context, id string, ops []PatchOp, opts ...CallOption) (Resource, Result, error) {
	return groupsEndpoint.patch(ctx, c, id, ops, opts)
}

// ReplaceGroup PUTs the whole group to /Groups/{id}, members included.
func (c *Client) ReplaceGroup(ctx context.Context, id string, r Resource, opts ...CallOption) (Resource, Result, error) {
	return groupsEndpoint.replace(ctx, c, id, r, opts)
}

// DeleteGroup deletes /Groups/{id}. A missing group is an *Error with
// Status 404.
func (c *Client) DeleteGroup(ctx context.Context, id string, opts ...CallOption) (Result, error) {
	return groupsEndpoint.delete(ctx, c, id, opts)
}

// ListGroups queries GET /Groups, like ListUsers; excludedAttributes
// "members" is asked for when members is false (a page of large groups
// would otherwise be huge), which servers may ignore.
func (c *Client) ListGroups(ctx context.Context, filter string, startIndex, count int, members bool) (ListResponse, Result, error) {
	var extra url.Values
	if !members {
		extra = url.Values{"excludedAttributes": {"members"}}
	}
	return groupsEndpoint.list(ctx, c, filter, startIndex, count, extra)
}

// groupBody prepares a group for POST or PUT: a copy without the
// read-only id and meta, with "schemas" the core Group schema.
func groupBody(r Resource) map[string]any {
	out := make(map[string]any, len(r)+1)
	for k, v := range r {
		if !strings.EqualFold(k, "id") && !strings.EqualFold(k, "meta") && !strings.EqualFold(k, "schemas") {
			out[k] = v
		}
	}
	out["schemas"] = []string{GroupSchema}
	return out
}
