package binlog

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
)

// maxBufferedRows bounds the memory one transaction may take for the
// DELETE+INSERT comparison: past it every uid seen in the transaction counts
// as touched (a mass rewrite is reported rather than compared).
const maxBufferedRows = 10000

// assembler turns the events of one binlog connection into committed
// transactions. It keeps the binlog file name and the executed GTID set up
// to date, groups events between transaction boundaries and works out
// which uids each transaction touched.
//
// Transaction boundaries, as MariaDB 10.11 writes them (checked against the
// server): every event group starts with a GTID event and no BEGIN query.
// A transactional group (InnoDB) ends with an XID event; a group on a
// non-transactional table (MyISAM, Aria) ends with a Query "COMMIT"; a DDL
// statement is a GTID event flagged standalone followed by its single Query
// event; CREATE TABLE ... SELECT is a DDL-flagged but not standalone group
// (Query, rows, XID). Inside a group, Query events such as "SAVEPOINT `x`"
// do not end it. MySQL starts a group with a GTID (or anonymous GTID) event
// and a Query "BEGIN", or a GTID event and a single DDL Query; since 8.0.2
// its GTID event also carries the group's length, which is used when known.
type assembler struct {
	schema string
	// names is how the server compares names: tables is keyed by
	// names.key of each watched table's name.
	names   nameRule
	tables  map[string]*Table
	columns columnSource
	onRows  func(string)
	log     *zap.Logger

	// gset is the executed GTID set after the last complete transaction,
	// nil when unknown (notices then carry no GTID).
	gset gomysql.GTIDSet
	file string

	// fde is the connection's format description event: whether events
	// carry a checksum, and the post-header lengths.
	fde *replication.FormatDescriptionEvent

	plans map[*Table]*plan
	tx    txn
	buf   []byte

	// lastRowsTable caches the name of the last table seen in a rows event
	// for OnRowsEvent, saving a string allocation per event.
	lastRowsTM    *replication.TableMapEvent
	lastRowsTable string
}

// txn is the transaction being assembled.
type txn struct {
	open bool
	// standalone: the next Query event that is not BEGIN ends the group
	// (MariaDB's standalone flag; MySQL's GTID + DDL).
	standalone bool
	// endPos, when non-zero, is the file offset at which the group ends
	// (MySQL's transaction length).
	endPos uint32

	// This group's GTID: MariaDB's domain-server-seq, or MySQL's in text
	// form ("uuid:gno", "" for an anonymous group).
	maria    gomysql.MariadbGTID
	hasMaria bool
	gtid     string

	touched  map[uint32]struct{}
	balance  map[uint32]map[string]int
	buffered int
	overflow bool
	roles    roleChanges
}

func newAssembler(schema string, tables []Table, names nameRule, columns columnSource, onRows func(string), log *zap.Logger) *assembler {
	a := &assembler{
		schema:  schema,
		names:   names,
		tables:  make(map[string]*Table, len(tables)),
		columns: columns,
		onRows:  onRows,
		log:     log,
		plans:   map[*Table]*plan{},
	}
	for i := range tables {
		t := tables[i]
		a.tables[names.key(t.Name)] = &t
	}
	return a
}

// watches reports whether rows of schema.table are decoded. It is called
// from the replication library's decoding goroutine and reads only
// immutable fields.
func (a *assembler) watches(schema, table []byte) bool {
	return a.names.equalBytes(schema, a.schema) && a.table(table) != nil
}

// table returns the watched table the binlog names table, or nil. With
// lower_case_table_names=1 the binlog's names are already in lower case,
// so the first look-up finds them without an allocation.
func (a *assembler) table(table []byte) *Table {
	if t := a.tables[string(table)]; t != nil || !a.names.fold || !mayFold(table) {
		return t
	}
	return a.tables[a.names.key(string(table))]
}

// decodeRows is the BinlogSyncerConfig.RowsEventDecodeFunc: it decodes the
// row images only for watched tables, and just the header (table id,
// column count) for all others, which are then skipped unread.
func (a *assembler) decodeRows(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	if e.Table == nil || !a.watches(e.Table.Schema, e.Table.Table) {
		return nil
	}
	if err := e.DecodeData(pos, data); err != nil {
		return decodeError(string(e.Table.Table), err)
	}
	return nil
}

// decodeError names the table whose rows would not decode, without the
// row data: go-mysql's message for a panic while decoding quotes the raw
// event and the rows parsed so far, which can hold a password hash, and
// this error ends up in a log line.
func decodeError(table string, err error) error {
	return fmt.Errorf("binlog: decode a rows event of table %s: %s", table, withoutRowData(err.Error()))
}

// withoutRowData cuts a go-mysql decoding message before the row data it
// quotes (", data ..."), and to 200 bytes.
func withoutRowData(msg string) string {
	msg, _, _ = strings.Cut(msg, ", data ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// event processes one binlog event and returns a Notice when the event
// ends a transaction.
func (a *assembler) event(ctx context.Context, ev *replication.BinlogEvent) (*Notice, error) {
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		a.file = string(e.NextLogName)
		return nil, nil
	case *replication.MariadbGTIDEvent, *replication.GTIDEvent, *replication.GtidTaggedLogEvent:
		return a.gtidEvent(ev)
	case *replication.QueryEvent:
		if n, ended, err := a.query(ev, e); ended || err != nil {
			return n, err
		}
	case *replication.FormatDescriptionEvent:
		a.fde = e
	case *replication.ExecuteLoadQueryEvent:
		if err := a.executeLoadQuery(ev); err != nil {
			return nil, err
		}
	case *replication.XIDEvent:
		return a.commit(ev)
	case *replication.GenericEvent:
		// MariaDB ends the group of an XA PREPARE with an XA_prepare
		// event, which the library hands over undecoded. Its uids are
		// noticed now; their reads wait for the prepared transaction's
		// locks, so they see what XA COMMIT (or ROLLBACK) leaves.
		if ev.Header.EventType == replication.XA_PREPARE_LOG_EVENT && a.tx.open {
			return a.commit(ev)
		}
	case *replication.RowsEvent:
		if !a.tx.open {
			a.begin(false)
		}
		if err := a.rows(ctx, ev.Header.EventType, e); err != nil {
			return nil, err
		}
	case *replication.TransactionPayloadEvent:
		if n, err := a.payload(ctx, e); n != nil || err != nil {
			return n, err
		}
	}
	return a.endAtLength(ev)
}

// gtidEvent handles the GTID event that starts every event group
// (MariaDB's, MySQL's, MySQL's tagged one): it delivers a group left open
// and begins the new one with its GTID.
func (a *assembler) gtidEvent(ev *replication.BinlogEvent) (*Notice, error) {
	n, err := a.endUnterminated(ev)
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDEvent:
		a.begin(e.IsStandalone())
		a.tx.maria = e.GTID
		if a.tx.maria.ServerID == 0 {
			a.tx.maria.ServerID = ev.Header.ServerID
		}
		a.tx.hasMaria = true
	case *replication.GTIDEvent:
		a.beginMySQL(ev, e.TransactionLength)
		if ev.Header.EventType == replication.GTID_EVENT && e.GNO > 0 {
			a.tx.gtid = formatSID(e.SID) + ":" + strconv.FormatInt(e.GNO, 10)
		}
	case *replication.GtidTaggedLogEvent:
		a.beginMySQL(ev, e.TransactionLength)
		if e.GNO > 0 {
			a.tx.gtid = formatSID(e.SID) + ":" + e.Tag.String() + ":" + strconv.FormatInt(e.GNO, 10)
		}
	}
	return n, err
}

// query handles a Query event: BEGIN opens a group, COMMIT and the like
// end it, a savepoint stays inside it, and any other statement (DDL, or
// SQL logged in STATEMENT format) is checked against the watched tables
// and ends a standalone group. ended reports that the event ended the
// group (n is then its Notice); err is a statement the binlog cannot
// follow.
func (a *assembler) query(ev *replication.BinlogEvent, e *replication.QueryEvent) (n *Notice, ended bool, err error) {
	switch classifyQuery(e.Query) {
	case queryBegin:
		if !a.tx.open {
			a.begin(false)
		}
		a.tx.standalone = false
	case queryEnd:
		n, err = a.commit(ev)
		return n, true, err
	case queryInside:
		// SAVEPOINT, ROLLBACK TO SAVEPOINT: part of the transaction.
	default:
		a.columns.forget(string(e.Query))
		if t := a.emptiedTable(string(e.Schema), e.Query); t != "" {
			verb, _ := firstWord(e.Query)
			return nil, false, &permanentError{fmt.Errorf("%w: %s of watched table %s in %s at offset %d",
				ErrResyncNeeded, strings.ToUpper(string(verb)), t, a.file, ev.Header.LogPos)}
		}
		if verb, t := a.statementWrite(string(e.Schema), e.Query); t != "" {
			return nil, false, a.statementFormat(verb, t, ev)
		}
		if !a.tx.open || a.tx.standalone {
			n, err = a.commit(ev)
			return n, true, err
		}
	}
	return nil, false, nil
}

// executeLoadQuery checks an Execute_load_query event, LOAD DATA in STATEMENT
// format (the file's contents went before, in Begin_load_query and
// Append_block events; the statement is here): loading into a watched
// table is an error, as for any statement-format write.
func (a *assembler) executeLoadQuery(ev *replication.BinlogEvent) error {
	checksum := a.fde != nil && a.fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
	if schema, q, ok := loadQuery(ev.RawData, postHeaderLen(a.fde, replication.EXECUTE_LOAD_QUERY_EVENT), checksum); ok {
		if verb, t := a.statementWrite(schema, q); t != "" {
			return a.statementFormat(verb, t, ev)
		}
	}
	return nil
}

// payload processes the events inside MySQL's compressed transaction
// (table maps, rows and the XID inside one event) and returns the Notice
// of the last one that ended a transaction, if any.
func (a *assembler) payload(ctx context.Context, e *replication.TransactionPayloadEvent) (*Notice, error) {
	var n *Notice
	for _, inner := range e.Events {
		m, err := a.event(ctx, inner)
		if err != nil {
			return nil, err
		}
		if m != nil {
			n = m
		}
	}
	return n, nil
}

// endAtLength ends the open group at ev when ev reaches the end that its
// MySQL GTID event announced (the transaction's length).
func (a *assembler) endAtLength(ev *replication.BinlogEvent) (*Notice, error) {
	if a.tx.open && a.tx.endPos != 0 && ev.Header.LogPos >= a.tx.endPos {
		return a.commit(ev)
	}
	return nil, nil
}

// statementFormat is the error for a data-changing statement on watched
// table t logged as SQL: its verb and table are named, never its text.
func (a *assembler) statementFormat(verb, t string, ev *replication.BinlogEvent) error {
	return &permanentError{fmt.Errorf("%w: %s of watched table %s in STATEMENT format in %s at offset %d "+
		"(a session whose binlog_format is not ROW logged the statement instead of its rows)",
		ErrResyncNeeded, verb, t, a.file, ev.Header.LogPos)}
}

func (a *assembler) begin(standalone bool) {
	a.tx.open = true
	a.tx.standalone = standalone
	a.tx.endPos = 0
	a.tx.gtid = ""
	a.tx.hasMaria = false
}

// addGTID adds the group's GTID to set.
func (tx *txn) addGTID(set gomysql.GTIDSet) error {
	if tx.hasMaria {
		if ms, ok := set.(*gomysql.MariadbGTIDSet); ok {
			g := tx.maria
			if err := ms.AddSet(&g); err != nil {
				return fmt.Errorf("binlog: add GTID %s to %s: %w", g.String(), set, err)
			}
			return nil
		}
		return fmt.Errorf("binlog: MariaDB GTID %s in a %T", tx.maria.String(), set)
	}
	if tx.gtid != "" {
		if err := set.Update(tx.gtid); err != nil {
			return fmt.Errorf("binlog: add GTID %s to %s: %w", tx.gtid, set, err)
		}
	}
	return nil
}

// beginMySQL starts a MySQL group: standalone (a DDL) until a BEGIN query
// says otherwise, ending where the GTID event says when it carries the
// transaction's length.
func (a *assembler) beginMySQL(ev *replication.BinlogEvent, length uint64) {
	a.begin(true)
	if length > 0 && ev.Header.LogPos >= ev.Header.EventSize {
		end := uint64(ev.Header.LogPos-ev.Header.EventSize) + length
		if end <= 1<<32-1 {
			a.tx.endPos = uint32(end)
			a.tx.standalone = false
		}
	}
}

// endUnterminated delivers a transaction that was still open when the next
// one started, ending it at the start of ev. The server never writes such
// a thing; if it does, delivering what was seen is safer than dropping it.
func (a *assembler) endUnterminated(ev *replication.BinlogEvent) (*Notice, error) {
	if !a.tx.open {
		return nil, nil
	}
	a.log.Warn(MsgUnterminated, zap.String("file", a.file), zap.Uint32("next_event_end", ev.Header.LogPos))
	if ev.Header.LogPos < ev.Header.EventSize {
		return nil, fmt.Errorf("binlog: transaction without end before %s event in %s at unknown position", ev.Header.EventType, a.file)
	}
	start := *ev.Header
	start.LogPos -= start.EventSize
	return a.commit(&replication.BinlogEvent{Header: &start})
}

// commit ends the open transaction at ev and builds its Notice.
func (a *assembler) commit(ev *replication.BinlogEvent) (*Notice, error) {
	if ev.Header.LogPos == 0 {
		return nil, fmt.Errorf("binlog: %s event ending a transaction in %s has no position", ev.Header.EventType, a.file)
	}
	if a.gset != nil {
		if err := a.tx.addGTID(a.gset); err != nil {
			return nil, err
		}
	}
	n := &Notice{
		UIDs:  a.tx.uids(),
		Roles: a.tx.roles.list(),
		Pos:   Position{File: a.file, Offset: ev.Header.LogPos},
		Time:  time.Unix(int64(ev.Header.Timestamp), 0),
	}
	if a.gset != nil {
		n.Pos.GTID = a.gset.String()
	}
	a.tx.reset()
	return n, nil
}

// rows records the uids a rows event touches.
func (a *assembler) rows(ctx context.Context, typ replication.EventType, e *replication.RowsEvent) error {
	tm := e.Table
	if tm == nil || !a.names.equalBytes(tm.Schema, a.schema) {
		return nil
	}
	if a.onRows != nil {
		if tm != a.lastRowsTM {
			a.lastRowsTM, a.lastRowsTable = tm, string(tm.Table)
		}
		a.onRows(a.lastRowsTable)
	}
	if e.Rows == nil {
		return nil // not watched: only the header was decoded
	}
	t := a.table(tm.Table)
	if t == nil {
		return nil
	}
	p := a.plans[t]
	switch {
	case p != nil && p.tm == tm:
	case p != nil && sameColumns(p.tm, tm):
		p.tm = tm // a new transaction's map of the same table: the plan holds
	default:
		var err error
		if p, err = newPlan(ctx, tm, t, a.columns); err != nil {
			return err
		}
		a.plans[t] = p
	}
	switch typ {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		for _, row := range e.Rows {
			if err := a.insert(p, row); err != nil {
				return err
			}
		}
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		for _, row := range e.Rows {
			if err := a.delete(p, row); err != nil {
				return err
			}
		}
	default: // UPDATE: before and after images alternate
		for i := 0; i+1 < len(e.Rows); i += 2 {
			if err := a.update(p, e.Rows[i], e.Rows[i+1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// uid reads the key column of row; ok is false for a NULL key, which no
// uid column holds.
func (p *plan) uid(row []any) (uid uint32, ok bool, err error) {
	if p.key >= len(row) || row[p.key] == nil {
		return 0, false, nil
	}
	uid, err = toUint32(row[p.key], p.keyType)
	if err != nil {
		return 0, false, fmt.Errorf("binlog: %s.%s: %w", p.table.Name, p.table.KeyColumn, err)
	}
	return uid, true, nil
}

func (a *assembler) insert(p *plan, row []any) error {
	if p.table.RoleConfig {
		a.configRow(p, nil, row)
		return nil
	}
	uid, ok, err := p.uid(row)
	if err != nil || !ok {
		return err
	}
	if role, ok := p.memberRole(row); ok {
		a.tx.roles.member(role, uid, 1)
	}
	if p.cols == nil {
		a.tx.touch(uid)
		return nil
	}
	a.count(p, uid, row, 1)
	return nil
}

func (a *assembler) delete(p *plan, row []any) error {
	if p.table.RoleConfig {
		a.configRow(p, row, nil)
		return nil
	}
	uid, ok, err := p.uid(row)
	if err != nil || !ok {
		return err
	}
	if role, ok := p.memberRole(row); ok {
		a.tx.roles.member(role, uid, -1)
	}
	if p.cols == nil {
		a.tx.touch(uid)
		return nil
	}
	a.count(p, uid, row, -1)
	return nil
}

func (a *assembler) update(p *plan, before, after []any) error {
	if p.table.RoleConfig {
		a.configRow(p, before, after)
		return nil
	}
	ub, okb, err := p.uid(before)
	if err != nil {
		return err
	}
	ua, oka, err := p.uid(after)
	if err != nil {
		return err
	}
	if rb, ok := p.memberRole(before); ok && okb {
		a.tx.roles.member(rb, ub, -1)
	}
	if ra, ok := p.memberRole(after); ok && oka {
		a.tx.roles.member(ra, ua, 1)
	}
	if okb != oka || ub != ua {
		if okb {
			a.tx.touch(ub)
		}
		if oka {
			a.tx.touch(ua)
		}
		return nil
	}
	if !oka {
		return nil
	}
	if p.cols == nil {
		a.tx.touch(ua)
		return nil
	}
	a.buf = appendProjection(a.buf[:0], before, p.cols)
	n := len(a.buf)
	a.buf = appendProjection(a.buf, after, p.cols)
	if string(a.buf[:n]) != string(a.buf[n:]) {
		a.tx.touch(ua)
	}
	return nil
}

// count adds delta to the number of rows of uid holding row's projection:
// a DELETE counts -1, an INSERT +1. At commit a uid whose counts are all
// zero was only rewritten, not changed.
func (a *assembler) count(p *plan, uid uint32, row []any, delta int) {
	tx := &a.tx
	if tx.overflow {
		tx.touch(uid)
		return
	}
	if _, ok := tx.touched[uid]; ok {
		return // already touched: nothing left to compare
	}
	if tx.buffered >= maxBufferedRows {
		tx.overflow = true
		for u := range tx.balance {
			tx.touch(u)
		}
		tx.balance = nil
		tx.touch(uid)
		return
	}
	// The table is part of the key: a row deleted from one table and an
	// equal-looking row inserted into another are two changes.
	a.buf = append(append(a.buf[:0], p.table.Name...), 0)
	a.buf = appendProjection(a.buf, row, p.cols)
	if tx.balance == nil {
		tx.balance = map[uint32]map[string]int{}
	}
	m := tx.balance[uid]
	if m == nil {
		m = map[string]int{}
		tx.balance[uid] = m
	}
	if v, ok := m[string(a.buf)]; ok {
		m[string(a.buf)] = v + delta
		return
	}
	m[string(a.buf)] = delta
	tx.buffered++
}

func (tx *txn) touch(uid uint32) {
	if tx.touched == nil {
		tx.touched = map[uint32]struct{}{}
	}
	tx.touched[uid] = struct{}{}
}

// uids returns the sorted uids the transaction touched: those marked, and
// those whose deleted and inserted rows differ.
func (tx *txn) uids() []uint32 {
	for uid, m := range tx.balance {
		for _, v := range m {
			if v != 0 {
				tx.touch(uid)
				break
			}
		}
	}
	if len(tx.touched) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(tx.touched))
}

func (tx *txn) reset() {
	clear(tx.touched)
	tx.balance = nil
	tx.buffered = 0
	tx.overflow = false
	tx.roles.reset()
	tx.open = false
	tx.standalone = false
	tx.endPos = 0
	tx.gtid = ""
	tx.hasMaria = false
}

// formatSID formats a MySQL server UUID from its 16 bytes.
func formatSID(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

type queryKind int

const (
	queryOther  queryKind = iota // DDL or a statement: ends a standalone group
	queryBegin                   // BEGIN, XA START
	queryEnd                     // COMMIT, ROLLBACK, XA PREPARE/COMMIT/ROLLBACK
	queryInside                  // SAVEPOINT, ROLLBACK TO, RELEASE SAVEPOINT, XA END
)

// classifyQuery tells what a Query event means for transaction grouping,
// from its first two words.
func classifyQuery(q []byte) queryKind {
	w1, rest := firstWord(q)
	w2, _ := firstWord(rest)
	switch {
	case eq(w1, "BEGIN"):
		return queryBegin
	case eq(w1, "COMMIT"):
		return queryEnd
	case eq(w1, "ROLLBACK"):
		if eq(w2, "TO") {
			return queryInside
		}
		return queryEnd
	case eq(w1, "SAVEPOINT"), eq(w1, "RELEASE"):
		return queryInside
	case eq(w1, "XA"):
		switch {
		case eq(w2, "START"), eq(w2, "BEGIN"):
			return queryBegin
		case eq(w2, "END"):
			return queryInside
		case eq(w2, "PREPARE"), eq(w2, "COMMIT"), eq(w2, "ROLLBACK"):
			return queryEnd
		}
	}
	return queryOther
}

// emptiedTable returns the watched table that a TRUNCATE, DROP or RENAME
// statement names, or "". Such a statement logs no rows, so the binlog
// cannot say which users it touched. schema is the statement's default
// database; a name qualified with another database does not count. Names
// compare as the server compares them (lower_case_table_names).
func (a *assembler) emptiedTable(schema string, q []byte) string {
	verb, _ := firstWord(q)
	if !eq(verb, "TRUNCATE") && !eq(verb, "DROP") && !eq(verb, "RENAME") {
		return ""
	}
	query, def, db := a.names.key(string(q)), a.names.key(schema), a.names.key(a.schema)
	for key, t := range a.tables {
		if mentionsTable(query, key, def, db) {
			return t.Name
		}
	}
	return ""
}

// mentionsTable reports whether query names table of db, as a whole
// identifier (`users` is not users_data), bare (with the statement's
// default database def) or qualified (db.users). The caller lower-cases
// all four where the server compares names case-insensitively.
func mentionsTable(query, table, def, db string) bool {
	ident := func(c byte) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	for from := 0; ; {
		i := strings.Index(query[from:], table)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(table)
		from = end
		before, after := start, end
		if before > 0 && query[before-1] == '`' {
			before--
		}
		if after < len(query) && query[after] == '`' {
			after++
		}
		if before > 0 && ident(query[before-1]) || after < len(query) && ident(query[after]) {
			continue
		}
		if before == 0 || query[before-1] != '.' {
			if def == db {
				return true
			}
			continue
		}
		// Qualified: the identifier before the dot must be db.
		q := strings.TrimSuffix(query[:before-1], "`")
		if k := len(q) - len(db); strings.HasSuffix(q, db) && (k == 0 || !ident(q[k-1])) {
			return true
		}
	}
}

// firstWord returns the first run of letters in q after leading spaces
// (and /* */ comments), and what follows it.
func firstWord(q []byte) (word, rest []byte) {
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';':
			i++
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := i + 2
			for end+1 < len(q) && (q[end] != '*' || q[end+1] != '/') {
				end++
			}
			i = end + 2
		default:
			j := i
			for j < len(q) && (q[j]|0x20 >= 'a' && q[j]|0x20 <= 'z' || q[j] == '_') {
				j++
			}
			return q[i:j], q[j:]
		}
	}
	return nil, nil
}

func eq(w []byte, upper string) bool {
	if len(w) != len(upper) {
		return false
	}
	for i := range w {
		if w[i]&^0x20 != upper[i] {
			return false
		}
	}
	return true
}
