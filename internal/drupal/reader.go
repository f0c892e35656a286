// Package drupal reads Drupal user accounts from the site's database, in
// the shape the mapping needs.
//
// It knows where Drupal keeps each value (users, the default_langcode=1
// row of users_field_data, user__roles, user__<field> tables, all behind
// the site's table prefix) and reads one account (a locking barrier, then
// one query), many at once with one barrier and one query (LoadPage), or
// every uid in pages for a full walk.
package drupal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Tables names Drupal's user tables behind a table prefix.
type Tables struct{ Prefix string }

// Users is the base table: uid, uuid, langcode.
func (t Tables) Users() string { return t.Prefix + UsersTable }

// FieldData is the data table: one row per uid and translation.
func (t Tables) FieldData() string { return t.Prefix + FieldDataTable }

// Roles is the roles field table.
func (t Tables) Roles() string { return t.Prefix + RolesTable }

// Field is the table of a configurable field, e.g. field_first_name.
func (t Tables) Field(name string) string { return t.Prefix + "user__" + name }

func quote(name string) string { return "`" + name + "`" }

// Reader reads accounts with the columns a mapping needs.
type Reader struct {
	db      *sql.DB
	tables  Tables
	sources Sources

	selectList  string // the SELECT list and FROM clause shared by every query
	load        string
	page        string
	barrier     string // the barrier of one uid, without its locking clause
	barrierFrom string // the barrier's query up to its WHERE clause on u.uid

	share     *serverClause  // the server's shared NOWAIT clause (locking.go)
	conflicts *atomic.Uint64 // the locking reads that found a write in flight
	patience  time.Duration  // how long a locking read waits for a write in flight; 0: until ctx ends
}

// NewReader prepares the queries for sources. db should have
// group_concat_max_len large enough for a user's role list.
func NewReader(db *sql.DB, tables Tables, sources Sources) *Reader {
	r := &Reader{db: db, tables: tables, sources: sources, share: &serverClause{}, conflicts: new(atomic.Uint64)}
	var cols []string
	cols = append(cols, "u.uid", "u.uuid", "u.langcode", "d.uid IS NOT NULL")
	for _, c := range sources.FieldDataColumns {
		cols = append(cols, "d."+quote(c))
	}
	if sources.Roles {
		cols = append(cols, "(SELECT GROUP_CONCAT(r.roles_target_id ORDER BY r.delta SEPARATOR ',') FROM "+
			quote(tables.Roles())+" r WHERE r.entity_id = u.uid AND r.deleted = 0)")
	}
	for _, f := range sources.Fields {
		// Untranslatable fields store the entity's default langcode; prefer
		// that row, then the lowest delta.
		cols = append(cols, "(SELECT f."+quote(f.Column)+" FROM "+quote(tables.Field(f.Name))+
			" f WHERE f.entity_id = u.uid AND f.deleted = 0 ORDER BY f.langcode = u.langcode DESC, f.delta LIMIT 1)")
	}
	r.selectList = "SELECT " + strings.Join(cols, ", ") + " FROM " + quote(tables.Users()) + " u LEFT JOIN " +
		quote(tables.FieldData()) + " d ON d.uid = u.uid AND d.default_langcode = 1"
	r.load = r.selectList + " WHERE u.uid = ?"
	r.page = r.selectList + " WHERE u.uid >= ? ORDER BY u.uid LIMIT ?"

	// The barrier is a locking read of the rows a Drupal write locks. The
	// binlog can hand us a transaction a moment before InnoDB makes it
	// visible; waiting for its row locks guarantees the read that follows
	// sees it. In autocommit the shared locks last one statement, and
	// the read never waits for a lock while it holds others (locking.go).
	//
	// Each table is read through its primary key, the rows themselves: an
	// UPDATE of a column no index holds (mail, status) locks only those,
	// and a read the optimizer would serve from a secondary index that
	// covers the join (users_field_data's uid, default_langcode, langcode)
	// locked nothing that update holds.
	const rows = " FORCE INDEX (PRIMARY)"
	barrier := "SELECT COUNT(*) FROM " + quote(tables.Users()) + " u" + rows + " LEFT JOIN " + quote(tables.FieldData()) + " d" + rows + " ON d.uid = u.uid"
	if sources.Roles {
		barrier += " LEFT JOIN " + quote(tables.Roles()) + " r" + rows + " ON r.entity_id = u.uid"
	}
	// Mapped field tables too: a module or migration may write one alone.
	for i, f := range sources.Fields {
		alias := fmt.Sprintf("f%d", i)
		barrier += " LEFT JOIN " + quote(tables.Field(f.Name)) + " " + alias + rows + " ON " + alias + ".entity_id = u.uid"
	}
	r.barrierFrom = barrier + " WHERE u.uid"
	r.barrier = r.barrierFrom + " = ?"
	return r
}

// Load reads the current state of uid; ok is false when the users row
// does not exist (the account was deleted, or never was).
func (r *Reader) Load(ctx context.Context, uid uint32) (a Account, ok bool, err error) {
	if err := r.locked(ctx, func(share string) error {
		var n int
		return r.db.QueryRowContext(ctx, r.barrier+share, uid).Scan(&n)
	}); err != nil {
		return a, false, fmt.Errorf("wait for writes to uid %d: %w", uid, err)
	}
	rows, err := r.db.QueryContext(ctx, r.load, uid)
	if err != nil {
		return a, false, fmt.Errorf("read uid %d: %w", uid, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return a, false, rows.Err()
	}
	a, err = r.scan(rows)
	if err != nil {
		return a, false, fmt.Errorf("read uid %d: %w", uid, err)
	}
	return a, true, rows.Err()
}

// Page reads up to limit accounts with uid from from on, in uid order. A
// full walk starts at 0 and calls it again from the last uid + 1 until it
// returns fewer than limit.
func (r *Reader) Page(ctx context.Context, from uint32, limit int) ([]Account, error) {
	rows, err := r.db.QueryContext(ctx, r.page, from, limit)
	if err != nil {
		return nil, fmt.Errorf("read users from uid %d: %w", from, err)
	}
	defer rows.Close()
	out := make([]Account, 0, limit)
	for rows.Next() {
		a, err := r.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read users from uid %d: %w", from, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (r *Reader) scan(rows *sql.Rows) (Account, error) {
	var a Account
	var hasData bool
	n := len(r.sources.FieldDataColumns) + len(r.sources.Fields)
	if r.sources.Roles {
		n++
	}
	vals := make([]any, n)
	dest := []any{&a.UID, &a.UUID, &a.Langcode, &hasData}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	if err := rows.Scan(dest...); err != nil {
		return a, err
	}
	a.Values = make(map[string]any, n)
	i := 0
	for _, c := range r.sources.FieldDataColumns {
		a.Values[c] = normalize(vals[i])
		i++
	}
	if r.sources.Roles {
		if s, ok := normalize(vals[i]).(string); ok && s != "" {
			a.Values["roles"] = strings.Split(s, ",")
		} else {
			a.Values["roles"] = []string(nil)
		}
		i++
	}
	for _, f := range r.sources.Fields {
		a.Values[f.Key()] = normalize(vals[i])
		i++
	}
	if !hasData {
		// A users row without its data row: nothing to map yet.
		a.Values = nil
	}
	return a, nil
}

// TableValues is what reading an account took from one table, column by
// column: an account described in Drupal's own terms, for explaining a
// reconcile (sync --explain).
type TableValues struct {
	Table  string         `json:"table"`
	Values map[string]any `json:"values"`
}

// Describe returns, table by table, what Load read of a: the users row,
// the columns of its default users_field_data row, its roles and each
// configurable field. Only the sources the reader was made for appear
// (pass never does: no query selects it).
func (r *Reader) Describe(a Account) []TableValues {
	out := []TableValues{{Table: r.tables.Users(), Values: map[string]any{"uid": int64(a.UID), "uuid": a.UUID, "langcode": a.Langcode}}}
	if a.Values == nil {
		return out
	}
	data := map[string]any{}
	for _, c := range r.sources.FieldDataColumns {
		data[c] = a.Values[c]
	}
	out = append(out, TableValues{Table: r.tables.FieldData(), Values: data})
	if r.sources.Roles {
		roles, _ := a.Values["roles"].([]string)
		out = append(out, TableValues{Table: r.tables.Roles(), Values: map[string]any{"roles_target_id": append([]string{}, roles...)}})
	}
	for _, f := range r.sources.Fields {
		out = append(out, TableValues{Table: r.tables.Field(f.Name), Values: map[string]any{f.Column: a.Values[f.Key()]}})
	}
	return out
}

// normalize turns driver values into string, int64 or nil.
func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case int32:
		return int64(x)
	case uint64:
		return int64(x)
	case int:
		return int64(x)
	}
	return v
}

// ErrNotFound is returned by the Find methods when nothing matches.
var ErrNotFound = errors.New("no Drupal user matches")

// FindByName returns the uid of the account named name.
func (r *Reader) FindByName(ctx context.Context, name string) ([]uint32, error) {
	return r.find(ctx, "name", name)
}

// FindByMail returns the uids of the accounts whose mail is mail.
func (r *Reader) FindByMail(ctx context.Context, mail string) ([]uint32, error) {
	return r.find(ctx, "mail", mail)
}

func (r *Reader) find(ctx context.Context, column, value string) ([]uint32, error) {
	uids, err := scanColumn[uint32](ctx, r.db, "SELECT uid FROM "+quote(r.tables.FieldData())+
		" WHERE "+column+" = ? AND default_langcode = 1 ORDER BY uid", value)
	if err != nil {
		return nil, fmt.Errorf("find users by %s: %w", column, err)
	}
	if len(uids) == 0 {
		return nil, fmt.Errorf("%s %q: %w", column, value, ErrNotFound)
	}
	return uids, nil
}

// UIDs returns up to limit uids from from on, in order, reading only the
// users table: a full walk needs to know who exists, not what they hold.
//
// The read is a locking one, like the barrier before a user's load: a
// transaction already in the binlog may not be visible yet (InnoDB
// commits after the binlog write, and an XA transaction can be prepared
// long before it commits). A full sync notes its binlog position first
// and streams from it afterwards, so it must list every uid a transaction
// before that position created; waiting for the rows' locks makes it see
// them, however long a prepared transaction holds them (locking.go).
func (r *Reader) UIDs(ctx context.Context, from uint32, limit int) (uids []uint32, err error) {
	err = r.locked(ctx, func(share string) error {
		uids, err = r.uids(ctx, from, limit, share)
		return err
	})
	return uids, err
}

// UIDPages walks every uid in order, size at a time (see UIDs): the one
// pager of a full walk of Drupal's users. It stops at the first error,
// which it yields.
func (r *Reader) UIDPages(ctx context.Context, size int) iter.Seq2[[]uint32, error] {
	return func(yield func([]uint32, error) bool) {
		for from := uint32(0); ; {
			page, err := r.UIDs(ctx, from, size)
			if err != nil {
				yield(nil, err)
				return
			}
			if len(page) > 0 && !yield(page, nil) {
				return
			}
			if len(page) < size || page[len(page)-1] == ^uint32(0) {
				return
			}
			from = page[len(page)-1] + 1
		}
	}
}

func isMySQLError(err error, number uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

func (r *Reader) uids(ctx context.Context, from uint32, limit int, share string) ([]uint32, error) {
	uids, err := scanColumn[uint32](ctx, r.db, "SELECT uid FROM "+quote(r.tables.Users())+" WHERE uid >= ? ORDER BY uid LIMIT ?"+share, from, limit)
	if err != nil {
		return nil, fmt.Errorf("list uids from %d: %w", from, err)
	}
	return uids, nil
}

// scanColumn runs q and returns its one column, row by row.
func scanColumn[T any](ctx context.Context, db *sql.DB, q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Count returns the number of rows in the users table.
func (r *Reader) Count(ctx context.Context) (int, error) {
	var n int
	if err := r.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(r.tables.Users())).Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// LoadPage reads the current state of many users, as Load does for one:
// one barrier for all of them, then one query (two round trips for the
// page, not two per user). uids without a users row are absent from the
// map.
//
// The barrier is Load's locking read with the page's uids in place of
// one: it waits for the row locks of every transaction writing any row
// of the page's users (their users, users_field_data, user__roles and
// mapped field rows, a deleted or newly inserted users row included),
// and the read after it, a statement of its own with a view taken after
// those commits, sees them.
func (r *Reader) LoadPage(ctx context.Context, uids []uint32) (map[uint32]Account, error) {
	if len(uids) == 0 {
		return map[uint32]Account{}, nil
	}
	args := make([]any, len(uids))
	for i, uid := range uids {
		args[i] = uid
	}
	q := r.barrierFrom + " IN (?" + strings.Repeat(", ?", len(uids)-1) + ")"
	if err := r.locked(ctx, func(share string) error {
		var n int
		return r.db.QueryRowContext(ctx, q+share, args...).Scan(&n)
	}); err != nil {
		return nil, fmt.Errorf("wait for writes to %d users (uids %d to %d): %w", len(uids), slices.Min(uids), slices.Max(uids), err)
	}
	return r.LoadMany(ctx, uids)
}

// LoadMany reads the accounts of uids with one query (no barrier: callers
// use it to find candidates, and reconcile each with Load). uids without
// a users row are absent from the map.
func (r *Reader) LoadMany(ctx context.Context, uids []uint32) (map[uint32]Account, error) {
	out := make(map[uint32]Account, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	args := make([]any, len(uids))
	for i, uid := range uids {
		args[i] = uid
	}
	q := r.selectList + " WHERE u.uid IN (?" + strings.Repeat(", ?", len(uids)-1) + ")"
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read %d users: %w", len(uids), err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := r.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read %d users: %w", len(uids), err)
		}
		out[a.UID] = a
	}
	return out, rows.Err()
}
