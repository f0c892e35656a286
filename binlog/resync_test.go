package binlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

func TestMentionsTable(t *testing.T) {
	tests := []struct {
		query, table, def string
		want              bool
	}{
		{"truncate table users", "users", "drupal", true},
		{"truncate table `users`", "users", "drupal", true},
		{"truncate table drupal.users", "users", "other", true},
		{"truncate table `drupal`.`users`", "users", "other", true},
		{"drop table if exists `users_data`", "users", "drupal", false},
		{"drop table old_users", "users", "drupal", false},
		{"truncate table other.users", "users", "drupal", false},
		{"truncate table notdrupal.users", "users", "drupal", false},
		{"truncate table users", "users", "other", false}, // another database's users
		{"rename table user__roles to user__roles_old, roles_new to user__roles", "user__roles", "drupal", true},
		{"drop table `users_field_data`,`cache`", "users_field_data", "drupal", true},
	}
	for _, tt := range tests {
		if got := mentionsTable(tt.query, tt.table, tt.def, "drupal"); got != tt.want {
			t.Errorf("mentionsTable(%q, %q, default %q) = %v, want %v", tt.query, tt.table, tt.def, got, tt.want)
		}
	}
}

// TestTruncateOfAWatchedTableAsksForAResync: TRUNCATE logs no rows, so
// the stream cannot name the users it emptied; it must stop with
// ErrResyncNeeded instead of moving on past it. A TRUNCATE of a table it
// does not watch is none of its business.
func TestTruncateOfAWatchedTableAsksForAResync(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	start := f.pos(t)
	f.exec(t, "CREATE TABLE cache_users (id INT PRIMARY KEY)")
	f.exec(t, "TRUNCATE TABLE cache_users")
	if _, err := f.site.Create(ctx, drupaltest.User{Name: "after-unwatched"}); err != nil {
		t.Fatal(err)
	}
	f.exec(t, "TRUNCATE TABLE user__roles")

	ctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	var notices int
	err := f.s.Stream(ctx, start, func(_ context.Context, n Notice) error {
		notices += len(n.UIDs)
		return nil
	})
	if !errors.Is(err, ErrResyncNeeded) || !strings.Contains(err.Error(), "TRUNCATE of watched table user__roles") {
		t.Fatalf("Stream returned %v, want ErrResyncNeeded naming the TRUNCATE", err)
	}
	if notices == 0 {
		t.Fatal("the stream stopped at the unwatched TRUNCATE: the user created after it was never noticed")
	}
}

// TestUndecodableEventIsReportedWithoutItsData feeds the stream's own
// parser set-up a real users_field_data rows event cut short (as a decoder
// bug or an unknown column type would leave it): the error must ask for a
// resync, and must not quote the row, whose pass column holds a hash.
func TestUndecodableEventIsReportedWithoutItsData(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	start := f.pos(t)
	const hash = "$S$E5Bq8ysFC1HrTzKkS5RTkCFVGGRyNotAHashRealOne"
	if _, err := f.site.Create(ctx, drupaltest.User{Name: "leaky", Pass: hash, Mail: drupaltest.Str("leaky@example.org")}); err != nil {
		t.Fatal(err)
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: nextServerID(), Flavor: mysql.MariaDBFlavor, Host: "127.0.0.1",
		Port: uint16(f.s.syncerConfig(ctx, nil).Port), User: f.s.dsn.User, Password: f.s.dsn.Passwd,
	})
	defer syncer.Close()
	st, err := syncer.StartSync(mysql.Position{Name: start.File, Pos: start.Offset})
	if err != nil {
		t.Fatal(err)
	}
	var fde, tm, rows []byte
	gctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	for rows == nil {
		ev, err := st.GetEvent(gctx)
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.Event.(type) {
		case *replication.FormatDescriptionEvent:
			fde = ev.RawData
		case *replication.TableMapEvent:
			if string(e.Table) == "users_field_data" {
				tm = ev.RawData
			}
		case *replication.RowsEvent:
			if string(e.Table.Table) == "users_field_data" {
				rows = ev.RawData
			}
		}
	}
	if !bytes.Contains(rows, []byte(hash)) {
		t.Fatal("the rows event does not hold the hash: the test proves nothing")
	}
	asm := newAssembler(f.s.schema, f.s.cfg.Tables, f.s.names, f.s.cols, nil, zap.NewNop())
	p := replication.NewBinlogParser()
	p.SetFlavor(mysql.MariaDBFlavor)
	p.SetRowsEventDecodeFunc(asm.decodeRows)
	for _, raw := range [][]byte{fde, tm} {
		if _, err := p.Parse(raw); err != nil {
			t.Fatal(err)
		}
	}
	const cut = 20
	bad := append([]byte(nil), rows[:len(rows)-4-cut]...)
	bad = append(bad, rows[len(rows)-4:]...)
	binary.LittleEndian.PutUint32(bad[9:13], uint32(len(bad)))
	_, perr := p.Parse(bad)
	if perr == nil {
		t.Fatal("the cut event decoded")
	}
	if !strings.Contains(perr.Error(), hash) {
		t.Fatal("the library's own error does not quote the row: the test proves nothing")
	}
	after := Position{File: start.File, Offset: start.Offset}
	err = undecodable(&after, perr)
	if !errors.Is(err, ErrResyncNeeded) {
		t.Fatalf("undecodable = %v, want ErrResyncNeeded", err)
	}
	if strings.Contains(err.Error(), "S$E5Bq8") || !strings.Contains(err.Error(), "users_field_data") {
		t.Fatalf("error = %q: want the table named and no row data", err)
	}
	if undecodable(&after, errors.New("connection reset")) != nil {
		t.Fatal("a network error taken for an undecodable event")
	}
}
