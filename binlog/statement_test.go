package binlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestStatementFormatWriteAsksForAResync: a session that logs in
// STATEMENT format (opened before binlog_format was set to ROW, or a
// tool that sets its own) writes no rows to the binlog, only its SQL.
// A write to a watched table must stop the stream with ErrResyncNeeded
// naming the table, and neither the error nor any log line may quote the
// statement (it can hold a password hash). Writes to unwatched tables are
// none of the stream's business.
func TestStatementFormatWriteAsksForAResync(t *testing.T) {
	const hash = "$S$EstatementHashNeverToBeLogged0123456789abcdefghij"
	tests := []struct {
		name  string
		stmts []string // run in one STATEMENT-format session
		table string   // the watched table named in the error; "" for none
	}{
		{"unwatched writes", []string{
			"INSERT INTO users_data (uid, module, name, value, serialized) VALUES (%[1]d, 'user', 'users', 'users_field_data', 0)",
			"UPDATE users_data SET value = 'users' WHERE uid = %[1]d",
			"REPLACE INTO users_data (uid, module, name, value, serialized) VALUES (%[1]d, 'x', 'y', 'UPDATE users SET', 0)",
			"DELETE FROM users_data WHERE uid = %[1]d",
			"INSERT INTO users_data (uid, module, name, value, serialized) SELECT uid, 'copy', 'n', 'v', 0 FROM users WHERE uid = %[1]d",
		}, ""},
		{"update", []string{
			"UPDATE users_field_data SET mail = 'statement@example.org', pass = '" + hash + "' WHERE uid = %[1]d",
		}, "users_field_data"},
		{"qualified update", []string{
			"UPDATE `%[2]s`.`users_field_data` SET mail = 'q@example.org' WHERE uid = %[1]d",
		}, "users_field_data"},
		{"insert", []string{
			"INSERT INTO user__roles (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES ('user', 0, %[1]d, %[1]d, 'en', 5, 'editor')",
		}, "user__roles"},
		{"replace", []string{
			"REPLACE user__field_first_name (bundle, deleted, entity_id, revision_id, langcode, delta, field_first_name_value) VALUES ('user', 0, %[1]d, %[1]d, 'en', 0, 'X')",
		}, "user__field_first_name"},
		{"delete", []string{"DELETE FROM user__roles WHERE entity_id = %[1]d"}, "user__roles"},
		{"multi-table update", []string{
			"UPDATE users_data d JOIN users_field_data f ON f.uid = d.uid SET f.status = 0 WHERE f.uid = %[1]d",
		}, "users_field_data"},
		{"multi-table delete", []string{
			"DELETE r FROM user__roles r JOIN users u ON u.uid = r.entity_id WHERE u.uid = %[1]d",
		}, "user__roles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, "", mappedColumns, nil)
			uid, err := f.site.Create(ctx, drupaltest.User{Name: "stmt", Mail: drupaltest.Str("stmt@example.org"), Roles: []string{"editor"}})
			if err != nil {
				t.Fatal(err)
			}
			start := f.pos(t)
			conn, err := f.db.DB.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "SET SESSION binlog_format = 'STATEMENT'"); err != nil {
				t.Fatal(err)
			}
			for _, q := range tt.stmts {
				if _, err := conn.ExecContext(ctx, fmt.Sprintf(q, uid, f.db.Name)); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			// A marker in ROW format: the stream got past the statements.
			marker := f.exec(t, "INSERT INTO users_data (uid, module, name, value, serialized) VALUES (0, 'm', 'marker', '', 0)")

			r := f.stream(t, start, nil)
			if tt.table == "" {
				for {
					n := r.next(t)
					if len(n.UIDs) != 0 {
						t.Fatalf("a write to an unwatched table touched uids %v", n.UIDs)
					}
					if n.Pos.File == marker.File && n.Pos.Offset == marker.Offset {
						return
					}
				}
			}
			err = r.stoppedBefore(t, marker)
			want := fmt.Sprintf("of watched table %s in STATEMENT format", tt.table)
			if !errors.Is(err, ErrResyncNeeded) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Stream returned %v, want ErrResyncNeeded with %q", err, want)
			}
			for _, q := range tt.stmts {
				checkNoStatementText(t, err.Error(), q)
			}
			for _, e := range f.logs.All() {
				line := e.Message
				for k, v := range e.ContextMap() {
					line += fmt.Sprintf(" %s=%v", k, v)
				}
				for _, q := range tt.stmts {
					checkNoStatementText(t, line, q)
				}
				if e.Level >= zapcore.ErrorLevel {
					t.Errorf("the stream logged at error itself: %s", line)
				}
			}
		})
	}
}

// checkNoStatementText fails when s quotes a piece of statement q: its
// SET clause, its VALUES or its WHERE clause.
func checkNoStatementText(t *testing.T, s, q string) {
	t.Helper()
	if strings.Contains(s, "$S$") || strings.Contains(s, "@example.org") {
		t.Errorf("%q quotes the statement's data", s)
	}
	for _, kw := range []string{" SET ", " VALUES ", " WHERE ", " JOIN "} {
		if i := strings.Index(q, kw); i >= 0 {
			piece := q[i:min(len(q), i+len(kw)+12)]
			if strings.Contains(s, piece) {
				t.Errorf("%q quotes the statement (%q)", s, piece)
			}
		}
	}
}

// TestStatementFormatLoadData: LOAD DATA in STATEMENT format travels as
// the file's contents and an Execute_load_query event holding the
// statement; loading into a watched table asks for a resync, loading
// into another does not.
func TestStatementFormatLoadData(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "rows.tsv")
	if err := os.WriteFile(file, []byte("user\t0\t77\t77\ten\t9\teditor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.tsv")
	if err := os.WriteFile(data, []byte("77\tmod\tname\tvalue\t0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := f.pos(t)
	conn, err := f.db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		"SET SESSION binlog_format = 'STATEMENT'",
		"LOAD DATA INFILE '" + data + "' INTO TABLE users_data",
		"LOAD DATA INFILE '" + file + "' INTO TABLE user__roles",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	marker := f.exec(t, "INSERT INTO users_data (uid, module, name, value, serialized) VALUES (0, 'm', 'marker', '', 0)")
	err = f.stream(t, start, nil).stoppedBefore(t, marker)
	if !errors.Is(err, ErrResyncNeeded) || !strings.Contains(err.Error(), "LOAD DATA of watched table user__roles in STATEMENT format") {
		t.Fatalf("Stream returned %v, want ErrResyncNeeded naming the LOAD DATA into user__roles", err)
	}
	if strings.Contains(err.Error(), dir) {
		t.Errorf("error %q quotes the statement", err)
	}
}

// stoppedBefore returns what Stream returned, failing the test when the
// stream delivers the transaction ending at marker instead: it went on
// past what should have stopped it.
func (r *run) stoppedBefore(t testing.TB, marker Position) error {
	t.Helper()
	for {
		select {
		case n := <-r.notices:
			if n.Pos.File == marker.File && n.Pos.Offset >= marker.Offset {
				t.Fatalf("the stream went on to %s without asking for a resync", n.Pos)
			}
		case <-r.done:
			return r.err
		case <-time.After(waitFor):
			t.Fatalf("Stream neither returned nor reached %s within %s", marker, waitFor)
		}
	}
}

func TestStatementWrite(t *testing.T) {
	a := newAssembler("drupal", drupalTables("", mappedColumns), nameRule{}, fakeColumns{}, nil, zap.NewNop())
	tests := []struct {
		q, def     string
		verb, want string // want "" when no watched table is written
	}{
		// Drupal's own statements (sql_mode ANSI: identifiers in double quotes).
		{`UPDATE "users_field_data" SET "login"=1700000000 WHERE "uid" = 3`, "drupal", "UPDATE", "users_field_data"},
		{`INSERT INTO "user__roles" ("bundle", "entity_id") VALUES ('user', 3)`, "drupal", "INSERT", "user__roles"},
		{`DELETE FROM "user__roles" WHERE "entity_id" IN (3)`, "drupal", "DELETE", "user__roles"},
		{"update users set status = 0 where uid = 3", "drupal", "UPDATE", "users"},
		{"UPDATE LOW_PRIORITY IGNORE `users_field_data` SET mail = 'x'", "drupal", "UPDATE", "users_field_data"},
		{"INSERT LOW_PRIORITY IGNORE INTO users (uid) VALUES (1)", "drupal", "INSERT", "users"},
		{"INSERT users (uid) VALUES (1)", "drupal", "INSERT", "users"},
		{"REPLACE DELAYED INTO `drupal`.`users` (uid) VALUES (1)", "other", "REPLACE", "users"},
		{"DELETE LOW_PRIORITY QUICK IGNORE FROM users WHERE uid = 1", "drupal", "DELETE", "users"},
		{"/* drush */ UPDATE users_field_data SET status = 1", "drupal", "UPDATE", "users_field_data"},
		{"/*!40000 UPDATE users_field_data SET status = 1 */", "drupal", "UPDATE", "users_field_data"},
		{"UPDATE drupal.users_field_data SET status = 1", "", "UPDATE", "users_field_data"},
		{"LOAD DATA LOCAL INFILE '/tmp/x' REPLACE INTO TABLE users_field_data", "drupal", "LOAD DATA", "users_field_data"},
		{"LOAD XML INFILE 'users.xml' INTO TABLE `users`", "drupal", "LOAD XML", "users"},
		// Multi-table forms: a table named among the tables counts.
		{"UPDATE users_data d, users_field_data f SET f.status = 0 WHERE f.uid = d.uid", "drupal", "UPDATE", "users_field_data"},
		{"UPDATE users_data d JOIN drupal.users u ON u.uid = d.uid SET d.value = 1", "other", "UPDATE", "users"},
		{"DELETE users, users_field_data FROM users JOIN users_field_data USING (uid) WHERE uid = 5", "drupal", "DELETE", "users"},
		{"DELETE FROM r USING user__roles r JOIN users_data d WHERE d.uid = r.entity_id", "drupal", "DELETE", "user__roles"},
		{"WITH x AS (SELECT 1) UPDATE users_field_data SET status = 0", "drupal", "WITH", "users_field_data"},
		// Writes to unwatched tables.
		{"UPDATE users_data SET value = 'users' WHERE uid = 1", "drupal", "UPDATE", ""},
		{"INSERT INTO watchdog (message) VALUES ('UPDATE users SET status = 0'), (\"users_field_data\")", "drupal", "INSERT", ""},
		{"INSERT INTO cache_entity SELECT * FROM users", "drupal", "INSERT", ""},
		{"INSERT INTO users_data (uid) SELECT uid FROM users_field_data ON DUPLICATE KEY UPDATE value = 1", "drupal", "INSERT", ""},
		{"DELETE FROM sessions WHERE uid IN (SELECT uid FROM users WHERE status = 0)", "drupal", "DELETE", ""},
		{"UPDATE key_value SET value = 1 WHERE name = 'users' -- users_field_data", "drupal", "UPDATE", ""},
		{"UPDATE config # users\n SET data = ''", "drupal", "UPDATE", ""},
		{"UPDATE `users_field_data_old` SET status = 0", "drupal", "UPDATE", ""},
		{"UPDATE old_users SET status = 0", "drupal", "UPDATE", ""},
		{"LOAD DATA INFILE 'users_field_data' INTO TABLE users_data", "drupal", "LOAD DATA", ""},
		// Another database's tables of the same names.
		{"UPDATE users SET status = 0", "other", "UPDATE", ""},
		{"UPDATE other.users SET status = 0", "drupal", "UPDATE", ""},
		{"INSERT INTO `other`.`users` (uid) VALUES (1)", "drupal", "INSERT", ""},
		// Not data-changing statements (DDL is handled elsewhere).
		{"CREATE TABLE users_copy SELECT * FROM users", "drupal", "", ""},
		{"ALTER TABLE users ADD COLUMN x INT", "drupal", "", ""},
		{"BEGIN", "drupal", "", ""},
	}
	for _, tt := range tests {
		verb, got := a.statementWrite(tt.def, []byte(tt.q))
		if got != tt.want || tt.want != "" && verb != tt.verb {
			t.Errorf("statementWrite(%q, default %q) = %q, %q; want %q, %q", tt.q, tt.def, verb, got, tt.verb, tt.want)
		}
	}
}

// TestAssembleStatementFormatWrite: a DML query event inside a
// transaction stops the assembly with ErrResyncNeeded naming the table
// and not the statement; one on an unwatched table is passed over.
func TestAssembleStatementFormatWrite(t *testing.T) {
	a, _ := testAssembler(t)
	b := &events{pos: 4}
	gtid := &replication.MariadbGTIDEvent{GTID: gomysql.MariadbGTID{DomainID: 0, ServerID: 1, SequenceNumber: 7}}
	ns := feed(t, a,
		b.add(replication.MARIADB_GTID_EVENT, 40, gtid),
		b.add(replication.QUERY_EVENT, 80, &replication.QueryEvent{Schema: []byte("drupal"), Query: []byte("INSERT INTO users_data VALUES (1, 'users')")}),
		b.add(replication.XID_EVENT, 31, &replication.XIDEvent{}))
	if len(ns) != 1 || len(ns[0].UIDs) != 0 {
		t.Fatalf("notices %s", describe(ns))
	}
	feed(t, a, b.add(replication.MARIADB_GTID_EVENT, 40, gtid))
	const stmt = "UPDATE users SET mail = 'secret@example.org' WHERE uid = 1"
	_, err := a.event(context.Background(), b.add(replication.QUERY_EVENT, 80,
		&replication.QueryEvent{Schema: []byte("drupal"), Query: []byte(stmt)}))
	if !errors.Is(err, ErrResyncNeeded) || !strings.Contains(err.Error(), "UPDATE of watched table users in STATEMENT format") {
		t.Fatalf("err = %v, want ErrResyncNeeded naming the UPDATE of users", err)
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "SET mail") {
		t.Fatalf("err %q quotes the statement", err)
	}
	if classify(err) == nil {
		t.Fatal("the stream would retry a statement-format write for ever")
	}
}

func TestLoadQuery(t *testing.T) {
	// An Execute_load_query event: header, post-header (db length 6,
	// status vars 3 bytes), status vars, "drupal\0", the statement and a
	// CRC32.
	post := make([]byte, 26)
	post[8] = 6
	binary.LittleEndian.PutUint16(post[11:], 3)
	raw := append(make([]byte, 19), post...)
	raw = append(raw, 0xAA, 0xBB, 0xCC)
	raw = append(raw, "drupal\x00LOAD DATA INFILE 'f' INTO TABLE users"...)
	raw = append(raw, 1, 2, 3, 4)
	schema, q, ok := loadQuery(raw, 26, true)
	if !ok || schema != "drupal" || string(q) != "LOAD DATA INFILE 'f' INTO TABLE users" {
		t.Fatalf("loadQuery = %q, %q, %v", schema, q, ok)
	}
	for _, cut := range []int{0, 10, 19 + 20, 19 + 26 + 2} {
		if _, _, ok := loadQuery(raw[:cut], 26, false); ok {
			t.Errorf("loadQuery of %d bytes succeeded", cut)
		}
	}
}
