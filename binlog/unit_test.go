package binlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestPosition(t *testing.T) {
	tests := []struct {
		pos    Position
		str    string
		isZero bool
	}{
		{Position{}, "(none)", true},
		{Position{File: "mariadb-bin.000003", Offset: 1547}, "mariadb-bin.000003:1547", false},
		{Position{File: "mariadb-bin.000003", Offset: 1547, GTID: "0-1-12"}, "mariadb-bin.000003:1547 gtid=0-1-12", false},
		{Position{GTID: "0-1-12,1-2-3"}, "gtid=0-1-12,1-2-3", false},
	}
	for _, tt := range tests {
		if got := tt.pos.String(); got != tt.str {
			t.Errorf("%#v.String() = %q, want %q", tt.pos, got, tt.str)
		}
		if got := tt.pos.IsZero(); got != tt.isZero {
			t.Errorf("%#v.IsZero() = %v", tt.pos, got)
		}
	}
	b, err := json.Marshal(Position{File: "f.000001", Offset: 4})
	if err != nil || string(b) != `{"file":"f.000001","pos":4}` {
		t.Errorf("JSON = %s, %v", b, err)
	}
}

func TestClassifyQuery(t *testing.T) {
	tests := []struct {
		q    string
		want queryKind
	}{
		{"BEGIN", queryBegin},
		{"begin", queryBegin},
		{"XA START X'31'", queryBegin},
		{"COMMIT", queryEnd},
		{" COMMIT /* implicit */", queryEnd},
		{"ROLLBACK", queryEnd},
		{"XA PREPARE X'31'", queryEnd},
		{"XA COMMIT X'31'", queryEnd},
		{"XA ROLLBACK X'31'", queryEnd},
		{"XA END X'31'", queryInside},
		{"SAVEPOINT `sp1`", queryInside},
		{"ROLLBACK TO SAVEPOINT `sp1`", queryInside},
		{"RELEASE SAVEPOINT `sp1`", queryInside},
		{"ALTER TABLE users_field_data ADD COLUMN x INT FIRST", queryOther},
		{"/* comment */ CREATE TABLE t (a int)", queryOther},
		{"COMMITTED_TABLE_DROP", queryOther},
		{"", queryOther},
		{"`weird`", queryOther},
	}
	for _, tt := range tests {
		if got := classifyQuery([]byte(tt.q)); got != tt.want {
			t.Errorf("classifyQuery(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestToUint32(t *testing.T) {
	tests := []struct {
		v       any
		colType byte
		want    uint32
		wantErr bool
	}{
		{uint32(7), gomysql.MYSQL_TYPE_LONG, 7, false},
		{int32(7), gomysql.MYSQL_TYPE_LONG, 7, false},
		{int32(-1294967296), gomysql.MYSQL_TYPE_LONG, 3_000_000_000, false}, // unsigned without metadata
		{int32(-1), gomysql.MYSQL_TYPE_LONG, math.MaxUint32, false},
		{int32(-1), gomysql.MYSQL_TYPE_INT24, 1<<24 - 1, false},
		{int8(-1), gomysql.MYSQL_TYPE_TINY, 255, false},
		{int16(-1), gomysql.MYSQL_TYPE_SHORT, 65535, false},
		{uint8(9), gomysql.MYSQL_TYPE_TINY, 9, false},
		{uint16(9), gomysql.MYSQL_TYPE_SHORT, 9, false},
		{int64(3_000_000_000), gomysql.MYSQL_TYPE_LONGLONG, 3_000_000_000, false},
		{int64(-1), gomysql.MYSQL_TYPE_LONGLONG, 0, true},
		{int64(1 << 40), gomysql.MYSQL_TYPE_LONGLONG, 0, true},
		{uint64(1 << 40), gomysql.MYSQL_TYPE_LONGLONG, 0, true},
		{uint64(5), gomysql.MYSQL_TYPE_LONGLONG, 5, false},
		{"42", gomysql.MYSQL_TYPE_VARCHAR, 42, false},
		{[]byte("42"), gomysql.MYSQL_TYPE_VARCHAR, 42, false},
		{"x", gomysql.MYSQL_TYPE_VARCHAR, 0, true},
		{1.5, gomysql.MYSQL_TYPE_DOUBLE, 0, true},
	}
	for _, tt := range tests {
		got, err := toUint32(tt.v, tt.colType)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("toUint32(%T %v) = %d, %v; want %d, error %v", tt.v, tt.v, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestProjectionIsExact(t *testing.T) {
	rows := [][]any{
		{"ab", "c"}, {"a", "bc"}, {nil, "c"}, {"", "c"}, {int32(1), "c"}, {uint32(1), "c"},
		{int64(1), "c"}, {"1", "c"}, {[]byte("ab"), "d"}, {1.0, "c"}, {float32(2), "c"},
	}
	seen := map[string]int{}
	for i, row := range rows {
		k := string(appendProjection(nil, row, []int{0, 1}))
		if j, dup := seen[k]; dup && !(j == 4 && i == 6) { // int32(1) and int64(1) are the same number
			t.Errorf("rows %v and %v project the same", rows[j], row)
		}
		seen[k] = i
	}
	if a, b := appendProjection(nil, []any{"x", 1}, []int{0}), appendProjection(nil, []any{"x", 2}, []int{0}); string(a) != string(b) {
		t.Error("columns outside the projection changed it")
	}
	if a, b := appendProjection(nil, []any{"ab"}, []int{0}), appendProjection(nil, []any{[]byte("ab")}, []int{0}); string(a) != string(b) {
		t.Error("string and []byte of the same text project differently")
	}
}

func TestOpenValidates(t *testing.T) {
	// No case reaches the network: each is refused before connecting.
	ok := Config{DSN: "agent:pw@tcp(127.0.0.1:1)/drupal", ServerID: 7, Tables: drupalTables("", nil)}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"bad DSN", func(c *Config) { c.DSN = "nonsense(" }, "DSN"},
		{"no database", func(c *Config) { c.DSN = "agent:pw@tcp(127.0.0.1:1)/" }, "database"},
		{"server id 0", func(c *Config) { c.ServerID = 0 }, "server id"},
		{"no tables", func(c *Config) { c.Tables = nil }, "no table"},
		{"table without name", func(c *Config) { c.Tables = []Table{{KeyColumn: "uid"}} }, "no name"},
		{"table without key", func(c *Config) { c.Tables = []Table{{Name: "users"}} }, "key column"},
		{"table twice", func(c *Config) { c.Tables = append(c.Tables, c.Tables[0]) }, "twice"},
		{"heartbeat", func(c *Config) { c.Heartbeat = time.Nanosecond }, "heartbeat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Tables = slices.Clone(ok.Tables)
			tt.change(&cfg)
			_, err := Open(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v, want an error about %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	handlerErr := errors.New("handler")
	tests := []struct {
		err    error
		purged bool
		final  bool
	}{
		{&gomysql.MyError{Code: 1236, Message: "Could not find first log file name in binary log index file"}, true, true},
		{fmt.Errorf("wrapped: %w", &gomysql.MyError{Code: 1955, Message: "gtid"}), true, true},
		{&gomysql.MyError{Code: 1789, Message: "purged gtids"}, true, true},
		{&gomysql.MyError{Code: 1045, Message: "Access denied"}, false, true},
		{&gomysql.MyError{Code: 1227, Message: "need REPLICATION SLAVE"}, false, true},
		{&gomysql.MyError{Code: 1927, Message: "Connection was killed"}, false, false},
		{&gomysql.MyError{Code: 1053, Message: "Server shutdown in progress"}, false, false},
		{errors.New("io.ReadFull(header) failed. err EOF"), false, false},
		{&handlerError{handlerErr}, false, true},
		{fmt.Errorf("x: %w", ErrUnknownColumns), false, true},
		{&permanentError{errors.New("bad gtid")}, false, true},
	}
	for _, tt := range tests {
		got := classify(tt.err)
		if (got != nil) != tt.final || errors.Is(got, ErrPositionPurged) != tt.purged {
			t.Errorf("classify(%v) = %v; want final %v, purged %v", tt.err, got, tt.final, tt.purged)
		}
	}
}

// The assembler is exercised below with hand-made events for what MariaDB
// cannot produce here: MySQL's event groups, and corner cases.

type fakeColumns struct{}

func (fakeColumns) columns(context.Context, string) ([]columnInfo, error) {
	return nil, fmt.Errorf("%w: no names in this test", ErrUnknownColumns)
}
func (fakeColumns) forget(string) {}

// events builds a binlog event sequence with consecutive positions.
type events struct{ pos uint32 }

func (b *events) add(typ replication.EventType, size uint32, e replication.Event) *replication.BinlogEvent {
	b.pos += size
	return &replication.BinlogEvent{
		Header: &replication.EventHeader{EventType: typ, LogPos: b.pos, EventSize: size, Timestamp: 1_700_000_000, ServerID: 1},
		Event:  e,
	}
}

func tableMap(table string, cols ...string) *replication.TableMapEvent {
	tm := &replication.TableMapEvent{Schema: []byte("drupal"), Table: []byte(table), ColumnCount: uint64(len(cols))}
	for _, c := range cols {
		tm.ColumnName = append(tm.ColumnName, []byte(c))
		typ := byte(gomysql.MYSQL_TYPE_VARCHAR)
		if c == "uid" || c == "entity_id" {
			typ = gomysql.MYSQL_TYPE_LONG
		}
		tm.ColumnType = append(tm.ColumnType, typ)
	}
	return tm
}

var (
	usersTM     = tableMap("users", "uid", "uuid", "langcode")
	fieldDataTM = tableMap("users_field_data", "uid", "langcode", "name", "mail", "login", "access", "default_langcode")
	otherTM     = tableMap("users_data", "uid", "module", "name")
)

func testAssembler(t testing.TB) (*assembler, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	a := newAssembler("drupal", []Table{
		{Name: "users", KeyColumn: "uid"},
		{Name: "users_field_data", KeyColumn: "uid", Columns: []string{"uid", "langcode", "name", "mail", "default_langcode"}},
	}, nameRule{}, fakeColumns{}, nil, zap.New(core))
	a.file = "binlog.000001"
	return a, logs
}

func fdRow(uid uint32, lang, mail string, login int32) []any {
	return []any{uid, lang, "name" + fmt.Sprint(uid), mail, login, login, int8(1)}
}

// feed runs evs through a and returns the notices.
func feed(t testing.TB, a *assembler, evs ...*replication.BinlogEvent) []Notice {
	t.Helper()
	var out []Notice
	for _, ev := range evs {
		n, err := a.event(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		if n != nil {
			out = append(out, *n)
		}
	}
	return out
}

func rowsEv(b *events, typ replication.EventType, tm *replication.TableMapEvent, rows ...[]any) *replication.BinlogEvent {
	return b.add(typ, 100, &replication.RowsEvent{Table: tm, Rows: rows})
}

func TestAssembleMySQLGroups(t *testing.T) {
	a, _ := testAssembler(t)
	const sid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	var err error
	if a.gset, err = gomysql.ParseGTIDSet(gomysql.MySQLFlavor, sid+":1-5"); err != nil {
		t.Fatal(err)
	}
	sidBytes := []byte{0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62}
	b := &events{pos: 1000}
	gtid := func(gno int64, length uint64) *replication.BinlogEvent {
		ev := b.add(replication.GTID_EVENT, 79, &replication.GTIDEvent{SID: sidBytes, GNO: gno})
		ev.Event.(*replication.GTIDEvent).TransactionLength = length
		return ev
	}
	q := func(s string) *replication.BinlogEvent {
		return b.add(replication.QUERY_EVENT, 50, &replication.QueryEvent{Schema: []byte("drupal"), Query: []byte(s)})
	}
	xid := func() *replication.BinlogEvent {
		return b.add(replication.XID_EVENT, 31, &replication.XIDEvent{XID: 1})
	}

	var got []Notice
	// A transaction: GTID, BEGIN, rows, XID (length unknown: before 8.0.2).
	got = append(got, feed(t, a, gtid(6, 0), q("BEGIN"),
		rowsEv(b, replication.WRITE_ROWS_EVENTv2, usersTM, []any{uint32(5), "uuid-5", "en"}), xid())...)
	end1 := b.pos
	// DDL: GTID and one query.
	got = append(got, feed(t, a, gtid(7, 0), q("ALTER TABLE users ADD x INT"))...)
	end2 := b.pos
	// CREATE TABLE ... SELECT in one group: the length says the query is
	// not the end.
	start := b.pos
	evs := []*replication.BinlogEvent{gtid(8, 0), q("CREATE TABLE t SELECT * FROM users"),
		rowsEv(b, replication.WRITE_ROWS_EVENTv2, otherTM, []any{uint32(1), "m", "n"}), xid()}
	evs[0].Event.(*replication.GTIDEvent).TransactionLength = uint64(b.pos - start)
	got = append(got, feed(t, a, evs...)...)
	end3 := b.pos
	// Anonymous group on a server without GTIDs.
	got = append(got, feed(t, a, b.add(replication.ANONYMOUS_GTID_EVENT, 79, &replication.GTIDEvent{}), q("BEGIN"),
		rowsEv(b, replication.DELETE_ROWS_EVENTv2, usersTM, []any{uint32(5), "uuid-5", "en"}), xid())...)
	end4 := b.pos

	want := []struct {
		end  uint32
		gtid string
		uids []uint32
	}{
		{end1, sid + ":1-6", []uint32{5}},
		{end2, sid + ":1-7", nil},
		{end3, sid + ":1-8", nil},
		{end4, sid + ":1-8", []uint32{5}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d notices, want %d:%s", len(got), len(want), describe(got))
	}
	for i, w := range want {
		n := got[i]
		if n.Pos.Offset != w.end || n.Pos.GTID != w.gtid || !slices.Equal(n.UIDs, w.uids) || n.Pos.File != "binlog.000001" {
			t.Errorf("notice %d = %s %v, want offset %d gtid %s uids %v", i, n.Pos, n.UIDs, w.end, w.gtid, w.uids)
		}
	}
}

func TestAssembleMariaDBGroups(t *testing.T) {
	a, logs := testAssembler(t)
	a.gset, _ = gomysql.ParseGTIDSet(gomysql.MariaDBFlavor, "0-1-10,1-1-3")
	b := &events{pos: 4}
	gtid := func(domain uint32, seq uint64, flags byte) *replication.BinlogEvent {
		return b.add(replication.MARIADB_GTID_EVENT, 42, &replication.MariadbGTIDEvent{
			GTID: gomysql.MariadbGTID{DomainID: domain, ServerID: 1, SequenceNumber: seq}, Flags: flags})
	}
	q := func(s string) *replication.BinlogEvent {
		return b.add(replication.QUERY_EVENT, 50, &replication.QueryEvent{Schema: []byte("drupal"), Query: []byte(s)})
	}
	xid := func() *replication.BinlogEvent {
		return b.add(replication.XID_EVENT, 31, &replication.XIDEvent{XID: 1})
	}
	const standalone = replication.BINLOG_MARIADB_FL_STANDALONE

	type want struct {
		end  uint32
		gtid string
		uids []uint32
	}
	var wants []want
	var got []Notice
	// Savepoints stay inside the transaction.
	got = append(got, feed(t, a, gtid(0, 11, 0), rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(1), "u1", "en"}),
		q("SAVEPOINT `s`"), rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(2), "u2", "en"}),
		q("ROLLBACK TO SAVEPOINT `s`"), xid())...)
	wants = append(wants, want{b.pos, "0-1-11,1-1-3", []uint32{1, 2}})
	// Non-transactional table: ends with COMMIT.
	got = append(got, feed(t, a, gtid(1, 4, 0), rowsEv(b, replication.WRITE_ROWS_EVENTv1, otherTM, []any{uint32(1), "m", "n"}), q("COMMIT"))...)
	wants = append(wants, want{b.pos, "0-1-11,1-1-4", nil})
	// Standalone DDL.
	got = append(got, feed(t, a, gtid(0, 12, standalone), q("TRUNCATE users_data"))...)
	wants = append(wants, want{b.pos, "0-1-12,1-1-4", nil})
	// A mixed transaction rolled back (non-transactional changes kept).
	got = append(got, feed(t, a, gtid(0, 13, 0), rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(3), "u3", "en"}), q("ROLLBACK"))...)
	wants = append(wants, want{b.pos, "0-1-13,1-1-4", []uint32{3}})
	// XA: the prepare ends the group, the commit is its own group.
	got = append(got, feed(t, a, gtid(0, 14, 0), q("XA START X'31'"), rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(4), "u4", "en"}),
		q("XA END X'31'"), q("XA PREPARE X'31'"))...)
	wants = append(wants, want{b.pos, "0-1-14,1-1-4", []uint32{4}})
	got = append(got, feed(t, a, gtid(0, 15, standalone), q("XA COMMIT X'31'"))...)
	wants = append(wants, want{b.pos, "0-1-15,1-1-4", nil})
	// A group whose end never came: delivered when the next one starts,
	// ending where it starts.
	got = append(got, feed(t, a, gtid(0, 16, 0), rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(6), "u6", "en"}))...)
	wants = append(wants, want{b.pos, "0-1-16,1-1-4", []uint32{6}})
	got = append(got, feed(t, a, gtid(0, 17, 0), xid())...)
	wants = append(wants, want{b.pos, "0-1-17,1-1-4", nil})

	if len(got) != len(wants) {
		t.Fatalf("%d notices, want %d:%s", len(got), len(wants), describe(got))
	}
	for i, w := range wants {
		n := got[i]
		if n.Pos.Offset != w.end || n.Pos.GTID != w.gtid || !slices.Equal(n.UIDs, w.uids) {
			t.Errorf("notice %d = %s %v, want offset %d gtid %s uids %v", i, n.Pos, n.UIDs, w.end, w.gtid, w.uids)
		}
	}
	if logs.FilterMessage(MsgUnterminated).Len() != 1 {
		t.Errorf("want one %q log", MsgUnterminated)
	}
}

func TestAssembleRowRules(t *testing.T) {
	tests := []struct {
		name string
		rows func(b *events) []*replication.BinlogEvent
		uids []uint32
	}{
		{"save rewriting the same values", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{
				rowsEv(b, replication.DELETE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 5), fdRow(1, "de", "a@x", 5)),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 9)),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "de", "a@x", 9)),
			}
		}, nil},
		{"save changing one translation's mail", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{
				rowsEv(b, replication.DELETE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 5), fdRow(1, "de", "a@x", 5)),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 5), fdRow(1, "de", "b@x", 5)),
			}
		}, []uint32{1}},
		{"translation removed", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{
				rowsEv(b, replication.DELETE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 5), fdRow(1, "de", "a@x", 5)),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 5)),
			}
		}, []uint32{1}},
		{"login updates", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{rowsEv(b, replication.UPDATE_ROWS_EVENTv1, fieldDataTM,
				fdRow(1, "en", "a@x", 5), fdRow(1, "en", "a@x", 6), fdRow(1, "de", "a@x", 5), fdRow(1, "de", "a@x", 6))}
		}, nil},
		{"update of a mapped column", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{rowsEv(b, replication.UPDATE_ROWS_EVENTv1, fieldDataTM,
				fdRow(1, "en", "a@x", 5), fdRow(1, "en", "b@x", 5))}
		}, []uint32{1}},
		{"update moving a row to another uid", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{rowsEv(b, replication.UPDATE_ROWS_EVENTv1, fieldDataTM,
				fdRow(1, "en", "a@x", 5), fdRow(2, "en", "a@x", 5))}
		}, []uint32{1, 2}},
		{"NULL key ignored", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{nil, "u", "en"})}
		}, nil},
		{"account deleted", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{rowsEv(b, replication.DELETE_ROWS_EVENTv1, usersTM, []any{uint32(3), "uuid-3", "en"})}
		}, []uint32{3}},
		{"account deleted and inserted again", func(b *events) []*replication.BinlogEvent {
			return []*replication.BinlogEvent{
				rowsEv(b, replication.DELETE_ROWS_EVENTv1, usersTM, []any{uint32(3), "uuid-3", "en"}),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, usersTM, []any{uint32(3), "uuid-3", "en"}),
			}
		}, []uint32{3}},
		{"unwatched table", func(b *events) []*replication.BinlogEvent {
			// A table not watched has its rows left undecoded (nil).
			return []*replication.BinlogEvent{b.add(replication.WRITE_ROWS_EVENTv1, 100, &replication.RowsEvent{Table: otherTM})}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := testAssembler(t)
			b := &events{pos: 4}
			evs := append([]*replication.BinlogEvent{b.add(replication.MARIADB_GTID_EVENT, 42, &replication.MariadbGTIDEvent{})}, tt.rows(b)...)
			evs = append(evs, b.add(replication.XID_EVENT, 31, &replication.XIDEvent{}))
			got := feed(t, a, evs...)
			if len(got) != 1 {
				t.Fatalf("%d notices:%s", len(got), describe(got))
			}
			if !slices.Equal(got[0].UIDs, tt.uids) {
				t.Errorf("uids %v, want %v", got[0].UIDs, tt.uids)
			}
		})
	}
}

func TestAssembleBalancesRowsPerTable(t *testing.T) {
	core, _ := observer.New(zap.DebugLevel)
	a := newAssembler("drupal", []Table{
		{Name: "user__field_a", KeyColumn: "entity_id", Columns: []string{"entity_id", "value"}},
		{Name: "user__field_b", KeyColumn: "entity_id", Columns: []string{"entity_id", "value"}},
	}, nameRule{}, fakeColumns{}, nil, zap.New(core))
	a.file = "binlog.000001"
	fieldA, fieldB := tableMap("user__field_a", "entity_id", "value"), tableMap("user__field_b", "entity_id", "value")
	b := &events{pos: 4}
	// The value moves from one field to the other: the user changed, though
	// the rows deleted and inserted look alike.
	got := feed(t, a,
		b.add(replication.MARIADB_GTID_EVENT, 42, &replication.MariadbGTIDEvent{}),
		rowsEv(b, replication.DELETE_ROWS_EVENTv1, fieldA, []any{uint32(7), "x"}),
		rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldB, []any{uint32(7), "x"}),
		b.add(replication.XID_EVENT, 31, &replication.XIDEvent{}))
	if len(got) != 1 || !slices.Equal(got[0].UIDs, []uint32{7}) {
		t.Fatalf("notices:%s; want uid 7 touched", describe(got))
	}
}

func TestAssembleBoundsBufferedRows(t *testing.T) {
	for _, n := range []int{maxBufferedRows / 2, maxBufferedRows + 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, _ := testAssembler(t)
			b := &events{pos: 4}
			var del, ins [][]any
			for uid := range uint32(n) {
				del = append(del, fdRow(uid+1, "en", "a@x", 1))
				ins = append(ins, fdRow(uid+1, "en", "a@x", 2))
			}
			got := feed(t, a,
				b.add(replication.MARIADB_GTID_EVENT, 42, &replication.MariadbGTIDEvent{}),
				rowsEv(b, replication.DELETE_ROWS_EVENTv1, fieldDataTM, del...),
				rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, ins...),
				b.add(replication.XID_EVENT, 31, &replication.XIDEvent{}))
			if len(got) != 1 {
				t.Fatalf("%d notices", len(got))
			}
			if n <= maxBufferedRows {
				if len(got[0].UIDs) != 0 {
					t.Errorf("%d uids for an unchanged rewrite of %d rows", len(got[0].UIDs), n)
				}
			} else if len(got[0].UIDs) != n {
				t.Errorf("%d uids past the bound, want all %d", len(got[0].UIDs), n)
			}
			if a.tx.balance != nil || a.tx.buffered != 0 {
				t.Error("transaction state kept after commit")
			}
		})
	}
}

func TestAssembleUnknownColumn(t *testing.T) {
	a := newAssembler("drupal", []Table{{Name: "users_field_data", KeyColumn: "uid", Columns: []string{"uid", "nope"}}},
		nameRule{}, fakeColumns{}, nil, zap.NewNop())
	b := &events{pos: 4}
	_, err := a.event(context.Background(), rowsEv(b, replication.WRITE_ROWS_EVENTv1, fieldDataTM, fdRow(1, "en", "a@x", 1)))
	if !errors.Is(err, ErrUnknownColumns) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err = %v, want ErrUnknownColumns naming the column", err)
	}
	// Without names in the event and none from information_schema.
	noNames := tableMap("users_field_data", "uid", "langcode", "name", "mail", "login", "access", "default_langcode")
	noNames.ColumnName = nil
	a = newAssembler("drupal", []Table{{Name: "users_field_data", KeyColumn: "uid"}}, nameRule{}, fakeColumns{}, nil, zap.NewNop())
	if _, err := a.event(context.Background(), rowsEv(b, replication.WRITE_ROWS_EVENTv1, noNames, fdRow(1, "en", "a@x", 1))); !errors.Is(err, ErrUnknownColumns) {
		t.Errorf("err = %v, want ErrUnknownColumns", err)
	}
}

func TestDriverLogsGoToZapAtDebug(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	h := &slogToZap{log: zap.New(core)}
	l := slog.New(h).With("conn", 7)
	l.Error("kill connection", slog.Any("error", errors.New("boom")), slog.Any("config", struct{ Password string }{"secret"}))
	entries := logs.FilterMessage(MsgDriver).All()
	if len(entries) != 1 || entries[0].Level != zap.DebugLevel {
		t.Fatalf("entries = %v", entries)
	}
	m := entries[0].ContextMap()
	driver, _ := m["driver"].(map[string]any)
	if m["detail"] != "kill connection" || m["driver_level"] != "ERROR" || driver["error"] != "boom" || driver["conn"] != "7" {
		t.Errorf("fields = %v", m)
	}
	if _, ok := driver["config"]; ok {
		t.Errorf("the driver's config dump was logged: %v", m)
	}
	if _, ok := m["level"]; ok {
		t.Errorf("a second level key: %v", m)
	}
	quiet := &slogToZap{log: zap.NewNop()}
	if quiet.Enabled(context.Background(), slog.LevelError) {
		t.Error("enabled with a no-op logger")
	}
}

func TestDecodeErrorHoldsNoRowData(t *testing.T) {
	hash := "$S$E5Bq8ysFC1HrTzKkS5RTkCFVGGRyNotAHashRealOne"
	tests := []struct {
		name string
		err  error
		want string
	}{
		// What go-mysql returns when decoding panics: the raw event and the
		// rows parsed so far, password hash included.
		{"panic", fmt.Errorf("parse rows event panic runtime error: index out of range [3] with length 3, data %q, parsed rows %#v",
			"\x01\x02"+hash, []any{int64(7), hash}), "binlog: decode a rows event of table users_field_data: parse rows event panic runtime error: index out of range [3] with length 3"},
		{"plain", errors.New("invalid blob packlen = 9"), "binlog: decode a rows event of table users_field_data: invalid blob packlen = 9"},
		{"long", errors.New(strings.Repeat("x", 500)), "binlog: decode a rows event of table users_field_data: " + strings.Repeat("x", 200) + "..."},
	}
	for _, tt := range tests {
		got := decodeError("users_field_data", tt.err).Error()
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
		if strings.Contains(got, hash) {
			t.Errorf("%s: the error holds the password hash", tt.name)
		}
	}
}

func TestSameColumns(t *testing.T) {
	base := func() *replication.TableMapEvent {
		tm := tableMap("users_field_data", "uid", "langcode", "mail")
		tm.TableID = 42
		return tm
	}
	tests := []struct {
		name   string
		change func(a, b *replication.TableMapEvent) // a: the plan's map, b: the next one
		want   bool
	}{
		{"the next transaction's map of the table", func(_, _ *replication.TableMapEvent) {}, true},
		{"another table id (reopened after an ALTER)", func(_, tm *replication.TableMapEvent) { tm.TableID = 43 }, false},
		{"a column renamed", func(_, tm *replication.TableMapEvent) { tm.ColumnName[2] = []byte("init") }, false},
		{"a column's type changed", func(_, tm *replication.TableMapEvent) { tm.ColumnType[2] = gomysql.MYSQL_TYPE_BLOB }, false},
		{"a column's metadata changed", func(_, tm *replication.TableMapEvent) { tm.ColumnMeta = []uint16{0, 0, 255} }, false},
		{"a column added", func(_, tm *replication.TableMapEvent) {
			tm.ColumnCount++
			tm.ColumnName = append(tm.ColumnName, []byte("status"))
			tm.ColumnType = append(tm.ColumnType, gomysql.MYSQL_TYPE_TINY)
		}, false},
		{"no names in the events (metadata not FULL)", func(a, b *replication.TableMapEvent) { a.ColumnName, b.ColumnName = nil, nil }, false},
		{"another table", func(_, tm *replication.TableMapEvent) { tm.Table = []byte("users") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.change(a, b)
			if got := sameColumns(a, b); got != tt.want {
				t.Fatalf("sameColumns = %v, want %v", got, tt.want)
			}
		})
	}
}
