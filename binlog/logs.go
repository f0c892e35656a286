package binlog

// Log message names. They are stable: operators alert on them and the
// README's log table lists them. Details travel in fields.
const (
	// MsgConnected (info) is logged when a binlog dump connection is
	// established, with the start position.
	MsgConnected = "binlog.connected"
	// MsgReconnect (warn) is logged before each reconnect after a network
	// error, read timeout or server restart, with the error, the attempt
	// number, the wait and the position the stream resumes from.
	MsgReconnect = "binlog.reconnect"
	// MsgStopped (info) is logged when Stream returns, with the reason.
	MsgStopped = "binlog.stopped"
	// MsgColumnsLoaded (info) is logged when a watched table's column names
	// are read from information_schema because the binlog carries none
	// (binlog_row_metadata is not FULL).
	MsgColumnsLoaded = "binlog.columns_loaded"
	// MsgUnterminated (warn) is logged when a transaction starts before the
	// previous one was seen to end; the previous one is delivered as if it
	// had ended there.
	MsgUnterminated = "binlog.unterminated_transaction"
	// MsgGTIDUnknown (info) is logged when a stream starts from a file
	// position whose GTID set cannot be known: its notices then carry no
	// GTID.
	MsgGTIDUnknown = "binlog.gtid_unknown"
	// MsgDriver (debug) carries the replication library's own log lines.
	MsgDriver = "binlog.driver"
)
