package agent

import (
	"context"
	"fmt"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// statements returns the statements the agent's MariaDB account has sent
// so far (MariaDB's user statistics, switched on here).
func (h *harness) statements() int64 {
	h.t.Helper()
	root := h.srv.Root()
	if _, err := root.Exec("SET GLOBAL userstat = 1"); err != nil {
		h.t.Fatal(err)
	}
	var n int64
	if err := root.QueryRow(`SELECT COALESCE(SUM(SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS), 0)
		FROM information_schema.USER_STATISTICS WHERE USER = ?`, "agent_"+h.db.Name).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// TestFullSyncReadsDrupalInPages: an initial sync reads the users with a
// page's barrier and query, not with two statements per user, and each
// create saves its Creating record before its POST (a batch's in one
// commit), so nothing is posted twice.
func TestFullSyncReadsDrupalInPages(t *testing.T) {
	const users = 1200
	h := newHarness(t)
	batch := make([]drupaltest.User, users)
	for i := range batch {
		batch[i] = drupaltest.User{Name: fmt.Sprintf("paged%04d", i), Mail: str(fmt.Sprintf("paged%04d@example.org", i)), Status: 1}
	}
	if _, err := h.site.CreateMany(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	before := h.statements()
	h.start()
	h.settle()
	n := h.statements() - before
	if perUser := float64(n) / users; perUser > 0.05 {
		t.Fatalf("%d statements for a sync of %d users (%.3f a user): the users were not read in pages", n, users, perUser)
	}
	for name, posts := range h.postsByUserName() {
		if posts != 1 {
			t.Fatalf("%s POSTed %d times", name, posts)
		}
	}
	if got := h.scim.UserCount(); got != users {
		t.Fatalf("%d accounts on the server, want %d", got, users)
	}
	h.assertServerMatchesDB()
}
