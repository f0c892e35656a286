// Package binlog reads a MySQL/MariaDB row-based binary log and reports, for
// every committed transaction, which Drupal uids it touched.
//
// The agent does not need the changed values: it reads a user's current rows
// again whenever the user may have changed, so the binlog only has to say
// *which* uids to look at and *where* the stream may be resumed. A Streamer
// therefore delivers one Notice per committed transaction, in binlog order,
// with the uids whose watched rows changed and the
// position right after the transaction's commit. Positions only ever point
// between transactions, so a resumed stream never delivers half a
// transaction, and a transaction handed to the caller is never handed again
// by the same Stream call, even across reconnects.
//
// Drupal's write patterns shape what counts as a change (see the shared
// reference drupal-users.md): a save DELETEs and re-INSERTs every
// users_field_data row of the uid, and logins are bare UPDATEs of two
// timestamp columns. Table.Columns lets the caller name the columns that
// matter, so that these writes produce no uid unless a mapped value really
// changed.
package binlog

import (
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Position is a point in the binary log between two transactions: where a
// stream can start or resume without splitting a transaction.
type Position struct {
	// File is the binlog file name, e.g. "mariadb-bin.000003".
	File string `json:"file"`
	// Offset is the byte offset in File right after a transaction's commit
	// event (or a file's start).
	Offset uint32 `json:"pos"`
	// GTID is the executed GTID set up to here: on MariaDB one
	// domain-server-seq per domain, comma-separated ("0-1-100"), on MySQL
	// "uuid:1-100". Empty when the server writes no GTIDs or the set is not
	// known. When set, Stream resumes from it rather than from File:Offset,
	// because a GTID position survives a fail-over to another server.
	GTID string `json:"gtid,omitempty"`
}

// String formats the position for logs: "mariadb-bin.000003:1547", plus
// " gtid=0-1-12" when the GTID set is known.
func (p Position) String() string {
	s := ""
	if p.File != "" || p.Offset != 0 {
		s = p.File + ":" + strconv.FormatUint(uint64(p.Offset), 10)
	}
	if p.GTID != "" {
		if s != "" {
			s += " "
		}
		s += "gtid=" + p.GTID
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// IsZero reports whether p names no position at all, e.g. because none was
// ever saved.
func (p Position) IsZero() bool { return p.File == "" && p.Offset == 0 && p.GTID == "" }

// Table is one watched table: the only tables whose rows are decoded and
// reported.
type Table struct {
	// Name is the full table name, Drupal prefix included (e.g.
	// "main_users_field_data"). It is compared as a whole name ("users"
	// does not match "users_data") and as the server compares names:
	// exactly with lower_case_table_names=0, case-insensitively with 1 or
	// 2.
	Name string
	// KeyColumn is the column holding the uid: "uid" (users,
	// users_field_data) or "entity_id" (user__*). It must be an integer
	// column.
	KeyColumn string
	// Columns, when not empty, are the only columns whose change counts: an
	// UPDATE row whose before and after images agree on all of them touches
	// no uid, and a row DELETEd and INSERTed again within one transaction
	// with the same values in all of them touches no uid either.
	// (users_field_data: Drupal's logins are bare UPDATEs of login/access,
	// and a save DELETEs and re-INSERTs every row; the agent passes only the
	// columns its mapping reads plus uid, langcode, default_langcode.)
	// Empty means every column counts: every row event touches its uid.
	Columns []string
	// RoleColumn, when set, names a column holding a role's machine name
	// (user__roles.roles_target_id): a membership row inserted or deleted
	// touches that role too, unless the same transaction deletes and
	// inserts it again for the same uid (Drupal's rewrite of a user's
	// roles).
	RoleColumn string
	// RoleConfig marks Drupal's config table (KeyColumn unused): a row in
	// collection "" named RoleConfigPrefix+<id> touches role <id>; every
	// other configuration object is skipped unread.
	RoleConfig bool
}

// Config configures a Streamer.
type Config struct {
	// DSN is a go-sql-driver DSN
	// (user:pass@tcp(host:port)/drupaldb?tls=...). Its database name is the
	// watched schema, compared with the binlog's as the server compares
	// names (lower_case_table_names); its account needs REPLICATION SLAVE, REPLICATION
	// CLIENT (BINLOG MONITOR) and SELECT on the schema.
	DSN string
	// ServerID is the replica server id the stream registers with: non-zero
	// and unique among the server's replicas (a second replica with the same
	// id makes the server drop the first).
	ServerID uint32
	// Tables are the watched tables, all in the DSN's schema.
	Tables []Table
	// Heartbeat is how often the server sends a heartbeat on an idle
	// stream; default 5s. A stream that receives nothing, not a byte, for
	// 3*Heartbeat is considered dead and reconnected, so a silently broken
	// link never blocks forever; a slow link that keeps delivering bytes
	// is alive however long an event takes to arrive.
	Heartbeat time.Duration
	// Logger receives the package's logs; nil means no logs.
	Logger *zap.Logger
	// OnRowsEvent, when set, is called for every rows event of the watched
	// schema with its table name (for metrics), watched or not. It runs on
	// the streaming goroutine and must be quick.
	OnRowsEvent func(table string)
}

// Notice is one committed transaction.
type Notice struct {
	// UIDs are the uids whose watched rows changed, sorted and unique. Often
	// empty: every transaction is delivered so that its position can be
	// saved.
	UIDs []uint32
	// Roles are the machine names of the roles whose config row or
	// membership rows changed, sorted and unique.
	Roles []string
	// Pos is the position right after this transaction's commit (XID, COMMIT
	// or DDL query event): where to resume once the notice is handled.
	Pos Position
	// Time is the commit event's timestamp (second resolution), for lag.
	Time time.Time
}

// Status is the health of a Streamer, for health checks and metrics.
type Status struct {
	// Connected is true while a binlog dump connection is established.
	Connected bool
	// LastEvent is when the last binlog event (other than a heartbeat) was
	// received; zero if none yet.
	LastEvent time.Time
	// LastHeartbeat is when the last heartbeat was received; zero if none
	// yet. On an idle server heartbeats prove the link is alive.
	LastHeartbeat time.Time
}

// ErrPositionPurged is wrapped by the error Stream returns when the server
// no longer has the requested start position (ERROR 1236 and its GTID
// variants), typically because its binlog files were purged. Retrying
// cannot help: the caller must resynchronise everything and start from
// CurrentPosition.
var ErrPositionPurged = errors.New("binlog position no longer available on the server")

// ErrUnknownColumns is wrapped by the error Stream returns when the column
// names of a watched table cannot be known for certain: the table-map event
// carries no names (binlog_row_metadata is not FULL) and
// information_schema disagrees with the event (the table is gone, or its
// column count or a column's type or length differs because the schema
// changed since the event was written), or a configured column does not
// exist. The stream stops rather
// than guess which column holds the uid; binlog_row_metadata=FULL avoids
// it.
var ErrUnknownColumns = errors.New("column names of a watched table unknown")

// ErrResyncNeeded is wrapped by the error Stream returns when the binlog
// cannot say which users changed: a statement emptied, dropped or renamed
// a watched table (TRUNCATE, DROP TABLE, RENAME TABLE log no rows), a
// session whose binlog_format is not ROW wrote to one (an INSERT, UPDATE,
// DELETE, REPLACE or LOAD DATA logged as its SQL, not its rows), or an
// event would not decode. The error names the statement's verb and table,
// never its text. Retrying would meet the same event; the caller must
// resynchronise everything and stream on from CurrentPosition.
var ErrResyncNeeded = errors.New("the binlog cannot tell which users changed")
