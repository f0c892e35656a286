package binlog

import (
	"context"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// TestXAPrepareEndsItsGroup: MariaDB 10.5+ ends the event group of an XA
// transaction's PREPARE with an XA_prepare event (type 38), which go-mysql
// hands over as a GenericEvent. The group must end there, not wait for
// the next transaction (with an "unterminated transaction" warning).
func TestXAPrepareEndsItsGroup(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "xavier", Mail: drupaltest.Str("x@example.org")})
	if err != nil {
		t.Fatal(err)
	}
	r := f.stream(t, f.pos(t), nil)
	conn, err := f.db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"XA START 'x1'", "UPDATE users_field_data SET mail = 'xa@example.org' WHERE uid = ?",
		"XA END 'x1'", "XA PREPARE 'x1'"} {
		var args []any
		if q[0] == 'U' {
			args = []any{uid}
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	prepared := f.pos(t)
	select {
	case n := <-r.notices:
		checkNotice(t, n, prepared, uid)
	case <-time.After(5 * time.Second):
		t.Errorf("no notice 5s after the XA PREPARE group ended at %s: the group is still open in the assembler", prepared)
	}
	if _, err := conn.ExecContext(ctx, "XA COMMIT 'x1'"); err != nil {
		t.Fatal(err)
	}
	committed := f.pos(t)
	for n := r.next(t); n.Pos.Offset != committed.Offset; n = r.next(t) {
	}
	if n := f.logs.FilterMessage(MsgUnterminated).Len(); n != 0 {
		t.Errorf("%d %q warnings for an ordinary XA transaction", n, MsgUnterminated)
	}
}
