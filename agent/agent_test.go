package agent

import (
	"context"
	"strings"
	"testing"
)

// TestOpenDBSendsAQueryInOneRoundTrip: the reader's pool puts a query's
// arguments into its text, so no statement is prepared (a prepared one
// is a prepare, an execute and a close: two round trips), unless the DSN
// chose otherwise or its collation cannot be escaped client-side.
func TestOpenDBSendsAQueryInOneRoundTrip(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name     string
		params   string
		prepares int
	}{
		{"the agent's default", "", 0},
		{"the DSN says interpolateParams=false", "interpolateParams=false", 1},
		{"a collation the driver will not escape for", "collation=gbk_chinese_ci", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := h.cfg.MySQL.DSN
			if tc.params != "" {
				sep := "?"
				if strings.Contains(dsn[strings.LastIndex(dsn, "/"):], "?") {
					sep = "&"
				}
				dsn += sep + tc.params
			}
			db, err := openDB(dsn, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var got string
			if err := conn.QueryRowContext(ctx, "SELECT CONCAT(?, ?)", "it's ", 2).Scan(&got); err != nil || got != "it's 2" {
				t.Fatalf("SELECT CONCAT(?, ?) = %q, %v", got, err)
			}
			var name string
			var prepares int
			if err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'").Scan(&name, &prepares); err != nil {
				t.Fatal(err)
			}
			if prepares != tc.prepares {
				t.Fatalf("%d statements prepared by a query with arguments, want %d", prepares, tc.prepares)
			}
		})
	}
}
