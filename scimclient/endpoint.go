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

// endpoint is one resource type's collection (/Users, /Groups) and the
// calls every resource type shares, written once: the exported methods
// of users.go and groups.go are these with their own doc comments.
type endpoint struct {
	path string                        // the collection, e.g. "/Users"
	noun string                        // for errors: "user", "group"
	body func(Resource) map[string]any // a resource prepared for POST or PUT
}

var (
	usersEndpoint  = endpoint{path: "/Users", noun: "user", body: resourceBody}
	groupsEndpoint = endpoint{path: "/Groups", noun: "group", body: groupBody}
)

// item is the path of one resource; the id is path-escaped.
func (e endpoint) item(id string) (string, error) {
	if id == "" {
		return "", errors.New("scim: empty " + e.noun + " id")
	}
	return e.path + "/" + url.PathEscape(id), nil
}

// resourceAnswer decodes a call's resource and its version.
func resourceAnswer(a answer, res Result, method, path string) (Resource, Result, error) {
	out, err := decodeResource(a, method, path)
	res.Version = versionOf(a, out)
	return out, res, err
}

func (e endpoint) create(ctx context.Context, c *Client, r Resource) (Resource, Result, error) {
	a, res, err := c.do(ctx, call{method: http.MethodPost, path: e.path, body: e.body(r), ok: []int{http.StatusCreated, http.StatusOK}})
	if err != nil {
		return nil, res, err
	}
	return resourceAnswer(a, res, http.MethodPost, e.path)
}

func (e endpoint) get(ctx context.Context, c *Client, id string) (Resource, Result, error) {
	path, err := e.item(id)
	if err != nil {
		return nil, Result{}, err
	}
	a, res, err := c.do(ctx, call{method: http.MethodGet, path: path, ok: []int{http.StatusOK}, check: scimNotFound})
	if err != nil {
		return nil, res, err
	}
	return resourceAnswer(a, res, http.MethodGet, path)
}

func (e endpoint) replace(ctx context.Context, c *Client, id string, r Resource, opts []CallOption) (Resource, Result, error) {
	path, err := e.item(id)
	if err != nil {
		return nil, Result{}, err
	}
	cl := call{method: http.MethodPut, path: path, body: e.body(r), ok: []int{http.StatusOK}, check: scimNotFound}
	a, res, err := c.do(ctx, with(cl, opts))
	if err != nil {
		return nil, res, err
	}
	return resourceAnswer(a, res, http.MethodPut, path)
}

func (e endpoint) patch(ctx context.Context, c *Client, id string, ops []PatchOp, opts []CallOption) (Resource, Result, error) {
	path, err := e.item(id)
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
	return resourceAnswer(a, res, http.MethodPatch, path)
}

func (e endpoint) delete(ctx context.Context, c *Client, id string, opts []CallOption) (Result, error) {
	path, err := e.item(id)
	if err != nil {
		return Result{}, err
	}
	cl := call{method: http.MethodDelete, path: path, ok: []int{http.StatusNoContent, http.StatusOK}, check: scimNotFound}
	_, res, err := c.do(ctx, with(cl, opts))
	return res, err
}

// list is GET of the collection with a filter ("" = none), startIndex and
// count (sent when positive) and any further query parameters.
func (e endpoint) list(ctx context.Context, c *Client, filter string, startIndex, count int, extra url.Values) (ListResponse, Result, error) {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	if startIndex > 0 {
		q.Set("startIndex", strconv.Itoa(startIndex))
	}
	if count > 0 {
		q.Set("count", strconv.Itoa(count))
	}
	a, res, err := c.do(ctx, call{method: http.MethodGet, path: e.path, query: q, ok: []int{http.StatusOK},
		check: listCheck(filter, startIndex)})
	if err != nil {
		return ListResponse{}, res, err
	}
	var raw listAnswer
	if err := a.decode(http.MethodGet, e.path, &raw); err != nil {
		return ListResponse{}, res, err
	}
	return ListResponse{
		TotalResults: int(raw.TotalResults),
		StartIndex:   int(raw.StartIndex),
		ItemsPerPage: int(raw.ItemsPerPage),
		Resources:    raw.Resources,
	}, res, nil
}
