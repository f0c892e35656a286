package binlog

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { os.Exit(testdb.RunMain(m)) }

// waitFor bounds every wait of the tests: long enough for a slow machine,
// short enough to fail a hung test quickly.
const waitFor = 20 * time.Second

var serverIDs atomic.Uint32

// nextServerID returns a replica id unique in the test binary, so streams
// of different tests never make the server drop each other.
func nextServerID() uint32 { return 1000 + serverIDs.Add(1) }

// mappedColumns are the users_field_data columns the agent's default
// mapping reads, plus the row's identity.
var mappedColumns = []string{"uid", "langcode", "default_langcode", "name", "mail", "status", "timezone", "preferred_langcode", "init"}

// drupalTables are the watched tables of a Drupal site with prefix;
// fieldData are users_field_data's Columns.
func drupalTables(prefix string, fieldData []string) []Table {
	return []Table{
		{Name: prefix + "users", KeyColumn: "uid"},
		{Name: prefix + "users_field_data", KeyColumn: "uid", Columns: fieldData},
		{Name: prefix + "user__roles", KeyColumn: "entity_id"},
		{Name: prefix + "user__field_first_name", KeyColumn: "entity_id"},
	}
}

// fixture is one test's database, site and streamer.
type fixture struct {
	db   *testdb.Database
	site *drupaltest.Site
	s    *Streamer
	logs *observer.ObservedLogs
}

// newFixture creates a fresh Drupal database with prefix on the shared
// server and a Streamer on it, logged in as an account with the README's
// grants. mod may change the config before Open.
func newFixture(t testing.TB, prefix string, fieldData []string, mod func(*Config)) *fixture {
	t.Helper()
	db := testdb.NewTestDatabase(t, prefix)
	return newFixtureOn(t, db, fieldData, mod)
}

func newFixtureOn(t testing.TB, db *testdb.Database, fieldData []string, mod func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	dsn, err := db.CreateAgentUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	cfg := Config{
		DSN:       dsn,
		ServerID:  nextServerID(),
		Tables:    drupalTables(db.Prefix, fieldData),
		Heartbeat: time.Second,
		Logger:    zap.New(core),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fixture{db: db, site: &drupaltest.Site{DB: db.DB, Prefix: db.Prefix}, s: s, logs: logs}
}

// pos returns the server's current position.
func (f *fixture) pos(t testing.TB) Position {
	t.Helper()
	p, err := f.s.CurrentPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// exec runs SQL on the fixture's database and returns the position after
// it.
func (f *fixture) exec(t testing.TB, q string, args ...any) Position {
	t.Helper()
	if _, err := f.db.DB.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return f.pos(t)
}

// run is one running Stream whose notices arrive on a channel.
type run struct {
	notices chan Notice
	done    chan struct{} // closed when Stream returned, err then set
	err     error
	cancel  context.CancelFunc
}

// stream starts Stream from from; the test's end stops it. onNotice, when
// set, runs inside handle before the notice is passed on.
func (f *fixture) stream(t testing.TB, from Position, onNotice func(Notice) error) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{notices: make(chan Notice, 100000), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.err = f.s.Stream(ctx, from, func(_ context.Context, n Notice) error {
			if onNotice != nil {
				if err := onNotice(n); err != nil {
					return err
				}
			}
			r.notices <- n
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitFor):
			t.Error("Stream did not return after cancel")
		}
	})
	return r
}

// next returns the next notice, failing the test when none comes.
// Notices handed over before Stream returned still count: a select would
// pick the closed done channel at random over a waiting notice.
func (r *run) next(t testing.TB) Notice {
	t.Helper()
	select {
	case n := <-r.notices:
		return n
	case <-r.done:
		select {
		case n := <-r.notices:
			return n
		default:
		}
		t.Fatalf("Stream returned early: %v", r.err)
	case <-time.After(waitFor):
		t.Fatalf("no notice within %s", waitFor)
	}
	return Notice{}
}

// stop cancels the stream and returns what Stream returned.
func (r *run) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// wait returns what Stream returned, failing the test when it does not
// return.
func (r *run) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		t.Fatalf("Stream did not return within %s", waitFor)
	}
	return nil
}

// expect reads the next notice and checks that it is the transaction that
// ended at pos and touched exactly uids.
func (r *run) expect(t testing.TB, pos Position, uids ...uint32) Notice {
	t.Helper()
	n := r.next(t)
	checkNotice(t, n, pos, uids...)
	return n
}

func checkNotice(t testing.TB, n Notice, pos Position, uids ...uint32) {
	t.Helper()
	if n.Pos.File != pos.File || n.Pos.Offset != pos.Offset {
		t.Fatalf("notice at %s, want the transaction ending at %s (notice %+v)", n.Pos, pos, n)
	}
	if pos.GTID != "" && n.Pos.GTID != pos.GTID {
		t.Fatalf("notice GTID %q, want %q", n.Pos.GTID, pos.GTID)
	}
	if !slices.Equal(n.UIDs, uids) && !(len(n.UIDs) == 0 && len(uids) == 0) {
		t.Fatalf("notice at %s: uids %v, want %v", n.Pos, n.UIDs, uids)
	}
}

func describe(ns []Notice) string {
	s := ""
	for _, n := range ns {
		s += fmt.Sprintf("\n  %s uids=%v", n.Pos, n.UIDs)
	}
	return s
}
