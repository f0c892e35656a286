package agent

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/state"
)

// guardKey is the state meta key of the deletion guard.
const guardKey = "deletion_guard"

// Log messages of the deletion guard.
const (
	// MsgGuardTripped (error): too many deletions or deactivations in the
	// window; deprovisioning pauses until approve-deletes. Fields: count,
	// max, window.
	MsgGuardTripped = "guard.tripped"
	// MsgGuardHeld (warn): a deletion or deactivation held back; uid, op.
	MsgGuardHeld = "guard.held"
	// MsgGuardApproved (info): an operator approved; held, the number of
	// held uids now released.
	MsgGuardApproved = "guard.approved"
)

// guard is the deletion guard: a bad migration or a bulk cancel can
// delete thousands of rows in seconds, and the binlog would faithfully
// turn each into a SCIM DELETE. More than max deletions or deactivations
// (of users, or deletions of groups) inside window pause all
// deprovisioning until an operator approves; creates and updates keep
// flowing, and the held keys keep the binlog position (nothing is lost).
type guard struct {
	max    int
	window time.Duration
	store  *state.Store // nil in dry runs: nothing is saved
	log    *zap.Logger

	mu       sync.Mutex
	sent     []sentAt // deprovisioning allowed inside the window, oldest first
	tripped  bool
	since    time.Time
	held     map[key]string // key → op held
	approved map[key]bool   // held keys released by an approval, not yet sent
	dirty    bool           // held or approved changed since the last save
}

// sentAt is one deprovisioning allowed inside the window.
type sentAt struct {
	k  key
	at time.Time
}

// guardState is what survives a restart: a tripped guard stays tripped
// until approved, the uids and roles it held stay held, and approved ones
// not yet sent stay approved (a sync or drift repair held some of them,
// and the binlog will not name those again).
type guardState struct {
	Tripped       bool              `json:"tripped"`
	Since         time.Time         `json:"since"`
	Held          map[uint32]string `json:"held,omitempty"`           // uid → op held
	Approved      []uint32          `json:"approved,omitempty"`       // released, not yet sent
	HeldRoles     map[string]string `json:"held_roles,omitempty"`     // role → op held (group deletions)
	ApprovedRoles []string          `json:"approved_roles,omitempty"` // released, not yet sent
}

// keys returns the held and approved keys of a saved state.
func (s guardState) keys() (held map[key]string, approved []key) {
	held = map[key]string{}
	for uid, op := range s.Held {
		held[userKey(uid)] = op
	}
	for role, op := range s.HeldRoles {
		held[roleKey(role)] = op
	}
	for _, uid := range s.Approved {
		approved = append(approved, userKey(uid))
	}
	for _, role := range s.ApprovedRoles {
		approved = append(approved, roleKey(role))
	}
	return held, approved
}

// guardStateOf is the saved form of held and approved keys.
func guardStateOf(tripped bool, since time.Time, held map[key]string, approved []key) guardState {
	st := guardState{Tripped: tripped, Since: since}
	for k, op := range held {
		if k.kind == kindRole {
			if st.HeldRoles == nil {
				st.HeldRoles = map[string]string{}
			}
			st.HeldRoles[k.role] = op
			continue
		}
		if st.Held == nil {
			st.Held = map[uint32]string{}
		}
		st.Held[k.uid] = op
	}
	for _, k := range approved {
		if k.kind == kindRole {
			st.ApprovedRoles = append(st.ApprovedRoles, k.role)
		} else {
			st.Approved = append(st.Approved, k.uid)
		}
	}
	slices.Sort(st.Approved)
	st.Approved = slices.Compact(st.Approved)
	slices.Sort(st.ApprovedRoles)
	st.ApprovedRoles = slices.Compact(st.ApprovedRoles)
	return st
}

func newGuard(max int, window time.Duration, store *state.Store, log *zap.Logger) *guard {
	g := &guard{max: max, window: window, store: store, log: log, held: map[key]string{}, approved: map[key]bool{}}
	if store != nil {
		var s guardState
		if ok, err := store.Meta(guardKey, &s); err == nil && ok {
			held, approved := s.keys()
			if s.Tripped {
				g.tripped, g.since = true, s.Since
				maps.Copy(g.held, held)
			}
			for _, k := range approved {
				g.approved[k] = true
			}
		}
	}
	return g
}

// ApproveStored approves a deletion guard tripped while no agent runs: the
// next start sends every deletion and deactivation it held.
func ApproveStored(store *state.Store) error {
	var s guardState
	if _, err := store.Meta(guardKey, &s); err != nil {
		return err
	}
	held, approved := s.keys()
	for k := range held {
		approved = append(approved, k)
	}
	return store.PutMeta(guardKey, guardStateOf(false, time.Time{}, nil, approved))
}

// StoredGuard reads the deletion guard's state from a state store, for
// status while no agent runs (Max, Window and Recent are then unknown).
func StoredGuard(store *state.Store) (GuardStatus, error) {
	var s guardState
	if _, err := store.Meta(guardKey, &s); err != nil {
		return GuardStatus{}, err
	}
	gs := GuardStatus{Tripped: s.Tripped}
	if s.Tripped {
		gs.Since = s.Since
	}
	gs.Held = slices.Sorted(maps.Keys(s.Held))
	gs.HeldRoles = slices.Sorted(maps.Keys(s.HeldRoles))
	return gs, nil
}

// Released returns the keys approved but not yet sent, which the agent
// queues at start: some were held by a sync or drift repair, and the
// binlog will not name them again.
func (g *guard) Released() []key {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedKeys(maps.Keys(g.approved))
}

// Allow asks to deprovision k now (op is delete or deactivate). It
// returns false when the guard holds it back. An approved key stays
// approved until Sent: a DELETE cut short by an outage or a shutdown is
// tried again, approved, at its next attempt. A key allowed again inside
// the window (a retry after an outage) counts once.
func (g *guard) Allow(k key, op string) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.approved[k] {
		return true
	}
	if g.tripped {
		g.hold(k, op)
		return false
	}
	if g.max <= 0 {
		return true
	}
	now := time.Now()
	cut := 0
	for cut < len(g.sent) && now.Sub(g.sent[cut].at) > g.window {
		cut++
	}
	g.sent = g.sent[cut:]
	for _, s := range g.sent {
		if s.k == k {
			return true
		}
	}
	if len(g.sent)+1 > g.max {
		g.tripped, g.since = true, now
		g.hold(k, op)
		g.save() // at once: a tripped guard must survive any crash
		g.log.Error(MsgGuardTripped, zap.Int("count", len(g.sent)+1), zap.Int("max", g.max),
			zap.String("window", g.window.String()),
			zap.String("detail", "deprovisioning paused: run `scim-agent approve-deletes` once you have checked these deletions are intended"))
		return false
	}
	g.sent = append(g.sent, sentAt{k: k, at: now})
	return true
}

// Sent records that k's deprovisioning reached the server (or was found
// done): its approval, if any, is used up.
func (g *guard) Sent(k key) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.approved[k] {
		delete(g.approved, k)
		g.dirty = true
	}
}

// Forget drops k from the held and approved sets: its reconcile ended
// without deprovisioning (a blocked user unblocked before the approval),
// so a later deletion must ask the guard afresh.
func (g *guard) Forget(k key) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.held[k]; ok {
		delete(g.held, k)
		g.dirty = true
	}
	if g.approved[k] {
		delete(g.approved, k)
		g.dirty = true
	}
}

// hold records uid as held. It is saved by the next Flush, not here: a
// bulk deletion holds thousands of uids, and one write per uid of the
// whole set would take minutes. Until then nothing is lost: a uid held
// from the binlog keeps the position, and Flush runs before every
// position save.
func (g *guard) hold(k key, op string) {
	if _, dup := g.held[k]; dup {
		return
	}
	fields := []zap.Field{zap.Uint32("uid", k.uid), zap.String("op", op)}
	if k.kind == kindRole {
		fields = append(fields, zap.String("role", k.role))
	}
	g.log.Warn(MsgGuardHeld, fields...)
	g.held[k] = op
	g.dirty = true
}

// Flush saves the held and approved sets if they changed. The agent calls
// it before it saves a binlog position.
func (g *guard) Flush() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.dirty {
		return nil
	}
	return g.save()
}

// save writes the guard's state; g.mu is held. A failed write leaves
// the state dirty, so the next Flush writes it again.
func (g *guard) save() error {
	if g.store == nil {
		g.dirty = false
		return nil
	}
	st := guardStateOf(g.tripped, g.since, g.held, slices.Collect(maps.Keys(g.approved)))
	if err := g.store.PutMeta(guardKey, st); err != nil {
		g.dirty = true
		g.log.Error(MsgGuardTripped, zap.String("detail", "could not save the deletion guard"), zap.Error(err))
		return fmt.Errorf("save the deletion guard: %w", err)
	}
	g.dirty = false
	return nil
}

// Approve releases the guard: every held key may now go ahead (the
// caller queues them again) and the window starts afresh.
func (g *guard) Approve() []key {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := sortedKeys(maps.Keys(g.held))
	for _, k := range keys {
		g.approved[k] = true
	}
	g.held = map[key]string{}
	g.sent = nil
	g.tripped = false
	g.save() // logged on failure; the approval holds in memory and the next Flush writes it
	g.log.Info(MsgGuardApproved, zap.Int("held", len(keys)))
	return keys
}

// Tripped reports whether deprovisioning is paused.
func (g *guard) Tripped() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tripped
}

// HeldCount is the number of uids held back.
func (g *guard) HeldCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// GuardStatus describes the deletion guard for status output.
type GuardStatus struct {
	Tripped bool      `json:"tripped"`
	Since   time.Time `json:"since,omitempty"`
	Held    []uint32  `json:"held,omitempty"`
	// HeldRoles are the roles whose group deletion is held.
	HeldRoles []string `json:"held_roles,omitempty"`
	Max       int      `json:"max"`
	Window    string   `json:"window"`
	Recent    int      `json:"recent"` // deprovisioning sent inside the window
}

func (g *guard) status() GuardStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := GuardStatus{Tripped: g.tripped, Max: g.max, Window: g.window.String(), Recent: len(g.sent)}
	if g.tripped {
		s.Since = g.since
	}
	for _, k := range sortedKeys(maps.Keys(g.held)) {
		if k.kind == kindRole {
			s.HeldRoles = append(s.HeldRoles, k.role)
		} else {
			s.Held = append(s.Held, k.uid)
		}
	}
	return s
}
