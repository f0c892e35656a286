package agent

import (
	"context"
	"sync/atomic"

	"github.com/scim-agent/scim-agent/scimclient"
)

// scimServer is the SCIM server as the agent uses it: the client that
// retries for as long as it takes, a single-attempt client for probes,
// and what the server can do.
type scimServer struct {
	client    *scimclient.Client
	probe     *scimclient.Client
	overrides scimclient.Overrides // scim.capabilities
	// caps is what the server can do, resolved by connect before any
	// reconcile (read-only after).
	caps    scimclient.Capabilities
	noPATCH atomic.Bool // the server has no PATCH, or answered one with 405
	// noValueFilter: the server refused a value-filtered PATCH path
	// (`emails[type eq "work"].value`) and took the same change written
	// whole; noTargets counts its noTarget refusals in a row.
	noValueFilter atomic.Bool
	noTargets     atomic.Int32
}

// maxNoTargets is how many value-filtered PATCHes refused with noTarget
// in a row (the account held no value of the agent's type) teach that
// the server does not keep what value filters need (a server that drops
// the type of a lone address).
const maxNoTargets = 3

// connect reads what the server can do (its ServiceProviderConfig and
// the overrides), retrying until it answers or ctx is done.
func (s *scimServer) connect(ctx context.Context) error {
	caps, _, err := s.client.Capabilities(ctx, s.overrides)
	if err != nil {
		return err
	}
	s.caps = caps
	s.noPATCH.Store(!caps.Patch)
	return nil
}

// usePatch reports whether changes go out as PATCH (else GET + PUT).
func (s *scimServer) usePatch() bool { return !s.noPATCH.Load() }

// noPatch switches to PUT for good: the server answered a PATCH with 405.
func (s *scimServer) noPatch() { s.noPATCH.Store(true) }

// ask makes one probe of the server, for readiness.
func (s *scimServer) ask(ctx context.Context) error {
	_, _, err := s.probe.Capabilities(ctx, s.overrides)
	return err
}

// valueFilters reports whether a PATCH may name the agent's value in a
// typed list with a value filter: until the server is known to refuse
// them (learnt at run time, for this run).
func (s *scimServer) valueFilters() bool { return !s.noValueFilter.Load() }

// valueFilterTaken records a value-filtered PATCH the server applied.
func (s *scimServer) valueFilterTaken() { s.noTargets.Store(0) }

// valueFilterRefused records a value-filtered PATCH refused with a 400
// (noTarget: for want of a value to replace), or taken but not applied,
// whose change then went through written whole. It reports whether this
// taught that the server refuses them.
func (s *scimServer) valueFilterRefused(noTarget bool) bool {
	if noTarget && s.noTargets.Add(1) < maxNoTargets {
		return false
	}
	return s.noValueFilter.CompareAndSwap(false, true)
}
