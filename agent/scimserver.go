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
}

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
