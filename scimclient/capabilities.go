package scimclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Setting overrides one capability: Auto takes what the server's
// /ServiceProviderConfig advertises, On and Off say what the server
// really does (a server that advertises wrongly, or has no
// /ServiceProviderConfig at all).
type Setting int

// Settings of a capability.
const (
	Auto Setting = iota
	On
	Off
)

// ParseSetting reads "auto" (or ""), "true" or "false".
func ParseSetting(s string) (Setting, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "true":
		return On, nil
	case "false":
		return Off, nil
	}
	return Auto, fmt.Errorf("%q is not one of auto, true, false", s)
}

// String is the setting as ParseSetting reads it.
func (s Setting) String() string {
	switch s {
	case On:
		return "true"
	case Off:
		return "false"
	}
	return "auto"
}

// Overrides are the settings of the capabilities a client depends on.
// The zero value takes everything from the server.
type Overrides struct {
	Patch, Filter, ETag, Bulk Setting
}

// Capabilities are what the client may use of a server: what its
// /ServiceProviderConfig advertises, with the overrides applied.
type Capabilities struct {
	// Patch: PATCH /Users/{id} works (else PUT the whole resource).
	Patch bool
	// Filter: GET /Users?filter= works.
	Filter bool
	// ETag: resources carry versions and writes honour If-Match.
	ETag bool
	// Bulk: POST /Bulk works.
	Bulk bool
	// FilterMaxResults is the page-size cap the server advertises (0 when
	// unknown).
	FilterMaxResults int
	// Advertised is what /ServiceProviderConfig said (zero when Missing).
	Advertised ServiceProviderConfig
	// Missing is true when the server has no usable
	// /ServiceProviderConfig: it answered 404, 405 or 501, or something
	// that is not one. MissingReason says which. An Auto capability then
	// takes its default: patch and filter on (a 405 to a PATCH still
	// switches to PUT), etag and bulk off.
	Missing       bool
	MissingReason string
	// Overridden names the capabilities set by an override (patch,
	// filter, etag, bulk, in that order); Assumed those that took their
	// default because /ServiceProviderConfig is missing.
	Overridden, Assumed []string
}

// Names of the capabilities, as Overridden and Assumed list them.
const (
	CapPatch  = "patch"
	CapFilter = "filter"
	CapETag   = "etag"
	CapBulk   = "bulk"
)

// Source says where a capability's value came from: "override",
// "assumed" (no /ServiceProviderConfig) or "server".
func (c Capabilities) Source(name string) string {
	for _, n := range c.Overridden {
		if n == name {
			return "override"
		}
	}
	for _, n := range c.Assumed {
		if n == name {
			return "assumed"
		}
	}
	return "server"
}

// Capabilities reads /ServiceProviderConfig and applies o. A server
// without one (404, 405, 501, or an answer that does not decode) is not
// an error: Missing says so and the capabilities are the overrides and
// the defaults. Any other failure (401, 5xx after the attempts, a
// network error) is.
func (c *Client) Capabilities(ctx context.Context, o Overrides) (Capabilities, Result, error) {
	spc, res, err := c.ServiceProviderConfig(ctx)
	var caps Capabilities
	switch {
	case err == nil:
		caps.Advertised = spc
	case IsStatus(err, http.StatusNotFound) || IsStatus(err, http.StatusMethodNotAllowed) ||
		IsStatus(err, http.StatusNotImplemented) || errors.Is(err, ErrInvalidResponse):
		caps.Missing, caps.MissingReason = true, err.Error()
		// Defaults for a server that says nothing: the agent's fallbacks
		// (PUT after a 405, parking after a 400 to a filter) cover a
		// wrong guess of patch and filter; etag and bulk need a promise.
		spc = ServiceProviderConfig{PatchSupported: true, FilterSupported: true}
	default:
		return Capabilities{}, res, err
	}
	caps.FilterMaxResults = spc.FilterMaxResults
	for _, x := range []struct {
		name       string
		set        Setting
		advertised bool
		out        *bool
	}{
		{CapPatch, o.Patch, spc.PatchSupported, &caps.Patch},
		{CapFilter, o.Filter, spc.FilterSupported, &caps.Filter},
		{CapETag, o.ETag, spc.EtagSupported, &caps.ETag},
		{CapBulk, o.Bulk, spc.BulkSupported, &caps.Bulk},
	} {
		switch x.set {
		case On, Off:
			*x.out = x.set == On
			caps.Overridden = append(caps.Overridden, x.name)
		default:
			*x.out = x.advertised
			if caps.Missing {
				caps.Assumed = append(caps.Assumed, x.name)
			}
		}
	}
	return caps, res, nil
}
