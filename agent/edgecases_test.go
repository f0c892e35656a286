package agent

import (
	"context"
	"fmt"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// The edge cases of issue "Fifteen ways to lose, misdirect or stall a
// change", each against the real MariaDB and SCIM server.

// A binlog reader paused by back-pressure must not swallow the wake-up a
// worker needs: an approval (or a sync request) while the reader waits for
// room is taken by a worker.
func TestApprovalWhileReadingIsPausedIsNotLost(t *testing.T) {
	// One worker, and one incomplete transaction fills the queue: the
	// worker goes back to waiting for work after the reader has begun to
	// wait for room.
	h := newHarness(t, withProvisioning("max_deletes: 1\nworkers: 1"))
	var uids []uint32
	for i := 0; i < 3; i++ {
		uids = append(uids, h.create(drupaltest.User{Name: fmt.Sprintf("bp%d", i), Status: 1}))
	}
	h.start(func(o *Options) { o.MaxPendingTransactions = 1 })
	h.settle()
	h.stop()
	ctx := context.Background()
	for _, uid := range uids {
		if err := h.site.Delete(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	h.start(func(o *Options) { o.MaxPendingTransactions = 1 })
	// The first deletion is sent, the second trips the guard and is held,
	// and the third waits in the reader for room.
	eventually(t, "a held deletion and a paused reader", func() bool {
		return h.agent.guard.HeldCount() == 1 && h.agent.work.PausedAdders() == 1 && h.agent.work.Depth() == 0
	})
	if n := h.count("DELETE"); n != 1 {
		t.Fatalf("%d DELETEs before the approval, want 1", n)
	}
	if n := h.agent.ApproveDeletes(); n != 1 {
		t.Fatalf("approved %d, want 1", n)
	}
	h.settle()
	if n := h.count("DELETE"); n != 3 {
		t.Fatalf("%d DELETEs after the approval, want 3", n)
	}
	h.assertServerMatchesDB()
}

// Adopting an active account for a blocked Drupal user deactivates it:
// that counts towards the deletion guard like any other deactivation.
func TestAdoptionDeactivatesOnlyWhatTheGuardAllows(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 2"))
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("blocked%d", i)
		h.create(drupaltest.User{Name: name, Status: 0})
		h.scim.Seed(map[string]any{"userName": name, "active": true})
	}
	h.start()
	h.settle()
	deactivated := func() int {
		n := 0
		for _, u := range h.scim.Users() {
			if u.Get("active") == false {
				n++
			}
		}
		return n
	}
	if n := deactivated(); n != 2 {
		t.Fatalf("%d accounts deactivated by adoption with max_deletes 2, want 2", n)
	}
	if !h.agent.guard.Tripped() || h.agent.guard.HeldCount() != 3 {
		t.Fatalf("guard tripped %v holding %d, want tripped holding 3", h.agent.guard.Tripped(), h.agent.guard.HeldCount())
	}
	if n := len(h.scim.Users()); n != 5 || h.count("POST") != 5 {
		t.Fatalf("%d accounts after %d POSTs: want the 5 adopted, none created", n, h.count("POST"))
	}
	h.agent.ApproveDeletes()
	h.settle()
	if n := deactivated(); n != 5 {
		t.Fatalf("%d accounts deactivated after the approval, want 5", n)
	}
	h.assertServerMatchesDB()
}
