package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// End-to-end tests of binlog set-ups that once lost changes silently:
// each runs the agent against a MariaDB configured the way a real site
// may be.

// TestLowerCaseTableNamesReachTheServer: with lower_case_table_names=1
// the server logs the database as drupal3 when the DSN says Drupal3. The
// initial sync reads through the DSN and works; the changes after it
// must reach the SCIM server too.
func TestLowerCaseTableNamesReachTheServer(t *testing.T) {
	srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--lower-case-table-names=1"}})
	h := newHarness(t, withServer(srv))
	h.cfg.MySQL.DSN = agenttest.MixedCaseDSN(t, h.cfg.MySQL.DSN)
	results := Check(context.Background(), h.cfg)
	if AnyFailed(results) {
		t.Fatalf("check: %+v", results)
	}
	uid := h.create(drupaltest.User{Name: "casey", Mail: str("casey@example.org"), Status: 1})
	h.start()
	h.settle()
	h.mustServerUser(uid)
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("casey@new.example.org") })
	later := h.create(drupaltest.User{Name: "later", Status: 1})
	h.settle()
	h.mustServerUser(later)
	h.assertServerMatchesDB()
}

// TestCheckSaysHowNamesCompare: check names the lower_case_table_names
// setting and what it means for the DSN's database.
func TestCheckSaysHowNamesCompare(t *testing.T) {
	ctx := context.Background()
	lower := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--lower-case-table-names=1"}})
	for _, tt := range []struct {
		srv   *testdb.Server
		mixed bool // the DSN names the database with a capital
		want  string
	}{
		{testdb.Shared(t), false, "0: database and table names compare exactly"},
		{lower, true, "1: names are stored and logged in lower case and compare case-insensitively (the DSN's database Drupal"},
	} {
		db, err := tt.srv.NewDatabase(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		dsn, err := db.CreateAgentUser(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tt.mixed {
			dsn = agenttest.MixedCaseDSN(t, dsn)
		}
		srv := scimtest.New(t, scimtest.Options{Token: testToken})
		results := Check(ctx, checkConfig(t, dsn, srv.URL, testToken, ""))
		r, found := findCheck(results, "mysql.lower_case_table_names")
		if !found || !r.OK || !strings.Contains(r.Detail, tt.want) {
			t.Errorf("mysql.lower_case_table_names = %+v (found %v), want %q", r, found, tt.want)
		}
		db.Close()
	}
}

// TestStatementFormatUpdateReachesTheServer: a session logging in
// STATEMENT format (opened before binlog_format was set to ROW, or a tool
// that sets its own) writes Drupal's user tables with no row in the
// binlog. The agent must notice, run a full sync and bring the change
// over, and no log line may quote the statement.
func TestStatementFormatUpdateReachesTheServer(t *testing.T) {
	const hash = "$S$EstatementFormatHash0123456789abcdefghijklmnopq"
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "stmt", Mail: str("stmt@example.org"), Status: 1})
	h.start()
	h.settle()
	h.mustServerUser(uid)

	ctx := context.Background()
	conn, err := h.db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Drupal's session: sql_mode ANSI, identifiers in double quotes.
	for _, q := range []string{"SET SESSION binlog_format = 'STATEMENT'", "SET SESSION sql_mode = 'ANSI,TRADITIONAL'"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	update := `UPDATE "users_field_data" SET "status" = 0, "mail" = 'stmt-new@example.org', "pass" = '` + hash + `' WHERE "uid" = ?`
	if _, err := conn.ExecContext(ctx, update, uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.assertServerMatchesDB()
	if su := h.mustServerUser(uid); su.Get("active") != false {
		t.Fatal("the user blocked in STATEMENT format is still active on the server")
	}
	if !logged(`"msg":"binlog.resync_needed"`, `"level":"error"`, "UPDATE of watched table users_field_data in STATEMENT format") {
		t.Fatal("no error-level binlog.resync_needed line naming the UPDATE of users_field_data")
	}
	for _, line := range collectedLines() {
		if strings.Contains(line, "stmt-new@example.org") || strings.Contains(line, `SET "status"`) {
			t.Fatalf("a log line quotes the statement: %s", line)
		}
	}
	// The stream goes on: a later change arrives as usual.
	later := h.create(drupaltest.User{Name: "later", Status: 1})
	h.settle()
	h.mustServerUser(later)
}

// TestSchemaChangeKeepingTheColumnCountFallsBackToAFullSync: without
// row metadata, a user blocked while the agent is down, then an ALTER
// TABLE that drops one column and adds another: the block's event, read
// with today's shifted column names, looked like a change of nothing
// mapped. The agent must notice the columns are unknown and converge
// through a full sync.
func TestSchemaChangeKeepingTheColumnCountFallsBackToAFullSync(t *testing.T) {
	for _, metadata := range []string{"MINIMAL", "NO_LOG"} {
		t.Run(metadata, func(t *testing.T) {
			srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=" + metadata}})
			h := newHarness(t, withServer(srv))
			uid := h.create(drupaltest.User{Name: "blocked", Mail: str("b@example.org"), Status: 1})
			h.start()
			h.settle()
			h.mustServerUser(uid)
			h.stop()
			h.update(uid, func(u *drupaltest.User) { u.Status = 0 })
			if _, err := h.db.DB.Exec("ALTER TABLE users_field_data DROP COLUMN preferred_admin_langcode, ADD COLUMN x varchar(12) NULL"); err != nil {
				t.Fatal(err)
			}
			h.start()
			h.settle()
			h.assertServerMatchesDB()
			if su := h.mustServerUser(uid); su.Get("active") != false {
				t.Fatal("the user blocked before the ALTER is still active on the server")
			}
			if !logged(`"msg":"binlog.columns_unknown"`) {
				t.Fatal("no binlog.columns_unknown line")
			}
		})
	}
}
