package binlog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
)

// columnSource gives the columns of a watched table when the binlog
// carries no names.
type columnSource interface {
	// columns returns the table's columns in ordinal order.
	columns(ctx context.Context, table string) ([]columnInfo, error)
	// forget drops what is cached for tables a DDL statement may have
	// changed.
	forget(query string)
}

// schemaColumns reads columns (names and types) from information_schema
// and caches them per table until a DDL statement names the table. It is
// used only when binlog_row_metadata is not FULL: then the columns are
// today's, not those of when the row was written, which is why a column
// count or a column type that disagrees with the table-map event stops
// the stream.
type schemaColumns struct {
	db     *sql.DB
	schema string
	log    *zap.Logger

	mu    sync.Mutex
	names map[string][]columnInfo
}

func newSchemaColumns(db *sql.DB, schema string, log *zap.Logger) *schemaColumns {
	return &schemaColumns{db: db, schema: schema, log: log, names: map[string][]columnInfo{}}
}

func (c *schemaColumns) columns(ctx context.Context, table string) ([]columnInfo, error) {
	c.mu.Lock()
	cols, ok := c.names[table]
	c.mu.Unlock()
	if ok {
		return cols, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := c.db.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_OCTET_LENGTH,
		NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, c.schema, table)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s.%s from information_schema: %w", c.schema, table, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var col columnInfo
		var octets, prec, scale, fsp sql.NullInt64
		if err := rows.Scan(&col.Name, &col.DataType, &col.ColumnType, &octets, &prec, &scale, &fsp); err != nil {
			return nil, fmt.Errorf("read the columns of %s.%s: %w", c.schema, table, err)
		}
		col.DataType = strings.ToLower(col.DataType)
		col.OctetLength, col.Precision, col.Scale, col.FSP = orMinus1(octets), orMinus1(prec), orMinus1(scale), orMinus1(fsp)
		cols = append(cols, col)
		names = append(names, col.Name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s.%s: %w", c.schema, table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: table %s.%s not found in information_schema (binlog_row_metadata=FULL puts the names into the binlog)",
			ErrUnknownColumns, c.schema, table)
	}
	c.log.Info(MsgColumnsLoaded, zap.String("table", table), zap.Strings("columns", names))
	c.mu.Lock()
	c.names[table] = cols
	c.mu.Unlock()
	return cols, nil
}

func orMinus1(n sql.NullInt64) int64 {
	if !n.Valid {
		return -1
	}
	return n.Int64
}

// reset forgets every cached name. A new stream may start past a schema
// change no stream read (after a purged position, the agent streams on
// from the current one), so names cached by an earlier stream are stale.
func (c *schemaColumns) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.names)
}

// forget drops the cached names of every table query mentions. It
// compares case-insensitively whatever lower_case_table_names says:
// forgetting a table the statement did not touch only costs a read of
// information_schema.
func (c *schemaColumns) forget(query string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.names) == 0 {
		return
	}
	q := strings.ToLower(query)
	for table := range c.names {
		if strings.Contains(q, strings.ToLower(table)) {
			delete(c.names, table)
		}
	}
}

// plan says where, in the rows of one table-map event, the columns of a
// watched table are.
type plan struct {
	tm      *replication.TableMapEvent
	table   *Table
	key     int
	keyType byte
	// cols are the indexes of Table.Columns; nil when every column counts.
	cols []int
	// role is the index of Table.RoleColumn, or -1.
	role int
	// collection and name are the indexes of a RoleConfig table's columns.
	collection, name int
}

// isIntegerType reports whether a binlog column type can hold a uid.
func isIntegerType(t byte) bool {
	switch t {
	case gomysql.MYSQL_TYPE_TINY, gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_INT24,
		gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_LONGLONG:
		return true
	}
	return false
}

// sameColumns reports whether two table maps describe the same table
// with the same named columns (binlog_row_metadata=FULL), so that a plan
// made for one serves the other: every transaction writes its own table
// map, and making the plan again for each took 40% of the assembler's CPU
// on Drupal saves. Without the names in the event the plan comes from
// information_schema and is made again.
func sameColumns(a, b *replication.TableMapEvent) bool {
	if a.TableID != b.TableID || a.ColumnCount != b.ColumnCount || len(b.ColumnName) != int(b.ColumnCount) ||
		!bytes.Equal(a.ColumnType, b.ColumnType) || !slices.Equal(a.ColumnMeta, b.ColumnMeta) ||
		!bytes.Equal(a.Schema, b.Schema) || !bytes.Equal(a.Table, b.Table) || len(a.ColumnName) != len(b.ColumnName) {
		return false
	}
	for i := range a.ColumnName {
		if !bytes.Equal(a.ColumnName[i], b.ColumnName[i]) {
			return false
		}
	}
	return true
}

// newPlan resolves the columns of t in the rows of tm: from the event's own
// column names when binlog_row_metadata=FULL put them there, else from src,
// as long as today's columns have the count and the types of the event's.
func newPlan(ctx context.Context, tm *replication.TableMapEvent, t *Table, src columnSource) (*plan, error) {
	names := tm.ColumnNameString()
	if len(names) != int(tm.ColumnCount) {
		cols, err := src.columns(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		if len(cols) != int(tm.ColumnCount) {
			return nil, fmt.Errorf("%w: table %s has %d columns in information_schema but %d in the binlog event (the schema changed since the event was written; binlog_row_metadata=FULL avoids this)",
				ErrUnknownColumns, t.Name, len(cols), tm.ColumnCount)
		}
		if i := firstMismatch(cols, tm.ColumnType, tm.ColumnMeta); i >= 0 {
			var b binlogColumn
			if i < len(tm.ColumnType) && i < len(tm.ColumnMeta) {
				b = binlogColumn{typ: tm.ColumnType[i], meta: tm.ColumnMeta[i]}
			}
			return nil, fmt.Errorf("%w: table %s: column %d is %s in information_schema but a %s in the binlog event (the schema changed since the event was written; binlog_row_metadata=FULL avoids this)",
				ErrUnknownColumns, t.Name, i+1, cols[i].describe(), b)
		}
		names = make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.Name
		}
	}
	index := func(col string) (int, error) {
		for i, n := range names {
			if strings.EqualFold(n, col) {
				return i, nil
			}
		}
		return -1, fmt.Errorf("%w: table %s has no column %q (columns: %s)", ErrUnknownColumns, t.Name, col, strings.Join(names, ", "))
	}
	p := &plan{tm: tm, table: t, role: -1}
	var err error
	if t.RoleConfig {
		if p.collection, err = index("collection"); err != nil {
			return nil, err
		}
		if p.name, err = index("name"); err != nil {
			return nil, err
		}
		return p, nil
	}
	if t.RoleColumn != "" {
		if p.role, err = index(t.RoleColumn); err != nil {
			return nil, err
		}
	}
	if p.key, err = index(t.KeyColumn); err != nil {
		return nil, err
	}
	p.keyType = tm.ColumnType[p.key]
	if !isIntegerType(p.keyType) {
		return nil, fmt.Errorf("%w: key column %s.%s is not an integer column in the binlog event (type %d)", ErrUnknownColumns, t.Name, t.KeyColumn, p.keyType)
	}
	if len(t.Columns) > 0 {
		p.cols = make([]int, 0, len(t.Columns))
		for _, c := range t.Columns {
			i, err := index(c)
			if err != nil {
				return nil, err
			}
			p.cols = append(p.cols, i)
		}
	}
	return p, nil
}
