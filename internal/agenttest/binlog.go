package agenttest

import (
	"database/sql"
	"testing"
)

// PurgeBinaryLogs purges every binary log file of the server root is
// connected to (as root) before newest, for a test of a position the
// server no longer has. MariaDB keeps a file until InnoDB has made its
// commits durable (a binlog checkpoint, written in the background), so
// PURGE is repeated until the old files are gone, for up to Timeout.
func PurgeBinaryLogs(t testing.TB, root *sql.DB, newest string) {
	t.Helper()
	var first string
	if !Poll(Timeout, func() bool {
		if _, err := root.Exec("PURGE BINARY LOGS TO '" + newest + "'"); err != nil {
			t.Fatal(err)
		}
		var size int64
		if err := root.QueryRow("SHOW BINARY LOGS").Scan(&first, &size); err != nil {
			t.Fatal(err)
		}
		return first == newest
	}) {
		t.Fatalf("binlog %s still there %s after PURGE BINARY LOGS TO %s", first, Timeout, newest)
	}
}
