package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

func TestOperationsSwitchedOff(t *testing.T) {
	tests := []struct {
		name    string
		ops     string
		change  func(h *harness, uid uint32)
		method  string // the request the change would have caused
		outcome Outcome
	}{
		{"create off", "[update, deactivate, delete]", func(h *harness, _ uint32) {
			h.create(drupaltest.User{Name: "newcomer", Status: 1})
		}, "POST", Skipped},
		{"update off", "[create, deactivate, delete]", func(h *harness, uid uint32) {
			h.update(uid, func(u *drupaltest.User) { u.Mail = str("changed@example.org") })
		}, "PATCH", Skipped},
		{"deactivate off", "[create, update, delete]", func(h *harness, uid uint32) {
			h.update(uid, func(u *drupaltest.User) { u.Status = 0 })
		}, "PATCH", Skipped},
		{"delete off", "[create, update, deactivate]", func(h *harness, uid uint32) {
			h.site.Delete(context.Background(), uid)
		}, "DELETE", Skipped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withProvisioning("operations: "+tt.ops))
			uid := h.create(drupaltest.User{Name: "existing", Mail: str("e@example.org"), Status: 1})
			if tt.name == "create off" {
				// Provision the existing user with create on, then switch it off.
				h.scim.Seed(map[string]any{"userName": "existing", "externalId": h.load(uid).UUID, "active": true,
					"emails": []any{map[string]any{"value": "e@example.org", "type": "work", "primary": true}}})
			}
			h.start()
			h.settle()
			h.scim.ResetRequests()
			tt.change(h, uid)
			h.settle()
			if n := h.count(tt.method); n != 0 {
				t.Fatalf("%d %s requests with the operation switched off", n, tt.method)
			}
			if got := h.agent.tally.counts.snapshot()[tt.outcome]; got == 0 {
				t.Fatalf("no %s reconcile counted: %v", tt.outcome, h.agent.tally.counts.snapshot())
			}
		})
	}
}

func TestDatabaseErrorHoldsPositionAndRetries(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.stop()
	uid := h.create(drupaltest.User{Name: "patient", Status: 1})
	// The table the reader needs is gone for a while (a botched
	// migration): reads fail, the position waits, the worker retries.
	root := h.srv.Root()
	rename := func(from, to string) {
		t.Helper()
		if _, err := root.Exec(fmt.Sprintf("RENAME TABLE `%s`.`%s` TO `%s`.`%s`", h.db.Name, from, h.db.Name, to)); err != nil {
			t.Fatal(err)
		}
	}
	rename("users_field_data", "users_field_data_away")
	h.start()
	eventually(t, "a reconcile.error logged while reads fail", func() bool {
		return logged(`"msg":"reconcile.error"`, fmt.Sprintf(`"uid":%d`, uid))
	})
	if pos, _, _ := h.agent.work.marks.Safe(); atLeast(pos, h.headPosition()) {
		t.Fatal("the position moved past a change that could not be read")
	}
	rename("users_field_data_away", "users_field_data")
	h.settle()
	h.mustServerUser(uid)
}

// logged reports whether one collected log line holds every part.
func logged(parts ...string) bool {
	for _, line := range collectedLines() {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestBinlogReconnectLosesNothing(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	before := h.create(drupaltest.User{Name: "before-kill", Status: 1})
	h.killDumpConnections()
	after := h.create(drupaltest.User{Name: "after-kill", Status: 1})
	h.settle()
	h.mustServerUser(before)
	h.mustServerUser(after)
	if !logged(`"msg":"binlog.reconnect"`) {
		t.Fatal("no binlog.reconnect logged")
	}
	for name, n := range h.postsByUserName() {
		if n != 1 {
			t.Fatalf("%s POSTed %d times across the reconnect", name, n)
		}
	}
}

func TestPurgedPositionFallsBackToAFullSync(t *testing.T) {
	srv := testdb.StartPrivate(t, testdb.Options{})
	h := newHarness(t, withServer(srv))
	kept := h.create(drupaltest.User{Name: "kept", Mail: str("kept@example.org"), Status: 1})
	gone := h.create(drupaltest.User{Name: "gone", Status: 1})
	h.start()
	h.settle()
	h.stop()
	// While the agent is down: changes, then the binlogs holding them
	// are purged.
	h.update(kept, func(u *drupaltest.User) { u.Mail = str("kept@new.example.org") })
	h.site.Delete(context.Background(), gone)
	added := h.create(drupaltest.User{Name: "added", Status: 1})
	root := srv.Root()
	// The server keeps a file a dump thread still reads: wait until the
	// stopped agent's connection is gone.
	eventually(t, "the stopped agent's binlog dump connection to close", func() bool {
		var n int
		root.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&n)
		return n == 0
	})
	if _, err := root.Exec("FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	head := h.headPosition()
	agenttest.PurgeBinaryLogs(t, root, head.File)
	h.start()
	h.settle()
	if !logged(`"msg":"binlog.position_purged"`) {
		t.Fatal("no error-level binlog.position_purged line")
	}
	h.mustServerUser(added)
	h.assertServerMatchesDB()
	// And it streams on from the current position.
	later := h.create(drupaltest.User{Name: "later", Status: 1})
	h.settle()
	h.mustServerUser(later)
}

func TestMinimalRowMetadataStillWorks(t *testing.T) {
	srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=MINIMAL"}})
	h := newHarness(t, withServer(srv))
	results := Check(context.Background(), h.cfg)
	if r, _ := findCheck(results, "mysql.binlog_row_metadata"); !r.Warn || AnyFailed(results) {
		t.Fatalf("check with MINIMAL metadata: %+v", results)
	}
	h.start()
	h.settle()
	uid := h.create(drupaltest.User{Name: "minimal", Mail: str("m@example.org"), Status: 1})
	h.settle() // else the create may be read after the update: one POST, no PATCH (coalescing)
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("m2@example.org") })
	for i := 0; i < 20; i++ {
		h.site.Login(context.Background(), uid, time.Now().Unix()+int64(i))
	}
	h.settle()
	h.assertServerMatchesDB()
	if n := h.count("PATCH"); n != 1 {
		t.Fatalf("%d PATCHes, want 1 (logins filtered with names from information_schema)", n)
	}
	if !logged(`"msg":"binlog.columns_loaded"`) {
		t.Fatal("columns not loaded from information_schema")
	}
}

func TestProgressIsLogged(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 0
	h := newHarness(t, withSCIM(scimtest.Options{Token: testToken, MaxResults: 2}))
	for i := 0; i < 5; i++ {
		h.create(drupaltest.User{Name: fmt.Sprintf("p%d", i), Status: 1})
	}
	h.start()
	h.settle()
	if _, err := h.agent.RepairDrift(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !logged(`"msg":"sync.progress"`) || !logged(`"msg":"drift.progress"`) {
		t.Fatal("no progress lines")
	}
}

func TestSchemaChangeWithoutRowMetadataFallsBackToAFullSync(t *testing.T) {
	srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-row-metadata=MINIMAL"}})
	h := newHarness(t, withServer(srv))
	uid := h.create(drupaltest.User{Name: "before", Mail: str("b@example.org"), Status: 1})
	h.start()
	h.settle()
	h.stop()
	// A change, then a schema change, while the agent is down: the old
	// event no longer matches information_schema's columns.
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("after@example.org") })
	if _, err := h.db.DB.Exec("ALTER TABLE users_field_data ADD COLUMN extra INT NULL"); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.settle()
	if !logged(`"msg":"binlog.columns_unknown"`) {
		t.Fatal("no binlog.columns_unknown line")
	}
	h.assertServerMatchesDB()
}

// killDumpConnections kills the agent's binlog dump connections on the
// server, as a network cut or a server restart would.
func (h *harness) killDumpConnections() {
	h.t.Helper()
	// settle can return before the stream has connected after the
	// initial sync: wait for the dump connection to show.
	var ids []int64
	agenttest.Poll(20*time.Second, func() bool {
		rows, err := h.srv.Root().Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' AND USER = ?", "agent_"+h.db.Name)
		if err != nil {
			h.t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		return len(ids) > 0
	})
	killed := 0
	for _, id := range ids {
		if _, err := h.srv.Root().Exec(fmt.Sprintf("KILL %d", id)); err == nil {
			killed++
		}
	}
	if killed == 0 {
		h.t.Fatal("no binlog dump connection to kill")
	}
}

func TestPermanentStreamErrorEndsRunWithTheError(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	// The replication grant is taken away and the connection cut: no
	// reconnect can cure that, and Run must say so instead of hanging.
	if _, err := h.srv.Root().Exec(fmt.Sprintf("REVOKE REPLICATION SLAVE ON *.* FROM 'agent_%s'@'%%'", h.db.Name)); err != nil {
		t.Fatal(err)
	}
	h.killDumpConnections()
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "REPLICATION SLAVE") {
			t.Fatalf("Run returned %v, want the refused replication connection", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the stream stopped for good")
	}
	h.agent.Close()
	h.agent = nil
}

func TestStopWithAFullQueueDuringAnOutageLosesNothing(t *testing.T) {
	h := newHarness(t)
	h.start(func(o *Options) { o.MaxPendingTransactions = 2 })
	h.settle()
	h.scim.SetDown(true)
	uids := h.createMany("full%d", 6)
	// Wait until the binlog reader waits for room in the queue.
	eventually(t, "the queue to fill", func() bool { return h.agent.work.gate.Paused() > 0 })
	h.stop() // fails the test when Run does not return
	h.scim.SetDown(false)
	h.start()
	h.settle()
	for _, uid := range uids {
		h.mustServerUser(uid)
	}
	h.assertServerMatchesDB()
}

func TestStopWhileWaitingForTheSCIMServerAtStartIsClean(t *testing.T) {
	h := newHarness(t)
	h.scim.SetDown(true)
	h.start()
	eventually(t, "the agent to ask for the ServiceProviderConfig", func() bool {
		return h.scim.CountRequests("GET", "/ServiceProviderConfig") > 0
	})
	h.stop() // a stop asked for is not a failure: Run returns nil
}

func TestRefusedTokenSeenByADriftRepairShowsInReadiness(t *testing.T) {
	h := newHarness(t)
	h.create(drupaltest.User{Name: "listed", Status: 1})
	h.start()
	h.settle()
	if !agenttest.Poll(agenttest.Timeout, func() bool { return h.agent.Readiness().Ready }) {
		t.Fatalf("not ready: %+v", h.agent.Readiness())
	}
	h.scim.SetToken("rotated-on-the-server")
	// No change is pending: the drift repair's GET /Users is the only
	// request that meets the refusal.
	if _, err := h.agent.RepairDrift(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("drift repair while refused: %v", err)
	}
	if r := h.agent.Readiness(); r.Ready || !strings.Contains(r.Reason, "401") {
		t.Fatalf("readiness after a refused drift repair = %+v, want not ready because of the 401", r)
	}
	h.scim.SetToken(h.scim.Token)
	if _, err := h.agent.RepairDrift(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.agent.Readiness(); !r.Ready {
		t.Fatalf("readiness once the token works again = %+v", r)
	}
}

func TestRefusedTokenHoldsChangesInsteadOfParkingThem(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.scim.SetToken("rotated-on-the-server")
	uid := h.create(drupaltest.User{Name: "waits", Mail: str("waits@example.org"), Status: 1})
	eventually(t, "a reconcile.error naming the refused token", func() bool {
		return logged(`"msg":"reconcile.error"`, fmt.Sprintf(`"uid":%d`, uid), "refuses the token")
	})
	if p, _ := ParkedUsers(h.agent.store); len(p) != 0 {
		t.Fatalf("a refused token parked users: %+v", p)
	}
	if r := h.agent.Readiness(); r.Ready || !strings.Contains(r.Reason, "401") {
		t.Fatalf("readiness = %+v, want not ready because of the 401", r)
	}
	if pos, _, _ := h.agent.work.marks.Safe(); atLeast(pos, h.headPosition()) {
		t.Fatal("the position moved past a change the server refused")
	}
	// An operator's request meanwhile gets an answer, not a hang.
	res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, false)
	if err != nil || len(res) != 1 || res[0].Outcome != Failed || !strings.Contains(res[0].Detail, "401") {
		t.Fatalf("sync while refused = %+v, %v", res, err)
	}

	// Once the server takes the token again the change goes through,
	// with no restart.
	h.scim.SetToken(h.scim.Token)
	h.settle()
	h.mustServerUser(uid)
	if r := h.agent.Readiness(); !r.Ready {
		t.Fatalf("readiness after the token works again: %+v", r)
	}
	h.assertServerMatchesDB()
}

func TestTruncateOfUserTablesIsCaughtByAFullSync(t *testing.T) {
	h := newHarness(t)
	a := h.create(drupaltest.User{Name: "trunc-a", Status: 1})
	b := h.create(drupaltest.User{Name: "trunc-b", Status: 1})
	h.start()
	h.settle()
	h.mustServerUser(a)
	h.mustServerUser(b)
	// A restore script empties the user tables: no row reaches the
	// binlog, only the statements.
	for _, table := range []string{"users", "users_field_data", "user__roles"} {
		if _, err := h.db.DB.Exec("TRUNCATE TABLE " + table); err != nil {
			t.Fatal(err)
		}
	}
	h.settle()
	if n := len(deleted(h, 204)); n != 2 {
		t.Fatalf("%d DELETEs, want the 2 users the TRUNCATE removed", n)
	}
	if !logged(`"msg":"binlog.resync_needed"`, "TRUNCATE of watched table users") {
		t.Fatal("no binlog.resync_needed line naming the TRUNCATE")
	}
	h.assertServerMatchesDB()
}
