package binlog

import (
	"context"
	"errors"
	"slices"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// TestSchemaChangeKeepingTheColumnCount: without column names in the
// binlog, an ALTER TABLE that drops one column and adds another keeps
// the count the table-map event is checked against, and today's names
// shifted onto an older event read the wrong columns: a block (status
// 1 → 0) written before the ALTER would be read as a change of nothing
// mapped, and dropped. The stream must see that the columns' types
// disagree and say the columns are unknown.
func TestSchemaChangeKeepingTheColumnCount(t *testing.T) {
	for _, metadata := range []string{"MINIMAL", "NO_LOG"} {
		t.Run(metadata, func(t *testing.T) {
			ctx := context.Background()
			srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=" + metadata}})
			db, err := srv.NewDatabase(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			f := newFixtureOn(t, db, mappedColumns, nil)
			uid, err := f.site.Create(ctx, drupaltest.User{Name: "shifted", Mail: drupaltest.Str("s@example.org"), Status: 1})
			if err != nil {
				t.Fatal(err)
			}
			start := f.pos(t)
			if err := f.site.Update(ctx, uid, func(u *drupaltest.User) { u.Status = 0 }); err != nil {
				t.Fatal(err)
			}
			f.exec(t, "ALTER TABLE users_field_data DROP COLUMN preferred_admin_langcode, ADD COLUMN x varchar(12) NULL")

			r := f.stream(t, start, nil)
			select {
			case n := <-r.notices:
				if !slices.Contains(n.UIDs, uid) {
					t.Fatalf("the block written before the ALTER was read with shifted columns and dropped: notice %+v", n)
				}
				t.Fatalf("notice %+v: the columns were guessed, want ErrUnknownColumns", n)
			case <-r.done:
				if !errors.Is(r.err, ErrUnknownColumns) {
					t.Fatalf("Stream returned %v, want ErrUnknownColumns", r.err)
				}
				t.Logf("Stream returned %v", r.err)
			}
		})
	}
}

// allTypes is a table with a column of every type MariaDB has, for
// TestEveryColumnTypeMatchesItsTableMap.
const allTypes = `CREATE TABLE alltypes (
 uid int unsigned NOT NULL PRIMARY KEY,
 c_tiny tinyint, c_small smallint, c_medium mediumint, c_int int, c_big bigint unsigned, c_bool boolean,
 c_float float, c_double double, c_dec decimal(10,2), c_dec2 decimal(30,10), c_num numeric(5),
 c_date date, c_dt datetime, c_dt6 datetime(6), c_ts timestamp NULL, c_ts3 timestamp(3) NULL,
 c_time time, c_time2 time(2), c_year year,
 c_char char(10), c_char_ascii char(10) CHARACTER SET ascii, c_char100 char(100), c_char255 char(255), c_bin binary(16),
 c_vc varchar(32), c_vc_ascii varchar(12) CHARACTER SET ascii, c_vc300 varchar(300), c_vbin varbinary(20), c_vc_latin varchar(40) CHARACTER SET latin1,
 c_tt tinytext, c_t text, c_mt mediumtext, c_lt longtext, c_tb tinyblob, c_b blob, c_mb mediumblob, c_lb longblob,
 c_enum enum('a','b'), c_set set('x','y'), c_bit bit(5), c_bit64 bit(64), c_json json,
 c_geo geometry NULL, c_point point NULL, c_poly polygon NULL,
 c_uuid uuid, c_inet6 inet6, c_inet4 inet4, c_serial serial
)`

// TestEveryColumnTypeMatchesItsTableMap: the type comparison must never
// reject an event written with today's schema, or every event of the
// table would cost a full sync, for ever. A table with every column type
// MariaDB has, read without names in the binlog, must decode.
func TestEveryColumnTypeMatchesItsTableMap(t *testing.T) {
	for _, metadata := range []string{"MINIMAL", "NO_LOG"} {
		t.Run(metadata, func(t *testing.T) {
			ctx := context.Background()
			srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=" + metadata}})
			db, err := srv.NewDatabase(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			f := newFixtureOn(t, db, mappedColumns, func(c *Config) {
				c.Tables = append(c.Tables, Table{Name: "alltypes", KeyColumn: "uid", Columns: []string{"uid", "c_vc", "c_json"}})
			})
			f.exec(t, allTypes)
			r := f.stream(t, f.pos(t), nil)
			r.expect(t, f.exec(t, "INSERT INTO alltypes (uid, c_vc) VALUES (7, 'x')"), 7)
			r.expect(t, f.exec(t, "UPDATE alltypes SET c_vc = 'y' WHERE uid = 7"), 7)
			r.expect(t, f.exec(t, "UPDATE alltypes SET c_int = 5 WHERE uid = 7"))
			// And after an ALTER that changes types, the events written after
			// it still decode.
			f.exec(t, "ALTER TABLE alltypes MODIFY c_vc varchar(64), DROP COLUMN c_tiny, ADD COLUMN c_new char(3) FIRST")
			r.next(t) // the ALTER
			r.expect(t, f.exec(t, "UPDATE alltypes SET c_vc = 'z' WHERE uid = 7"), 7)
		})
	}
}

func TestColumnTypeMatches(t *testing.T) {
	col := func(dataType, columnType string, octets, prec, scale, fsp int64) columnInfo {
		return columnInfo{Name: "c", DataType: dataType, ColumnType: columnType, OctetLength: octets, Precision: prec, Scale: scale, FSP: fsp}
	}
	tests := []struct {
		col   columnInfo
		typ   byte
		meta  uint16
		match bool
	}{
		{col("varchar", "varchar(60)", 240, -1, -1, -1), gomysql.MYSQL_TYPE_VARCHAR, 240, true},
		{col("varchar", "varchar(60)", 240, -1, -1, -1), gomysql.MYSQL_TYPE_VARCHAR, 48, false},
		{col("varchar", "varchar(60)", 240, -1, -1, -1), gomysql.MYSQL_TYPE_VAR_STRING, 240, true},
		{col("varchar", "varchar(60)", 240, -1, -1, -1), gomysql.MYSQL_TYPE_TINY, 0, false},
		{col("tinyint", "tinyint(4)", -1, 3, 0, -1), gomysql.MYSQL_TYPE_TINY, 0, true},
		{col("tinyint", "tinyint(4)", -1, 3, 0, -1), gomysql.MYSQL_TYPE_VARCHAR, 128, false},
		{col("int", "int(10) unsigned", -1, 10, 0, -1), gomysql.MYSQL_TYPE_LONG, 0, true},
		{col("int", "int(10) unsigned", -1, 10, 0, -1), gomysql.MYSQL_TYPE_LONGLONG, 0, false},
		{col("char", "char(100)", 400, -1, -1, -1), gomysql.MYSQL_TYPE_STRING, 0xee90, true},
		{col("char", "char(100)", 400, -1, -1, -1), gomysql.MYSQL_TYPE_STRING, 0xfe28, false},
		{col("enum", "enum('a','b')", 4, -1, -1, -1), gomysql.MYSQL_TYPE_STRING, 0xf701, true},
		{col("enum", "enum('a','b')", 4, -1, -1, -1), gomysql.MYSQL_TYPE_STRING, 0xf801, false},
		{col("set", "set('x')", 4, -1, -1, -1), gomysql.MYSQL_TYPE_STRING, 0xf801, true},
		{col("longtext", "longtext", 4294967295, -1, -1, -1), gomysql.MYSQL_TYPE_BLOB, 4, true},
		{col("longtext", "longtext", 4294967295, -1, -1, -1), gomysql.MYSQL_TYPE_BLOB, 2, false},
		{col("blob", "blob", 65535, -1, -1, -1), gomysql.MYSQL_TYPE_BLOB, 2, true},
		{col("json", "json", -1, -1, -1, -1), gomysql.MYSQL_TYPE_JSON, 4, true},
		{col("decimal", "decimal(10,2)", -1, 10, 2, -1), gomysql.MYSQL_TYPE_NEWDECIMAL, 0x0a02, true},
		{col("decimal", "decimal(10,2)", -1, 10, 2, -1), gomysql.MYSQL_TYPE_NEWDECIMAL, 0x0a03, false},
		{col("datetime", "datetime(6)", -1, -1, -1, 6), gomysql.MYSQL_TYPE_DATETIME2, 6, true},
		{col("datetime", "datetime(6)", -1, -1, -1, 6), gomysql.MYSQL_TYPE_DATETIME2, 0, false},
		{col("datetime", "datetime", -1, -1, -1, 0), gomysql.MYSQL_TYPE_DATETIME, 0, true},
		{col("date", "date", -1, -1, -1, -1), gomysql.MYSQL_TYPE_DATE, 0, true},
		{col("bit", "bit(64)", -1, 64, -1, -1), gomysql.MYSQL_TYPE_BIT, 0x800, true},
		{col("bit", "bit(5)", -1, 5, -1, -1), gomysql.MYSQL_TYPE_BIT, 0x800, false},
		{col("vector", "vector(3)", -1, -1, -1, -1), gomysql.MYSQL_TYPE_VECTOR, 12, true}, // unknown here: not judged
	}
	for _, tt := range tests {
		b := binlogColumn{typ: tt.typ, meta: tt.meta}
		if got := tt.col.matches(b); got != tt.match {
			t.Errorf("%s matches %s (%#x): %v, want %v", tt.col.describe(), b, tt.meta, got, tt.match)
		}
	}
}
