package binlog

import (
	"fmt"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Column types: without binlog_row_metadata=FULL the table-map event of a
// rows event carries no column names, only each column's type code and
// metadata (lengths, precision). The names then come from
// information_schema, as the table is now; an ALTER TABLE since the event
// was written makes them wrong. A changed column count shows at once; an
// ALTER that drops one column and adds another keeps the count and would
// shift every name after the dropped column onto its neighbour. Comparing
// each column's type with today's catches that in all but the rarest
// cases (a column replaced by one of the same type at the same place), so
// a mismatch is treated as columns unknown (a full sync) rather than
// guessed.

// columnInfo is one column of a table as information_schema describes it.
type columnInfo struct {
	Name string
	// DataType is DATA_TYPE in lower case ("varchar", "int", ...), and
	// ColumnType COLUMN_TYPE ("varchar(60)"), for messages.
	DataType   string
	ColumnType string
	// OctetLength is CHARACTER_OCTET_LENGTH (the most bytes a string
	// column holds), Precision and Scale NUMERIC_PRECISION and
	// NUMERIC_SCALE, FSP DATETIME_PRECISION; -1 where NULL.
	OctetLength int64
	Precision   int64
	Scale       int64
	FSP         int64
}

// binlogColumn is one column of a table-map event: its type code and
// metadata, as go-mysql decodes them.
type binlogColumn struct {
	typ  byte
	meta uint16
}

// stringMeta decodes the metadata of a MYSQL_TYPE_STRING column: the real
// type (STRING for char and binary, ENUM, SET) and the length in bytes
// (for ENUM and SET, the bytes a value takes). Lengths above 255 keep
// their two high bits in the real type byte, inverted.
func (c binlogColumn) stringMeta() (real byte, length int) {
	b0, b1 := byte(c.meta>>8), byte(c.meta)
	if b0&0x30 != 0x30 {
		return b0 | 0x30, int(b1) | int((b0&0x30)^0x30)<<4
	}
	return b0, int(b1)
}

// String describes the column for messages: "VARCHAR of 48 bytes".
func (c binlogColumn) String() string {
	switch c.typ {
	case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING:
		return fmt.Sprintf("%s of %d bytes", typeName(c.typ), c.meta)
	case gomysql.MYSQL_TYPE_STRING:
		real, n := c.stringMeta()
		if real == gomysql.MYSQL_TYPE_ENUM || real == gomysql.MYSQL_TYPE_SET {
			return typeName(real)
		}
		return fmt.Sprintf("STRING of %d bytes", n)
	case gomysql.MYSQL_TYPE_BLOB:
		return fmt.Sprintf("BLOB with a %d-byte length", c.meta)
	case gomysql.MYSQL_TYPE_NEWDECIMAL:
		return fmt.Sprintf("DECIMAL(%d,%d)", c.meta>>8, c.meta&0xff)
	case gomysql.MYSQL_TYPE_BIT:
		return fmt.Sprintf("BIT(%d)", c.bits())
	}
	return typeName(c.typ)
}

// bits is the width of a BIT column: bytes in the high byte of the
// metadata, remaining bits in the low one.
func (c binlogColumn) bits() int { return int(c.meta>>8)*8 + int(c.meta&0xff) }

func typeName(t byte) string {
	switch t {
	case gomysql.MYSQL_TYPE_DECIMAL:
		return "DECIMAL (old)"
	case gomysql.MYSQL_TYPE_TINY:
		return "TINY"
	case gomysql.MYSQL_TYPE_SHORT:
		return "SHORT"
	case gomysql.MYSQL_TYPE_LONG:
		return "LONG"
	case gomysql.MYSQL_TYPE_FLOAT:
		return "FLOAT"
	case gomysql.MYSQL_TYPE_DOUBLE:
		return "DOUBLE"
	case gomysql.MYSQL_TYPE_TIMESTAMP, gomysql.MYSQL_TYPE_TIMESTAMP2:
		return "TIMESTAMP"
	case gomysql.MYSQL_TYPE_LONGLONG:
		return "LONGLONG"
	case gomysql.MYSQL_TYPE_INT24:
		return "INT24"
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_NEWDATE:
		return "DATE"
	case gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_TIME2:
		return "TIME"
	case gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_DATETIME2:
		return "DATETIME"
	case gomysql.MYSQL_TYPE_YEAR:
		return "YEAR"
	case gomysql.MYSQL_TYPE_VARCHAR:
		return "VARCHAR"
	case gomysql.MYSQL_TYPE_VAR_STRING:
		return "VAR_STRING"
	case gomysql.MYSQL_TYPE_BIT:
		return "BIT"
	case gomysql.MYSQL_TYPE_JSON:
		return "JSON"
	case gomysql.MYSQL_TYPE_NEWDECIMAL:
		return "DECIMAL"
	case gomysql.MYSQL_TYPE_ENUM:
		return "ENUM"
	case gomysql.MYSQL_TYPE_SET:
		return "SET"
	case gomysql.MYSQL_TYPE_BLOB:
		return "BLOB"
	case gomysql.MYSQL_TYPE_STRING:
		return "STRING"
	case gomysql.MYSQL_TYPE_GEOMETRY:
		return "GEOMETRY"
	}
	return fmt.Sprintf("type %d", t)
}

// blobLengthBytes is the size of the length prefix of each text and blob
// type: what a BLOB column's metadata holds.
var blobLengthBytes = map[string]uint16{
	"tinytext": 1, "tinyblob": 1,
	"text": 2, "blob": 2,
	"mediumtext": 3, "mediumblob": 3,
	"longtext": 4, "longblob": 4,
}

// matches reports whether the binlog column b can be column c as
// information_schema describes it now. Types it does not know (a newer
// server's) match anything: a false mismatch would make every event of
// the table undecodable, for ever.
func (c columnInfo) matches(b binlogColumn) bool {
	typ, meta := b.typ, b.meta
	fsp := func() bool { return c.FSP < 0 || int64(meta) == c.FSP }
	switch dt := c.DataType; dt {
	case "tinyint", "bool", "boolean":
		return typ == gomysql.MYSQL_TYPE_TINY
	case "smallint":
		return typ == gomysql.MYSQL_TYPE_SHORT
	case "mediumint":
		return typ == gomysql.MYSQL_TYPE_INT24
	case "int", "integer":
		return typ == gomysql.MYSQL_TYPE_LONG
	case "bigint":
		return typ == gomysql.MYSQL_TYPE_LONGLONG
	case "float":
		return typ == gomysql.MYSQL_TYPE_FLOAT
	case "double", "real", "double precision":
		return typ == gomysql.MYSQL_TYPE_DOUBLE
	case "decimal", "numeric", "dec", "fixed":
		if typ == gomysql.MYSQL_TYPE_DECIMAL {
			return true // a pre-5.0 table: no precision in the metadata
		}
		return typ == gomysql.MYSQL_TYPE_NEWDECIMAL &&
			(c.Precision < 0 || int64(meta>>8) == c.Precision) && (c.Scale < 0 || int64(meta&0xff) == c.Scale)
	case "date":
		return typ == gomysql.MYSQL_TYPE_DATE || typ == gomysql.MYSQL_TYPE_NEWDATE
	case "datetime":
		return typ == gomysql.MYSQL_TYPE_DATETIME2 && fsp() || typ == gomysql.MYSQL_TYPE_DATETIME && c.FSP <= 0
	case "timestamp":
		return typ == gomysql.MYSQL_TYPE_TIMESTAMP2 && fsp() || typ == gomysql.MYSQL_TYPE_TIMESTAMP && c.FSP <= 0
	case "time":
		return typ == gomysql.MYSQL_TYPE_TIME2 && fsp() || typ == gomysql.MYSQL_TYPE_TIME && c.FSP <= 0
	case "year":
		return typ == gomysql.MYSQL_TYPE_YEAR
	case "varchar", "varbinary":
		return (typ == gomysql.MYSQL_TYPE_VARCHAR || typ == gomysql.MYSQL_TYPE_VAR_STRING) &&
			(c.OctetLength < 0 || int64(meta) == c.OctetLength)
	case "char", "binary":
		if typ != gomysql.MYSQL_TYPE_STRING {
			return false
		}
		real, n := b.stringMeta()
		return real == gomysql.MYSQL_TYPE_STRING && (c.OctetLength < 0 || int64(n) == c.OctetLength)
	case "enum", "set":
		want := gomysql.MYSQL_TYPE_ENUM
		if dt == "set" {
			want = gomysql.MYSQL_TYPE_SET
		}
		if typ == want {
			return true
		}
		real, _ := b.stringMeta()
		return typ == gomysql.MYSQL_TYPE_STRING && real == want
	case "json":
		// MySQL's JSON; MariaDB's json is a longtext and says so.
		return typ == gomysql.MYSQL_TYPE_JSON || typ == gomysql.MYSQL_TYPE_BLOB
	case "bit":
		return typ == gomysql.MYSQL_TYPE_BIT && (c.Precision < 0 || int64(b.bits()) == c.Precision)
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
		"geometrycollection", "geomcollection":
		return typ == gomysql.MYSQL_TYPE_GEOMETRY
	}
	if n, ok := blobLengthBytes[c.DataType]; ok {
		return typ == gomysql.MYSQL_TYPE_BLOB && meta == n
	}
	return true
}

// firstMismatch returns the index of the first column of the table-map
// event (types and meta) that cannot be the column information_schema
// lists at its place, or -1.
func firstMismatch(cols []columnInfo, types []byte, meta []uint16) int {
	for i, c := range cols {
		if i >= len(types) {
			return i
		}
		var m uint16
		if i < len(meta) {
			m = meta[i]
		}
		if !c.matches(binlogColumn{typ: types[i], meta: m}) {
			return i
		}
	}
	return -1
}

// describe is how a column appears in messages: "name varchar(60)".
func (c columnInfo) describe() string {
	t := c.ColumnType
	if t == "" {
		t = c.DataType
	}
	return c.Name + " " + strings.TrimSpace(t)
}
