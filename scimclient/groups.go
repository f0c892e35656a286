package scimclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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
	const path = "/Groups"
	a, res, err := c.do(ctx, call{method: http.MethodPost, path: path, body: groupBody(r), ok: []int{http.StatusCreated, http.StatusOK}})
	if err != nil {
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodPost, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// GetGroup reads /Groups/{id}. A missing group is an *Error with Status
// 404. Some servers (AWS IAM Identity Center) never return members.
func (c *Client) GetGroup(ctx context.Context, id string) (Resource, Result, error) {
	path, err := groupPath(id)
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

// PatchGroup applies operations to /Groups/{id} (RFC 7644 §3.5.2): 200
// with the resource or 204 without are both success; 405 means the
// server has no PATCH (use ReplaceGroup).
func (c *Client) PatchGroup(ctx context.Context, id string, ops []PatchOp, opts ...CallOption) (Resource, Result, error) {
	path, err := groupPath(id)
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
	a, res, err := c.do(ctx, with(call{method: http.MethodPatch, path: path, body: body,
		ok: []int{http.StatusOK, http.StatusNoContent}, check: scimNotFound}, opts))
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

// ReplaceGroup PUTs the whole group to /Groups/{id}, members included.
func (c *Client) ReplaceGroup(ctx context.Context, id string, r Resource, opts ...CallOption) (Resource, Result, error) {
	path, err := groupPath(id)
	if err != nil {
		return nil, Result{}, err
	}
	a, res, err := c.do(ctx, with(call{method: http.MethodPut, path: path, body: groupBody(r), ok: []int{http.StatusOK}, check: scimNotFound}, opts))
	if err != nil {
		return nil, res, err
	}
	out, err := decodeResource(a, http.MethodPut, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

// DeleteGroup deletes /Groups/{id}. A missing group is an *Error with
// Status 404.
func (c *Client) DeleteGroup(ctx context.Context, id string, opts ...CallOption) (Result, error) {
	path, err := groupPath(id)
	if err != nil {
		return Result{}, err
	}
	_, res, err := c.do(ctx, with(call{method: http.MethodDelete, path: path, ok: []int{http.StatusNoContent, http.StatusOK}, check: scimNotFound}, opts))
	return res, err
}

// ListGroups queries GET /Groups, like ListUsers; excludedAttributes
// "members" is asked for when members is false (a page of large groups
// would otherwise be huge), which servers may ignore.
func (c *Client) ListGroups(ctx context.Context, filter string, startIndex, count int, members bool) (ListResponse, Result, error) {
	const path = "/Groups"
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
	if !members {
		q.Set("excludedAttributes", "members")
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
	return ListResponse{TotalResults: int(raw.TotalResults), StartIndex: int(raw.StartIndex),
		ItemsPerPage: int(raw.ItemsPerPage), Resources: raw.Resources}, res, nil
}

// groupPath is the path of one group; the id is path-escaped.
func groupPath(id string) (string, error) {
	if id == "" {
		return "", errors.New("scim: empty group id")
	}
	return "/Groups/" + url.PathEscape(id), nil
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
