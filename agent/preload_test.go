package agent

import (
	"context"
	"fmt"
	"strings"
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

// TestAPreparedTransactionHoldsItsUsersRead: the binlog names a user at
// its XA transaction's PREPARE, long before the COMMIT makes the change
// visible. The loader's read of the batch waits for the transaction's
// locks only a second, then hands the user over unread; the reconcile then
// waits for them itself, and sends the committed mail, not the old one.
func TestAPreparedTransactionHoldsItsUsersRead(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "xavier", Mail: str("old@example.org"), Status: 1})
	h.start()
	h.settle()
	ctx := context.Background()
	conn, err := h.db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"XA START 'held'", "UPDATE users_field_data SET mail = 'new@example.org' WHERE uid = ?", "XA END 'held'", "XA PREPARE 'held'"} {
		var args []any
		if q[0] == 'U' {
			args = []any{uid}
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The loader's read found the transaction's locks (and gives up
	// after a second), then the reconcile's own read found them.
	eventually(t, "the loader's read and then the reconcile's to wait for the prepared transaction", func() bool {
		return h.agent.kinds.users.pages.Conflicts() > 0 && h.agent.kinds.users.reader.Conflicts() > 0
	})
	if su := h.mustServerUser(uid); su.Get("emails") == nil || !strings.Contains(fmt.Sprint(su.Get("emails")), "old@example.org") {
		t.Fatalf("the server's account changed before the COMMIT: %v", su.Get("emails"))
	}
	if _, err := conn.ExecContext(ctx, "XA COMMIT 'held'"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if su := h.mustServerUser(uid); !strings.Contains(fmt.Sprint(su.Get("emails")), "new@example.org") {
		t.Fatalf("the server holds %v, want the committed new@example.org", su.Get("emails"))
	}
	h.assertServerMatchesDB()
}
