package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/state"
)

// openGuardStore opens a state file in a temp dir; reopen returns a fresh
// guard read from it, as after a restart.
func openGuardStore(t testing.TB) *state.Store {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func TestGuard(t *testing.T) {
	type step struct {
		do   string // allow, sent, forget, approve, flush, restart, released
		uid  uint32
		want bool     // allow's answer
		uids []uint32 // released's answer
	}
	tests := []struct {
		name         string
		max          int
		steps        []step
		wantTripped  bool
		wantHeld     []uint32
		wantApproved []uint32
	}{{
		name: "a retry inside the window counts once",
		max:  2,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 1, want: true}, {do: "allow", uid: 1, want: true},
			{do: "allow", uid: 2, want: true}, {do: "allow", uid: 3, want: false},
		},
		wantTripped: true, wantHeld: []uint32{3},
	}, {
		name: "an approval lasts until the deprovisioning is sent, across restarts",
		max:  1,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: false}, {do: "approve"},
			{do: "allow", uid: 2, want: true},                    // the DELETE fails (outage, shutdown) …
			{do: "restart"}, {do: "released", uids: []uint32{2}}, // queued again at start …
			{do: "allow", uid: 2, want: true}, // … and tried again, still approved
			{do: "sent", uid: 2}, {do: "flush"}, {do: "restart"},
		},
	}, {
		name: "a sent approval is used up: the next deletion of that uid asks again",
		max:  1,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: false}, {do: "approve"},
			{do: "allow", uid: 2, want: true}, {do: "sent", uid: 2},
			{do: "allow", uid: 3, want: true}, {do: "allow", uid: 2, want: false},
		},
		wantTripped: true, wantHeld: []uint32{2},
	}, {
		name: "a held uid that needs no deprovisioning any more is dropped",
		max:  1,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: false}, {do: "allow", uid: 3, want: false},
			{do: "forget", uid: 2}, {do: "flush"}, {do: "restart"},
		},
		wantTripped: true, wantHeld: []uint32{3},
	}, {
		name: "an approved uid that needs no deprovisioning any more cannot bypass the guard later",
		max:  1,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: false}, {do: "approve"},
			{do: "forget", uid: 2}, {do: "flush"}, {do: "restart"},
			{do: "allow", uid: 3, want: true}, {do: "allow", uid: 2, want: false},
		},
		wantTripped: true, wantHeld: []uint32{2},
	}, {
		name: "held uids survive a restart once flushed",
		max:  1,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: false},
			{do: "allow", uid: 3, want: false}, {do: "allow", uid: 4, want: false},
			{do: "flush"}, {do: "restart"},
		},
		wantTripped: true, wantHeld: []uint32{2, 3, 4},
	}, {
		name: "no limit: nothing is held",
		max:  0,
		steps: []step{
			{do: "allow", uid: 1, want: true}, {do: "allow", uid: 2, want: true}, {do: "allow", uid: 3, want: true},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openGuardStore(t)
			g := newGuard(tt.max, time.Hour, store, zap.NewNop())
			for i, s := range tt.steps {
				switch s.do {
				case "allow":
					if got := g.Allow(userKey(s.uid), OpDelete); got != s.want {
						t.Fatalf("step %d: Allow(%d) = %v, want %v", i, s.uid, got, s.want)
					}
				case "sent":
					g.Sent(userKey(s.uid))
				case "forget":
					g.Forget(userKey(s.uid))
				case "approve":
					g.Approve()
				case "flush":
					if err := g.Flush(); err != nil {
						t.Fatal(err)
					}
				case "released":
					if got := uidsOf(g.Released()); !slices.Equal(got, s.uids) {
						t.Fatalf("step %d: Released() = %v, want %v", i, got, s.uids)
					}
				case "restart":
					g = newGuard(tt.max, time.Hour, store, zap.NewNop())
				default:
					t.Fatalf("step %d: unknown %q", i, s.do)
				}
			}
			st := g.status()
			if st.Tripped != tt.wantTripped || !slices.Equal(st.Held, tt.wantHeld) {
				t.Errorf("tripped %v, held %v; want %v, %v", st.Tripped, st.Held, tt.wantTripped, tt.wantHeld)
			}
			if got := uidsOf(g.Released()); !slices.Equal(got, tt.wantApproved) {
				t.Errorf("approved, not sent = %v, want %v", got, tt.wantApproved)
			}
		})
	}
}

func TestGuardTripIsSavedAtOnce(t *testing.T) {
	store := openGuardStore(t)
	g := newGuard(1, time.Hour, store, zap.NewNop())
	g.Allow(userKey(1), OpDelete)
	g.Allow(userKey(2), OpDelete)
	// No Flush: a crash right after tripping must not reopen the gate.
	if again := newGuard(1, time.Hour, store, zap.NewNop()); !again.Tripped() || again.HeldCount() != 1 {
		t.Fatalf("after a crash: tripped %v, held %d; want true, 1", again.Tripped(), again.HeldCount())
	}
}

// BenchmarkGuardBulkHold measures holding the uids of a bulk deletion
// with the guard tripped, flushed once a second's worth at a time as the
// agent's saver does: the cost per held uid must not grow with the number
// already held.
func BenchmarkGuardBulkHold(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				store := openGuardStore(b)
				g := newGuard(1, time.Hour, store, zap.NewNop())
				g.Allow(userKey(0), OpDelete)
				b.StartTimer()
				for uid := uint32(1); uid <= uint32(n); uid++ {
					g.Allow(userKey(uid), OpDelete)
					if uid%1000 == 0 {
						if err := g.Flush(); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := g.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestGuardWriteFailureIsTriedAgain(t *testing.T) {
	store := openGuardStore(t)
	g := newGuard(1, time.Hour, store, zap.NewNop())
	g.Allow(userKey(1), OpDelete)
	g.Allow(userKey(2), OpDelete) // trips and holds
	store.Close()                 // every write fails from here
	g.Approve()                   // its save fails: logged, kept in memory
	if err := g.Flush(); err == nil {
		t.Fatal("Flush after a failed save wrote nothing and reported no error: the approval would never reach the state file")
	}
}

// uidsOf returns the uids of user keys, in order.
func uidsOf(keys []key) []uint32 {
	var out []uint32
	for _, k := range keys {
		out = append(out, k.uid)
	}
	return out
}

// Group deletions count towards the same limit as user deletions, and a
// held one survives a restart.
func TestGuardCountsGroupDeletions(t *testing.T) {
	store := openGuardStore(t)
	g := newGuard(1, time.Hour, store, zap.NewNop())
	if !g.Allow(userKey(1), OpDelete) || g.Allow(roleKey("editor"), OpDelete) {
		t.Fatal("the second deprovisioning (a group's) was not held")
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	g = newGuard(1, time.Hour, store, zap.NewNop())
	if st := g.status(); !st.Tripped || !slices.Equal(st.HeldRoles, []string{"editor"}) || len(st.Held) != 0 {
		t.Fatalf("after a restart: %+v", st)
	}
	if got := g.Approve(); len(got) != 1 || got[0] != roleKey("editor") {
		t.Fatalf("Approve() = %v", got)
	}
	if !g.Allow(roleKey("editor"), OpDelete) {
		t.Fatal("the approved group deletion is still held")
	}
}
