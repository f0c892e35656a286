package agent

import (
	"fmt"
	"maps"
	"slices"
	"sort"
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
// inside window pause all deprovisioning until an operator approves;
// creates and updates keep flowing, and the held uids keep the binlog
// position (nothing is lost).
type guard struct {
	max    int
	window time.Duration
	store  *state.Store // nil in dry runs: nothing is saved
	log    *zap.Logger

	mu       sync.Mutex
	sent     []sentAt // deprovisioning allowed inside the window, oldest first
	tripped  bool
	since    time.Time
	held     map[uint32]string // uid → op held
	approved map[uint32]bool   // held uids released by an approval, not yet sent
	dirty    bool              // held or approved changed since the last save
}

// sentAt is one deprovisioning allowed inside the window.
type sentAt struct {
	uid uint32
	at  time.Time
}

// guardState is what survives a restart: a tripped guard stays tripped
// until approved, the uids it held stay held, and approved uids not yet
// sent stay approved (a sync or drift repair held some of them, and the
// binlog will not name those again).
type guardState struct {
	Tripped  bool              `json:"tripped"`
	Since    time.Time         `json:"since"`
	Held     map[uint32]string `json:"held,omitempty"`     // uid → op held
	Approved []uint32          `json:"approved,omitempty"` // released, not yet sent
}

func newGuard(max int, window time.Duration, store *state.Store, log *zap.Logger) *guard {
	g := &guard{max: max, window: window, store: store, log: log, held: map[uint32]string{}, approved: map[uint32]bool{}}
	if store != nil {
		var s guardState
		if ok, err := store.Meta(guardKey, &s); err == nil && ok {
			if s.Tripped {
				g.tripped, g.since = true, s.Since
				maps.Copy(g.held, s.Held)
			}
			for _, uid := range s.Approved {
				g.approved[uid] = true
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
	s.Tripped = false
	for uid := range s.Held {
		s.Approved = append(s.Approved, uid)
	}
	slices.Sort(s.Approved)
	s.Approved = slices.Compact(s.Approved)
	s.Held = nil
	return store.PutMeta(guardKey, s)
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
	return gs, nil
}

// Released returns the uids approved but not yet sent, which the agent
// queues at start: some were held by a sync or drift repair, and the
// binlog will not name them again.
func (g *guard) Released() []uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.approved))
}

// Allow asks to deprovision uid now (op is delete or deactivate). It
// returns false when the guard holds it back. An approved uid stays
// approved until Sent: a DELETE cut short by an outage or a shutdown is
// tried again, approved, at its next attempt. A uid allowed again inside
// the window (a retry after an outage) counts once.
func (g *guard) Allow(uid uint32, op string) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.approved[uid] {
		return true
	}
	if g.tripped {
		g.hold(uid, op)
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
		if s.uid == uid {
			return true
		}
	}
	if len(g.sent)+1 > g.max {
		g.tripped, g.since = true, now
		g.hold(uid, op)
		g.save() // at once: a tripped guard must survive any crash
		g.log.Error(MsgGuardTripped, zap.Int("count", len(g.sent)+1), zap.Int("max", g.max),
			zap.String("window", g.window.String()),
			zap.String("detail", "deprovisioning paused: run `scim-agent approve-deletes` once you have checked these deletions are intended"))
		return false
	}
	g.sent = append(g.sent, sentAt{uid: uid, at: now})
	return true
}

// Sent records that uid's deprovisioning reached the server (or was found
// done): its approval, if any, is used up.
func (g *guard) Sent(uid uint32) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.approved[uid] {
		delete(g.approved, uid)
		g.dirty = true
	}
}

// Forget drops uid from the held and approved sets: its reconcile ended
// without deprovisioning (a blocked user unblocked before the approval),
// so a later deletion must ask the guard afresh.
func (g *guard) Forget(uid uint32) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.held[uid]; ok {
		delete(g.held, uid)
		g.dirty = true
	}
	if g.approved[uid] {
		delete(g.approved, uid)
		g.dirty = true
	}
}

// hold records uid as held. It is saved by the next Flush, not here: a
// bulk deletion holds thousands of uids, and one write per uid of the
// whole set would take minutes. Until then nothing is lost: a uid held
// from the binlog keeps the position, and Flush runs before every
// position save.
func (g *guard) hold(uid uint32, op string) {
	if _, dup := g.held[uid]; dup {
		return
	}
	g.log.Warn(MsgGuardHeld, zap.Uint32("uid", uid), zap.String("op", op))
	g.held[uid] = op
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
	st := guardState{Tripped: g.tripped, Since: g.since, Held: g.held, Approved: slices.Sorted(maps.Keys(g.approved))}
	if err := g.store.PutMeta(guardKey, st); err != nil {
		g.dirty = true
		g.log.Error(MsgGuardTripped, zap.String("detail", "could not save the deletion guard"), zap.Error(err))
		return fmt.Errorf("save the deletion guard: %w", err)
	}
	g.dirty = false
	return nil
}

// Approve releases the guard: every held uid may now go ahead (the caller
// queues them again) and the window starts afresh.
func (g *guard) Approve() []uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	uids := make([]uint32, 0, len(g.held))
	for uid := range g.held {
		uids = append(uids, uid)
		g.approved[uid] = true
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	g.held = map[uint32]string{}
	g.sent = nil
	g.tripped = false
	g.save() // logged on failure; the approval holds in memory and the next Flush writes it
	g.log.Info(MsgGuardApproved, zap.Int("held", len(uids)))
	return uids
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
	Max     int       `json:"max"`
	Window  string    `json:"window"`
	Recent  int       `json:"recent"` // deprovisioning sent inside the window
}

func (g *guard) status() GuardStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := GuardStatus{Tripped: g.tripped, Max: g.max, Window: g.window.String(), Recent: len(g.sent)}
	if g.tripped {
		s.Since = g.since
	}
	for uid := range g.held {
		s.Held = append(s.Held, uid)
	}
	sort.Slice(s.Held, func(i, j int) bool { return s.Held[i] < s.Held[j] })
	return s
}
