package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/state"
)

func TestDriftRepairBothWaysWithPagination(t *testing.T) {
	// Pages of 3 users: the walk must follow startIndex to the end.
	h := newHarness(t, withSCIM(scimtest.Options{Token: testToken, MaxResults: 3}))
	var uids []uint32
	for i := 0; i < 8; i++ {
		uids = append(uids, h.create(drupaltest.User{Name: fmt.Sprintf("d%d", i), Mail: str(fmt.Sprintf("d%d@example.org", i)), Status: 1}))
	}
	stranger := h.scim.Seed(map[string]any{"userName": "stranger", "displayName": "not ours"})
	h.start()
	h.settle()

	// Hands on the server: an edited attribute, a reactivation the
	// agent did not make, an account deleted out of band.
	edited, blocked, removed := h.mustServerUser(uids[1]), h.mustServerUser(uids[6]), h.mustServerUser(uids[7])
	h.scim.Edit(edited.ID, func(m map[string]any) { m["displayName"] = "changed by hand" })
	h.update(uids[6], func(u *drupaltest.User) { u.Status = 0 })
	h.settle()
	h.scim.Edit(blocked.ID, func(m map[string]any) { m["active"] = true })
	h.scim.Remove(removed.ID)
	// An orphan: the Drupal user goes while the agent does not look (its
	// position skips the deletion).
	orphan := h.mustServerUser(uids[2])
	h.stop()
	if err := h.site.Delete(context.Background(), uids[2]); err != nil {
		t.Fatal(err)
	}
	h.skipBinlog()
	// And a Drupal user the agent never saw.
	unseen := h.create(drupaltest.User{Name: "unseen", Status: 1})
	h.skipBinlog()
	h.start()
	h.settle()
	h.scim.ResetRequests()

	rep, err := h.agent.RepairDrift(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 8 || rep.Drifted != 2 || rep.Orphans != 1 || rep.Missing != 1 || rep.Unprovisioned != 1 {
		t.Fatalf("report = %+v", rep)
	}
	if pages := h.scim.CountRequests("GET", "/Users"); pages < 3 {
		t.Fatalf("%d GETs of /Users: the walk did not page", pages)
	}
	if su, _ := h.scim.UserByID(edited.ID); su.Get("displayName") != "d1" {
		t.Fatalf("hand-edited displayName = %v, want Drupal's d1 back", su.Get("displayName"))
	}
	if su, _ := h.scim.UserByID(blocked.ID); su.Get("active") != false {
		t.Fatal("hand-reactivated account not deactivated again")
	}
	if _, ok := h.scim.UserByID(orphan.ID); ok {
		t.Fatal("orphan not deleted")
	}
	h.mustServerUser(uids[7])
	h.mustServerUser(unseen)
	su, ok := h.scim.UserByID(stranger)
	if !ok || su.Get("displayName") != "not ours" {
		t.Fatal("an account the agent never provisioned was touched")
	}
	for _, r := range h.userRequests() {
		if strings.Contains(r.Path, stranger) {
			t.Fatalf("request to the stranger's account: %s %s", r.Method, r.Path)
		}
	}
	h.assertServerMatchesDB(stranger)

	// A second run finds nothing to do and writes nothing.
	h.scim.ResetRequests()
	rep, err = h.agent.RepairDrift(context.Background())
	if err != nil || rep.Drifted+rep.Orphans+rep.Missing+rep.Unprovisioned != 0 {
		t.Fatalf("second run = %+v, %v", rep, err)
	}
	for _, r := range h.userRequests() {
		if r.Method != "GET" {
			t.Fatalf("second run wrote: %s %s", r.Method, r.Path)
		}
	}
}

// skipBinlog moves the saved position to the binlog's head while the
// agent is stopped, as if it had missed what was written meanwhile.
func (h *harness) skipBinlog() {
	h.t.Helper()
	if h.agent != nil {
		h.t.Fatal("skipBinlog with the agent running")
	}
	var gtid string
	if err := h.srv.Root().QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		h.t.Fatal(err)
	}
	pos := h.headPosition()
	pos.GTID = gtid
	h.editState(func(store *state.Store) error { return store.PutMeta(positionKey, pos) })
}

func TestScheduledReconcileRunsBesideStreaming(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "sched", Status: 1})
	h.start(func(o *Options) { o.ReconcileInterval = 200 * time.Millisecond })
	h.settle()
	su := h.mustServerUser(uid)
	h.scim.Edit(su.ID, func(m map[string]any) { m["userName"] = "renamed-by-hand" })
	// Streaming goes on meanwhile.
	other := h.create(drupaltest.User{Name: "streamed", Status: 1})
	eventually(t, "the scheduled reconcile to repair the hand edit", func() bool {
		su, _ := h.scim.UserByID(su.ID)
		return su.UserName() == "sched"
	})
	h.settle()
	h.mustServerUser(other)
}

func TestDryRunSendsAndSavesNothing(t *testing.T) {
	h := newHarness(t)
	keep := h.create(drupaltest.User{Name: "keep", Mail: str("keep@example.org"), Status: 1})
	h.start(func(o *Options) { o.DryRun = true })
	h.settle()
	h.create(drupaltest.User{Name: "new", Status: 1})
	h.agent.work.ask([]key{userKey(keep)}, driftCause, true, false) // as a drift repair asks
	h.update(keep, func(u *drupaltest.User) { u.Mail = str("other@example.org") })
	h.settle()
	for _, r := range h.userRequests() {
		if r.Method != "GET" {
			t.Fatalf("dry run sent %s %s", r.Method, r.Path)
		}
	}
	// A dry-run agent's reconciles are the real ones: they use up a
	// request to compare with the server, or it would GET at every change.
	if !h.agent.work.idle() {
		t.Fatal("the dry-run agent left the drift repair's request in place")
	}
	if len(h.scim.Users()) != 0 {
		t.Fatal("dry run created accounts")
	}
	if n, _ := h.agent.store.CountAccounts(); n != 0 {
		t.Fatalf("dry run saved %d accounts", n)
	}
	var pos binlog.Position
	if ok, _ := h.agent.store.Meta(positionKey, &pos); ok {
		t.Fatalf("dry run saved a position: %v", pos)
	}
	var dry int
	for _, line := range collectedLines() {
		if strings.Contains(line, `"msg":"scim.dry_run"`) && strings.Contains(line, `"userName\":\"new\"`) {
			dry++
		}
	}
	if dry == 0 {
		t.Fatal("no scim.dry_run line for the created user")
	}
}

func TestSyncWhileRunningGoesThroughTheWorkers(t *testing.T) {
	h := newHarness(t)
	uids := h.createMany("s%d", 10)
	h.start()
	h.settle()
	// The server lost two accounts; a sync finds and recreates them while
	// streaming goes on.
	h.scim.Remove(h.mustServerUser(uids[3]).ID)
	h.scim.Edit(h.mustServerUser(uids[4]).ID, func(m map[string]any) { m["active"] = false })
	h.scim.ResetRequests()
	done := make(chan []Result)
	go func() {
		res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: uids}, false)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	h.update(uids[5], func(u *drupaltest.User) { u.Mail = str("s5@example.org") })
	res := <-done
	h.settle()
	got := map[uint32]Outcome{}
	for _, r := range res {
		got[r.UID] = r.Outcome
	}
	if len(res) != 10 || got[uids[3]] != Created || got[uids[4]] != Reactivated || got[uids[0]] != Unchanged {
		t.Fatalf("results = %+v", res)
	}
	if n := h.count("POST"); n != 1 {
		t.Fatalf("%d POSTs, want 1 (the lost account)", n)
	}
	h.assertServerMatchesDB()
	if n, _ := h.agent.store.CountAccounts(); n != 10 {
		t.Fatalf("state holds %d accounts, want 10", n)
	}
}

func TestRetryParkedAfterTheServerIsFixed(t *testing.T) {
	h := newHarness(t)
	reject := true
	h.scim.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if name, _ := attrs["userName"].(string); reject && name == "picky" {
			return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "no thanks"}
		}
		return nil
	})
	h.start()
	h.settle()
	uid := h.create(drupaltest.User{Name: "picky", Status: 1})
	h.settle()
	if p, _ := ParkedUsers(h.agent.store); len(p) != 1 {
		t.Fatalf("parked = %+v", p)
	}
	h.scim.Reject(nil)
	_ = reject
	res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, false)
	if err != nil || len(res) != 1 || res[0].Outcome != Created {
		t.Fatalf("retry = %+v, %v", res, err)
	}
	if p, _ := ParkedUsers(h.agent.store); len(p) != 0 {
		t.Fatalf("still parked: %+v", p)
	}
}

func TestDeletionGuardHoldsAndReleases(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 3\nmax_deletes_window: 10m"))
	uids := h.createMany("g%d", 8)
	h.start()
	h.settle()
	h.delete(uids[:6]...)
	if !agenttest.Poll(agenttest.Timeout, func() bool { return h.agent.guard.HeldCount() >= 3 }) {
		t.Fatalf("guard holds %d, want 3", h.agent.guard.HeldCount())
	}
	// Creates and updates keep flowing while deletions are held.
	created := h.create(drupaltest.User{Name: "flowing", Status: 1})
	h.update(uids[7], func(u *drupaltest.User) { u.Mail = str("g7@example.org") })
	eventually(t, "creates to flow while the guard holds deletions", func() bool {
		_, ok := h.serverUser(h.load(created).UUID)
		return ok && h.agent.work.depth() == 0
	})
	if n := h.count("DELETE"); n != 3 {
		t.Fatalf("%d DELETEs sent, want exactly the 3 allowed", n)
	}
	if !h.agent.guard.Tripped() || !h.agent.Status().Guard.Tripped {
		t.Fatal("guard not tripped")
	}
	if pos, _, _ := h.agent.work.marks.Safe(); atLeast(pos, h.headPosition()) {
		t.Fatal("the position moved past held deletions")
	}
	// A restart keeps holding (the tripped state is saved).
	h.stop()
	h.start()
	if !agenttest.Poll(agenttest.Timeout, func() bool { return h.agent.guard.HeldCount() >= 3 }) {
		t.Fatalf("after restart the guard holds %d, want 3", h.agent.guard.HeldCount())
	}
	if n := h.count("DELETE"); n != 3 {
		t.Fatalf("%d DELETEs after the restart, want still 3", n)
	}
	// Approve over the control socket, as `scim-agent approve-deletes` does.
	h.waitSocket()
	resp, err := controlClient(h.socketPath()).Post("http://scim-agent/approve-deletes", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var approved struct{ Released int }
	json.Unmarshal(body, &approved)
	if resp.StatusCode != 200 || approved.Released != 3 {
		t.Fatalf("approve: %d %s", resp.StatusCode, body)
	}
	h.settle()
	if n := h.count("DELETE"); n != 6 {
		t.Fatalf("%d DELETEs after approval, want 6", n)
	}
	if h.agent.guard.Tripped() {
		t.Fatal("guard still tripped")
	}
	h.assertServerMatchesDB()
}

func TestDeletionGuardTrippedByAFullSyncKeepsStreaming(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 1\nmax_deletes_window: 10m"))
	gone := h.createMany("s%d", 3)
	h.create(drupaltest.User{Name: "stays", Status: 1})
	h.start()
	h.settle()
	h.stop()
	// The three leave while no agent runs, and the saved position is lost
	// (as after a purge): the next start finds them by a full sync, which
	// the binlog will never name them to again.
	h.delete(gone...)
	h.editState(func(store *state.Store) error { return store.DeleteMeta(positionKey) })

	h.start()
	// The sync ends although two of its deletions are held, and streaming
	// carries a new user to the server.
	created := h.create(drupaltest.User{Name: "after-sync", Status: 1})
	h.settle()
	h.mustServerUser(created)
	if n, held := h.count("DELETE"), h.agent.guard.HeldCount(); n != 1 || held != 2 {
		t.Fatalf("%d DELETEs and %d held, want 1 and 2", n, held)
	}

	// Approved while no agent runs, the held deletions go at the next
	// start, although nothing in the binlog names them.
	h.stop()
	h.editState(ApproveStored)
	// The server is down when they go, and the agent is stopped before
	// it is back: the approval must outlive the DELETEs cut short.
	h.scim.Inject(scimtest.Fault{Method: "DELETE", Status: http.StatusServiceUnavailable})
	h.start(func(o *Options) { o.ShutdownTimeout = 200 * time.Millisecond })
	eventually(t, "the approved deletions to be tried", func() bool {
		return len(deleted(h, http.StatusServiceUnavailable)) >= 2
	})
	h.stop()
	h.scim.ClearFaults()
	h.start()
	h.settle()
	if n := len(deleted(h, http.StatusNoContent)); n != 3 {
		t.Fatalf("%d DELETEs done after approval, want 3", n)
	}
	if h.agent.guard.Tripped() || len(h.agent.guard.Released()) != 0 {
		t.Fatalf("guard after approval: tripped %v, approved-not-sent %v", h.agent.guard.Tripped(), h.agent.guard.Released())
	}
	h.assertServerMatchesDB()
}

// deleted returns the paths of the DELETE requests answered status.
func deleted(h *harness, status int) []string {
	var paths []string
	for _, r := range h.scim.RequestsMatching("DELETE", "/Users") {
		if r.Status == status {
			paths = append(paths, r.Path)
		}
	}
	return paths
}

func TestDeletionGuardDropsAHoldNoLongerNeeded(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 1\nmax_deletes_window: 10m"))
	first := h.create(drupaltest.User{Name: "first", Status: 1})
	flapper := h.create(drupaltest.User{Name: "flapper", Status: 1})
	later := h.create(drupaltest.User{Name: "later", Status: 1})
	h.start()
	h.settle()
	block := func(uid uint32, status int) {
		h.update(uid, func(u *drupaltest.User) { u.Status = status })
	}
	waitHeld := func(n int) {
		t.Helper()
		if !agenttest.Poll(agenttest.Timeout, func() bool { return h.agent.guard.HeldCount() == n }) {
			t.Fatalf("guard holds %d, want %d", h.agent.guard.HeldCount(), n)
		}
	}
	block(first, 0)
	h.settle()
	block(flapper, 0) // over the limit: held
	waitHeld(1)
	// Unblocked before anybody approved: nothing is left to hold.
	block(flapper, 1)
	h.settle()
	waitHeld(0)
	if n := h.agent.ApproveDeletes(); n != 0 {
		t.Fatalf("approval released %d uids, want 0", n)
	}
	// A new window: one deactivation passes, and the flapper's next block
	// must ask the guard like any other, not ride on a stale approval.
	block(later, 0)
	h.settle()
	block(flapper, 0)
	waitHeld(1)
	if !h.agent.guard.Tripped() {
		t.Fatal("guard not tripped by the second deactivation of the window")
	}
	if active := h.mustServerUser(flapper).Get("active"); active != true {
		t.Fatalf("flapper active = %v on the server, want it held back (true)", active)
	}
	if active := h.mustServerUser(later).Get("active"); active != false {
		t.Fatalf("later active = %v on the server, want false", active)
	}
}

func TestDryRunParksNothingAndRaisesNoError(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "forbidden", Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.Inject(scimtest.Fault{Method: "GET", PathPrefix: "/Users/" + id, Status: http.StatusForbidden, Detail: "not for you"})
	res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, true)
	if err != nil || len(res) != 1 || res[0].Outcome != Failed || res[0].Detail != "not for you" {
		t.Fatalf("dry run = %+v, %v; want the failure a real run would park", res, err)
	}
	if p, _ := ParkedUsers(h.agent.store); len(p) != 0 {
		t.Fatalf("a dry run parked %+v", p)
	}
	var lines int
	for _, line := range collectedLines() {
		if strings.Contains(line, `"msg":"reconcile.parked"`) && strings.Contains(line, `"userName":"forbidden"`) {
			lines++
			if !strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, `"dry_run":true`) {
				t.Errorf("dry run logged %s, want level warn with dry_run true", line)
			}
		}
	}
	if lines != 1 {
		t.Fatalf("%d reconcile.parked lines, want 1", lines)
	}
}

func TestDryRunRequestOnALiveAgentLeavesNoTrace(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "drift", Mail: str("drift@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.Edit(id, func(m map[string]any) { m["active"] = false }) // changed by hand on the server
	before := h.agent.Status().Operations
	h.scim.ResetRequests()

	res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, true)
	if err != nil || len(res) != 1 || res[0].Outcome != Reactivated {
		t.Fatalf("dry run = %+v, %v; want the reactivation it would send", res, err)
	}
	for _, r := range h.userRequests() {
		if r.Method != "GET" {
			t.Fatalf("dry run sent %s %s", r.Method, r.Path)
		}
	}
	if after := h.agent.Status().Operations; !maps.Equal(before, after) {
		t.Fatalf("operations counted a dry run: %v → %v", before, after)
	}
	// The dry run is a key of its own: the real reconcile a drift repair
	// asks for still compares with the server and repairs the account.
	if su, _ := h.scim.UserByID(id); su.Get("active") != false {
		t.Fatal("the dry run changed the account")
	}
	if err := h.agent.work.wait(context.Background(), h.agent.work.ask([]key{userKey(uid)}, driftCause, true, false)); err != nil {
		t.Fatal(err)
	}
	if su, _ := h.scim.UserByID(id); su.Get("active") != true {
		t.Fatal("the drift repair's reconcile after the dry run did not compare with the server")
	}
}
