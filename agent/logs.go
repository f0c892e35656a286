package agent

// Log message names. They are a contract with the dashboards that read the
// logs (README's log table lists each with its fields): change one and
// you break someone's alert.
const (
	// MsgSCIMRequest (info; warn when the server refused it) is one line
	// per SCIM call: op, uid, userName, scim_id, method, path, status,
	// attempt, duration_ms, binlog_pos.
	MsgSCIMRequest = "scim.request"
	// MsgLenientCreate (warn): a POST was answered with 200 (a lenient
	// server handing back the account that already held the userName, or
	// the group that held the displayName) or with an account that
	// differs from what was sent in a mapped attribute; the agent claims
	// it as after a 409 and makes it match. Fields: uid and userName (a
	// user's) or role (a group's), scim_id, status, detail, binlog_pos.
	MsgLenientCreate = "scim.lenient_create"
	// MsgSCIMDryRun (info) is a request --dry-run did not send: op, uid,
	// method, path, body.
	MsgSCIMDryRun = "scim.dry_run"
	// MsgReconcileParked (error): a uid's change failed permanently and
	// waits for its next change, a restart or `scim-agent retry`. A dry
	// run parks nothing and logs it at warn, with dry_run true.
	MsgReconcileParked = "reconcile.parked"
	// MsgReconcileSkipped (info): a change was not sent because its
	// operation is switched off in provisioning.operations, or the account
	// has no userName yet.
	MsgReconcileSkipped = "reconcile.skipped"
	// MsgReconcileWaiting (info): a create waits for another uid's account
	// to release its userName (that uid's deletion or rename is pending,
	// or held by the deletion guard); it is tried again. Fields: uid,
	// userName, detail.
	MsgReconcileWaiting = "reconcile.waiting"
	// MsgReconcileError (warn): a reconcile failed for a reason that is
	// not the user's own (the database went away, the server refused the
	// token) and is tried again with backoff, holding the position.
	// Fields: uid, binlog_pos, attempt, retry_in_ms, error.
	MsgReconcileError = "reconcile.error"
	// MsgReconcileUnchanged (debug): nothing mapped differs; no request.
	MsgReconcileUnchanged = "reconcile.unchanged"
	// MsgPositionSaved (debug): the binlog position was saved.
	MsgPositionSaved = "binlog.position_saved"
	// MsgPositionPurged (error): the saved position is gone from the
	// server; a full sync follows.
	MsgPositionPurged = "binlog.position_purged"
	// MsgColumnsUnknown (error): the binlog holds events of a watched
	// table whose columns cannot be known any more (no row metadata, and
	// the schema changed since); a full sync follows.
	MsgColumnsUnknown = "binlog.columns_unknown"
	// MsgResyncNeeded (error): the binlog cannot tell which users changed
	// (a TRUNCATE, DROP or RENAME of a watched table, or an event that will
	// not decode); a full sync follows. Fields: position, error.
	MsgResyncNeeded = "binlog.resync_needed"
	// MsgSyncStart, MsgSyncProgress and MsgSyncDone (info) frame a full
	// sync: reason, done, total, rate_per_s.
	MsgSyncStart    = "sync.start"
	MsgSyncProgress = "sync.progress"
	MsgSyncDone     = "sync.done"
	// MsgCheckOK (info), MsgCheckWarn (warn) and MsgCheckFailed (error)
	// report the start-up checks: check, detail, fix.
	MsgCheckOK     = "check.ok"
	MsgCheckWarn   = "check.warn"
	MsgCheckFailed = "check.failed"
	// MsgAgentStart and MsgAgentStop (info) frame a run.
	MsgAgentStart = "agent.start"
	MsgAgentStop  = "agent.stop"
	// MsgAdminError (error): the admin listener or the control socket
	// failed, or refused a connection. Field: error.
	MsgAdminError = "admin.error"
	// MsgConfigWarning (warn): a config value that works but should not
	// stay as it is.
	MsgConfigWarning = "config.warning"
)

// Operation labels of SCIM calls (field op).
const (
	OpCreate     = "create"
	OpUpdate     = "update"
	OpDeactivate = "deactivate"
	OpReactivate = "reactivate"
	OpDelete     = "delete"
	OpLookup     = "lookup"
)
