package agent

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/state"
)

// Status is what `scim-agent status` and GET /status report.
type Status struct {
	// Running is true when a Run is in progress (always true from /status).
	Running bool `json:"running"`
	// Position is the saved binlog position.
	Position string `json:"position,omitempty"`
	GTID     string `json:"gtid,omitempty"`
	// LagSeconds is how far behind the binlog the agent is: now minus the
	// commit time of the oldest transaction not yet fully handled.
	LagSeconds float64 `json:"lag_seconds"`
	// QueueDepth is the number of uids waiting for a worker.
	QueueDepth int `json:"queue_depth"`
	// InitialSyncDone is false while a full sync runs.
	InitialSyncDone bool `json:"initial_sync_done"`
	// Ready mirrors /readyz.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Parked lists the uids whose last reconcile failed permanently.
	Parked []ParkedUser `json:"parked"`
	// Groups is the number of groups the state file knows, GroupMembers
	// the members pushed to them in all, ParkedGroups the roles parked.
	Groups       int           `json:"groups"`
	GroupMembers int           `json:"group_members"`
	ParkedGroups []ParkedGroup `json:"parked_groups,omitempty"`
	// Operations counts reconciles by outcome since start.
	Operations map[Outcome]int64 `json:"operations"`
	// LastSuccess is the time of the last successful SCIM request.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// Guard is the deletion guard's state.
	Guard GuardStatus `json:"deletion_guard"`
	// Accounts is the number of uids the state file knows.
	Accounts int `json:"accounts"`
	// Started is when the Run began.
	Started time.Time `json:"started,omitempty"`
	// Error says what could not be read from the state file; the fields
	// it would have filled are empty.
	Error string `json:"error,omitempty"`
}

// ParkedUser is one parked uid with its last error.
type ParkedUser struct {
	UID      uint32 `json:"uid"`
	UserName string `json:"userName,omitempty"`
	SCIMID   string `json:"scim_id,omitempty"`
	state.Parked
}

// counters counts reconciles by outcome since start.
type counters struct {
	mu sync.Mutex
	n  map[Outcome]int64
}

func (c *counters) add(o Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[Outcome]int64{}
	}
	c.n[o]++
}

func (c *counters) snapshot() map[Outcome]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Outcome]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// ParkedUsers reads the parked uids from a state store.
func ParkedUsers(store *state.Store) ([]ParkedUser, error) {
	parked, err := store.Parked()
	if err != nil {
		return nil, err
	}
	out := make([]ParkedUser, 0, len(parked))
	for _, a := range parked {
		out = append(out, ParkedUser{UID: a.UID, UserName: a.UserName, SCIMID: a.SCIMID, Parked: *a.Parked})
	}
	return out, nil
}

// ParkedGroup is one parked role with its last error.
type ParkedGroup struct {
	Role   string `json:"role"`
	SCIMID string `json:"scim_id,omitempty"`
	state.Parked
}

// ParkedGroups reads the parked roles from a state store.
func ParkedGroups(store *state.Store) ([]ParkedGroup, error) {
	var out []ParkedGroup
	err := store.ForEachGroup(func(g state.Group) error {
		if g.Parked != nil {
			out = append(out, ParkedGroup{Role: g.Role, SCIMID: g.SCIMID, Parked: *g.Parked})
		}
		return nil
	})
	return out, err
}

// ParkedSelection returns every parked uid and role, for retry --parked.
func ParkedSelection(store *state.Store) (Selection, error) {
	var sel Selection
	users, err := ParkedUsers(store)
	if err != nil {
		return sel, err
	}
	for _, p := range users {
		sel.UIDs = append(sel.UIDs, p.UID)
	}
	groups, err := ParkedGroups(store)
	for _, g := range groups {
		sel.Roles = append(sel.Roles, g.Role)
	}
	return sel, err
}

// GroupCounts says how many groups the state file knows and how many
// members were pushed to them in all.
func GroupCounts(store *state.Store) (groups, members int, err error) {
	err = store.ForEachGroup(func(g state.Group) error {
		groups++
		members += len(g.Members)
		return nil
	})
	return groups, members, err
}

// Status reports the running agent's state.
func (a *Agent) Status() Status {
	s := Status{
		Running:         true,
		LagSeconds:      a.Lag().Seconds(),
		QueueDepth:      a.work.depth(),
		InitialSyncDone: a.saved.synced.Load(),
		Operations:      a.tally.counts.snapshot(),
		Guard:           a.guard.status(),
		Started:         a.life.since(),
	}
	pos := a.SavedPosition()
	s.Position, s.GTID = pos.String(), pos.GTID
	r := a.Readiness()
	s.Ready, s.Reason = r.Ready, r.Reason
	if t, ok := a.health.lastSuccess(); ok {
		s.LastSuccess = &t
	}
	var errs []error
	var err error
	if s.Parked, err = ParkedUsers(a.store); err != nil {
		errs = append(errs, fmt.Errorf("parked users: %w", err))
	}
	if s.Accounts, err = a.store.CountAccounts(); err != nil {
		errs = append(errs, fmt.Errorf("accounts: %w", err))
	}
	if s.Groups, s.GroupMembers, err = GroupCounts(a.store); err != nil {
		errs = append(errs, fmt.Errorf("groups: %w", err))
	}
	if s.ParkedGroups, err = ParkedGroups(a.store); err != nil {
		errs = append(errs, fmt.Errorf("parked groups: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		s.Error = "read the state file: " + err.Error()
	}
	return s
}

// Lag is now minus the commit time of the oldest binlog transaction not
// yet fully handled, or 0 when every transaction read is handled.
func (a *Agent) Lag() time.Duration {
	t, ok := a.work.marks.Oldest()
	if !ok {
		return 0
	}
	return max(time.Since(t), 0)
}

// parkedSet tracks which keys (uids, roles) are parked, so metrics need
// not scan the state file.
type parkedSet struct {
	mu   sync.Mutex
	keys map[key]bool
}

func (p *parkedSet) set(k key, parked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = map[key]bool{}
	}
	if parked {
		p.keys[k] = true
	} else {
		delete(p.keys, k)
	}
}

// count returns how many keys of kind k are parked.
func (p *parkedSet) count(k kind) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for key := range p.keys {
		if key.kind == k {
			n++
		}
	}
	return n
}

// caughtUp reports whether the agent is idle (no full sync running,
// nothing queued, held, waiting for a retry or incomplete) and returns the
// position up to which every change is handled then: the newer of the
// safe and the saved position.
func (a *Agent) caughtUp() (binlog.Position, bool) {
	if !a.saved.synced.Load() || !a.work.idle() {
		return binlog.Position{}, false
	}
	saved := a.SavedPosition()
	if pos, ok := a.safe(); ok {
		return pos, true
	}
	return saved, true
}

// tally counts what the reconciles of this process did: by outcome, and
// which uids are parked (so metrics need not scan the state file).
type tally struct {
	counts counters
	parked parkedSet
}

// add counts one reconcile's outcome.
func (t *tally) add(o Outcome) { t.counts.add(o) }

// loadParked reads the parked uids of the state file.
func (t *tally) loadParked(store *state.Store) error {
	parked, err := store.Parked()
	if err != nil {
		return err
	}
	for _, p := range parked {
		t.parked.set(userKey(p.UID), true)
	}
	return store.ForEachGroup(func(g state.Group) error {
		if g.Parked != nil {
			t.parked.set(roleKey(g.Role), true)
		}
		return nil
	})
}

// The gauges' source (see metrics.go).

func (a *Agent) queueDepth() int    { return a.work.depth() }
func (a *Agent) parkedCount() int   { return a.tally.parked.count(kindUser) }
func (a *Agent) parkedGroups() int  { return a.tally.parked.count(kindRole) }
func (a *Agent) guardTripped() bool { return a.guard.Tripped() }
func (a *Agent) guardHeld() int     { return a.guard.HeldCount() }
