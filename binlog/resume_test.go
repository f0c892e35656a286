package binlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

var errStop = errors.New("test: stop here")

func TestResumeFromNoticePosition(t *testing.T) {
	tests := []struct {
		name string
		from func(Position) Position // what the caller saved of the last notice
	}{
		{"file position only", func(p Position) Position { p.GTID = ""; return p }},
		{"gtid only", func(p Position) Position { return Position{GTID: p.GTID} }},
		{"both", func(p Position) Position { return p }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, "", mappedColumns, nil)
			start := f.pos(t)
			var uids []uint32
			var ends []Position
			for i := range 6 {
				uid, err := f.site.Create(ctx, drupaltest.User{Name: fmt.Sprintf("u%d", i), Roles: []string{"editor"}})
				if err != nil {
					t.Fatal(err)
				}
				uids = append(uids, uid)
				ends = append(ends, f.pos(t))
			}

			// The handler takes three transactions and fails on the fourth.
			handled := 0
			r := f.stream(t, start, func(n Notice) error {
				if handled == 3 {
					return errStop
				}
				handled++
				return nil
			})
			var last Notice
			for i := range 3 {
				last = r.expect(t, ends[i], uids[i])
			}
			if err := r.wait(t); !errors.Is(err, errStop) {
				t.Fatalf("Stream returned %v, want the handler's error wrapped", err)
			}

			r2 := f.stream(t, tt.from(last.Pos), nil)
			for i := 3; i < 6; i++ {
				r2.expect(t, ends[i], uids[i])
			}
			// Nothing in between: the next notice is the next write.
			r2.expect(t, f.exec(t, "INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'marker')"))
		})
	}
}

// killDump kills the binlog dump thread of the fixture's account on the
// server, as an operator or a fail-over would.
func killDump(t testing.TB, f *fixture) {
	t.Helper()
	root := testdb.Shared(t).Root()
	var id int64
	err := root.QueryRow(`SELECT ID FROM information_schema.PROCESSLIST
		WHERE USER = ? AND COMMAND LIKE 'Binlog Dump%'`, "agent_"+f.db.Name).Scan(&id)
	if err != nil {
		t.Errorf("find the binlog dump thread: %v", err)
		return
	}
	if _, err := root.Exec(fmt.Sprintf("KILL %d", id)); err != nil {
		t.Errorf("kill the binlog dump thread: %v", err)
	}
}

func TestReconnectAfterKill(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	start := f.pos(t)
	create := func(name string) (uint32, Position) {
		uid, err := f.site.Create(ctx, drupaltest.User{Name: name, Translations: []string{"de"}})
		if err != nil {
			t.Fatal(err)
		}
		return uid, f.pos(t)
	}
	u1, p1 := create("one")
	u2, p2 := create("two")
	killed := false
	r := f.stream(t, start, func(n Notice) error {
		if !killed {
			// While the first transaction is being handled, the second may
			// be half read: the stream must resume after the first.
			killed = true
			killDump(t, f)
		}
		return nil
	})
	r.expect(t, p1, u1)
	r.expect(t, p2, u2)
	u3, p3 := create("three")
	r.expect(t, p3, u3)

	// Killed while idle: a write made meanwhile arrives once.
	killDump(t, f)
	u4, p4 := create("four")
	r.expect(t, p4, u4)
	r.expect(t, f.exec(t, "INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'marker')"))

	for _, e := range f.logs.FilterMessage(MsgReconnect).All() {
		t.Logf("%s: %v", e.Message, e.ContextMap())
	}
	if n := f.logs.FilterMessage(MsgReconnect).Len(); n < 2 {
		t.Errorf("%d %q logs, want one per kill", n, MsgReconnect)
	}
	for _, e := range f.logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "pw-") {
			t.Errorf("log %q shows the password: %v", e.Message, e.ContextMap())
		}
	}
}

func TestPurgedPosition(t *testing.T) {
	ctx := context.Background()
	srv := testdb.StartPrivate(t, testdb.Options{})
	db, err := srv.NewDatabase(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := newFixtureOn(t, db, mappedColumns, nil)
	old := f.pos(t)
	if _, err := f.site.Create(ctx, drupaltest.User{Name: "purged"}); err != nil {
		t.Fatal(err)
	}
	root := srv.Root()
	if _, err := root.Exec("FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	agenttest.PurgeBinaryLogs(t, root, f.pos(t).File)

	for _, from := range []Position{{File: old.File, Offset: old.Offset}, {GTID: old.GTID}} {
		t.Run(from.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, waitFor)
			defer cancel()
			err := f.s.Stream(ctx, from, func(context.Context, Notice) error {
				t.Error("a notice from a purged position")
				return nil
			})
			if !errors.Is(err, ErrPositionPurged) {
				t.Fatalf("Stream returned %v, want ErrPositionPurged", err)
			}
			t.Logf("Stream: %v", err)
			if !strings.Contains(err.Error(), "1236") {
				t.Errorf("error %q does not carry the server's message", err)
			}
		})
	}
}

// TestColumnNamesWithoutFullMetadata runs the same Drupal writes against
// servers writing full, minimal and no column metadata: without names in
// the binlog they come from information_schema, and an ALTER TABLE that
// moves the uid column must not make the stream read the wrong column.
func TestColumnNamesWithoutFullMetadata(t *testing.T) {
	tests := []struct {
		metadata  string
		wantNames bool // whether information_schema is read
	}{
		{"FULL", false},
		{"MINIMAL", true},
		{"NO_LOG", true},
	}
	for _, tt := range tests {
		t.Run(tt.metadata, func(t *testing.T) {
			ctx := context.Background()
			var db *testdb.Database
			if tt.metadata == "FULL" {
				db = testdb.NewTestDatabase(t, "")
			} else {
				srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=" + tt.metadata}})
				var err error
				if db, err = srv.NewDatabase(ctx, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
			}
			f := newFixtureOn(t, db, mappedColumns, nil)
			r := f.stream(t, f.pos(t), nil)

			// A uid above 2^31: decoded as a negative int32 when the binlog
			// does not say the column is unsigned.
			const big = 3_000_000_000
			if _, err := f.site.Create(ctx, drupaltest.User{UID: big, Name: "big", Mail: drupaltest.Str("big@example.org"),
				Roles: []string{"editor"}, Translations: []string{"de"}}); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), big)
			small, err := f.site.Create(ctx, drupaltest.User{Name: "small"})
			if err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), small)
			if err := f.site.Login(ctx, big, time.Now().Unix()); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t))

			r.expect(t, f.exec(t, "ALTER TABLE users_field_data ADD COLUMN x INT FIRST"))
			if err := f.site.Update(ctx, big, func(u *drupaltest.User) { u.Mail = drupaltest.Str("big@example.com") }); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), big)
			if err := f.site.Login(ctx, big, time.Now().Unix()+500); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t))
			if err := f.site.Update(ctx, small, func(u *drupaltest.User) { u.Pass = "$2y$10$changed" }); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t))
			if err := f.site.Delete(ctx, big); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), big)

			loaded := f.logs.FilterMessage(MsgColumnsLoaded).Len()
			if tt.wantNames && loaded == 0 {
				t.Errorf("no %q log: names did not come from information_schema", MsgColumnsLoaded)
			}
			if !tt.wantNames && loaded != 0 {
				t.Errorf("%d %q logs with full metadata in the binlog", loaded, MsgColumnsLoaded)
			}
		})
	}
}

// TestSchemaChangedUnderAStream: without column names in the binlog, an
// event written before an ALTER TABLE that is read after it cannot be
// mapped with today's columns, and the stream must say so.
func TestSchemaChangedUnderAStream(t *testing.T) {
	ctx := context.Background()
	f := newMinimalMetadataFixture(t)
	start := f.pos(t)
	if _, err := f.site.Create(ctx, drupaltest.User{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	f.exec(t, "ALTER TABLE users_field_data ADD COLUMN x INT FIRST")

	ctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	err := f.s.Stream(ctx, start, func(context.Context, Notice) error { return nil })
	if !errors.Is(err, ErrUnknownColumns) {
		t.Fatalf("Stream returned %v, want ErrUnknownColumns", err)
	}
}

// newMinimalMetadataFixture returns a fixture on a private MariaDB that
// writes no column names into the binlog (binlog_row_metadata=MINIMAL).
func newMinimalMetadataFixture(t *testing.T) *fixture {
	t.Helper()
	srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=MINIMAL"}})
	db, err := srv.NewDatabase(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newFixtureOn(t, db, mappedColumns, nil)
}
