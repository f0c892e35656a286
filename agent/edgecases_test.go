package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// The edge cases of issue "Fifteen ways to lose, misdirect or stall a
// change", each against the real MariaDB and SCIM server.

// A binlog reader paused by back-pressure must not swallow the wake-up a
// worker needs: an approval (or a sync request) while the reader waits for
// room is taken by a worker.
func TestApprovalWhileReadingIsPausedIsNotLost(t *testing.T) {
	// One worker, and one incomplete transaction fills the queue: the
	// worker goes back to waiting for work after the reader has begun to
	// wait for room.
	h := newHarness(t, withProvisioning("max_deletes: 1\nworkers: 1"))
	uids := h.createMany("bp%d", 3)
	h.start(func(o *Options) { o.MaxPendingTransactions = 1 })
	h.settle()
	h.stop()
	h.delete(uids...)
	h.start(func(o *Options) { o.MaxPendingTransactions = 1 })
	// The first deletion is sent, the second trips the guard and is held,
	// and the third waits in the reader for room.
	eventually(t, "a held deletion and a paused reader", func() bool {
		return h.agent.guard.HeldCount() == 1 && h.agent.work.gate.Paused() == 1 && h.agent.work.depth() == 0
	})
	if n := h.count("DELETE"); n != 1 {
		t.Fatalf("%d DELETEs before the approval, want 1", n)
	}
	if n := h.agent.ApproveDeletes(); n != 1 {
		t.Fatalf("approved %d, want 1", n)
	}
	h.settle()
	if n := h.count("DELETE"); n != 3 {
		t.Fatalf("%d DELETEs after the approval, want 3", n)
	}
	h.assertServerMatchesDB()
}

// Adopting an active account for a blocked Drupal user deactivates it:
// that counts towards the deletion guard like any other deactivation.
func TestAdoptionDeactivatesOnlyWhatTheGuardAllows(t *testing.T) {
	h := newHarness(t, withProvisioning("max_deletes: 2"))
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("blocked%d", i)
		h.create(drupaltest.User{Name: name, Status: 0})
		h.scim.Seed(map[string]any{"userName": name, "active": true})
	}
	h.start()
	h.settle()
	deactivated := func() int {
		n := 0
		for _, u := range h.scim.Users() {
			if u.Get("active") == false {
				n++
			}
		}
		return n
	}
	if n := deactivated(); n != 2 {
		t.Fatalf("%d accounts deactivated by adoption with max_deletes 2, want 2", n)
	}
	if !h.agent.guard.Tripped() || h.agent.guard.HeldCount() != 3 {
		t.Fatalf("guard tripped %v holding %d, want tripped holding 3", h.agent.guard.Tripped(), h.agent.guard.HeldCount())
	}
	if n := len(h.scim.Users()); n != 5 || h.count("POST") != 5 {
		t.Fatalf("%d accounts after %d POSTs: want the 5 adopted, none created", n, h.count("POST"))
	}
	h.agent.ApproveDeletes()
	h.settle()
	if n := deactivated(); n != 5 {
		t.Fatalf("%d accounts deactivated after the approval, want 5", n)
	}
	h.assertServerMatchesDB()
}

// Clearing a user's mail removes the work address the agent manages and
// nothing else: the home address the IdP keeps survives, on PATCH and on
// PUT servers, and a drift repair leaves it alone afterwards.
func TestClearedMailKeepsAddressesOfOtherTypes(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts scimtest.Options
	}{
		{"PATCH", scimtest.Options{Token: testToken}},
		{"PUT", scimtest.Options{Token: testToken, DisablePatch: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withSCIM(tt.opts))
			uid := h.create(drupaltest.User{Name: "nomore", Mail: str("nomore@example.org"), Status: 1})
			h.start()
			h.settle()
			id := h.mustServerUser(uid).ID
			home := map[string]any{"value": "nomore@home.example", "type": "home"}
			h.scim.Edit(id, func(m map[string]any) { m["emails"] = append(m["emails"].([]any), home) })

			h.update(uid, func(u *drupaltest.User) { u.Mail = nil })
			h.settle()
			emails, _ := h.mustServerUser(uid).Get("emails").([]any)
			if len(emails) != 1 || emails[0].(map[string]any)["value"] != "nomore@home.example" {
				t.Fatalf("emails after the mail was cleared = %v, want only the home address", emails)
			}
			h.scim.ResetRequests()
			rep, err := h.agent.RepairDrift(context.Background())
			if err != nil || rep.Drifted != 0 {
				t.Fatalf("drift repair after the mail was cleared: %+v, %v: the home address counts as drift", rep, err)
			}
			for _, r := range h.userRequests() {
				if r.Method != "GET" {
					t.Fatalf("drift repair wrote %s %s", r.Method, r.Path)
				}
			}
		})
	}
}

// A page of the server's users larger than the response limit must not
// stop drift repair for ever: the page size adapts, and an account too
// large to read alone is skipped (and never taken for a missing one).
func TestDriftRepairSurvivesPagesOverTheResponseLimit(t *testing.T) {
	h := newHarness(t)
	uids := h.createMany("big%02d", 60)
	h.start()
	h.settle()
	// 60 accounts of 20 KB make a page of 100 over the 1 MiB limit; one
	// of 1.2 MB is too large even alone.
	for i, uid := range uids {
		size := 20_000
		if i == 30 {
			size = 1_200_000
		}
		h.scim.Edit(h.mustServerUser(uid).ID, func(m map[string]any) { m["nickName"] = strings.Repeat("x", size) })
	}
	drifted := h.mustServerUser(uids[45])
	h.scim.Edit(drifted.ID, func(m map[string]any) { m["displayName"] = "changed by hand" })
	h.scim.ResetRequests()

	rep, err := h.agent.RepairDrift(context.Background())
	if err != nil {
		t.Fatalf("drift repair: %v", err)
	}
	if rep.Drifted != 1 || rep.Checked != 59 || rep.Missing != 0 || rep.Unreadable != 1 {
		t.Fatalf("report = %+v, want 59 checked, 1 drifted, 1 unreadable, none missing", rep)
	}
	if su, _ := h.scim.UserByID(drifted.ID); su.Get("displayName") != "big45" {
		t.Fatalf("displayName = %v, want Drupal's back", su.Get("displayName"))
	}
	if n := h.count("POST"); n != 0 {
		t.Fatalf("%d POSTs: an account too large to read was taken for a missing one", n)
	}
}

// A 2xx answer that is not SCIM (a proxy's HTML page) for one user must
// not stall everything: after a few attempts the user is parked with the
// reason and the rest flows, at a first start and while streaming.
func TestUndecodableAnswerParksTheUserAfterAFewAttempts(t *testing.T) {
	waf := func(method string, attrs map[string]any) *scimtest.Fault {
		if name, _ := attrs["userName"].(string); strings.HasPrefix(name, "waf") {
			return &scimtest.Fault{Status: 200, Body: []byte("<html><body>Request blocked by the firewall</body></html>")}
		}
		return nil
	}
	h := newHarness(t)
	h.scim.Reject(waf)
	first := h.create(drupaltest.User{Name: "waf-first", Status: 1})
	h.create(drupaltest.User{Name: "fine-first", Status: 1})
	h.start()
	h.settle() // the first start's full sync ends
	later := h.create(drupaltest.User{Name: "waf-later", Status: 1})
	h.create(drupaltest.User{Name: "fine-later", Status: 1})
	h.settle() // the position passes the stream's undecodable answer

	parked, err := ParkedUsers(h.agent.store)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].UID != first || parked[1].UID != later {
		t.Fatalf("parked = %+v, want uids %d and %d", parked, first, later)
	}
	for _, p := range parked {
		if p.Op != OpCreate || !strings.Contains(p.Detail, "not valid SCIM") || !strings.Contains(p.Detail, "text/html") {
			t.Fatalf("parked %+v: want op create and the reason", p)
		}
	}
	for _, name := range []string{"fine-first", "fine-later"} {
		if _, ok := h.scim.UserByUserName(name); !ok {
			t.Fatalf("%s not created", name)
		}
	}
	if n := h.postsByUserName()["waf-later"]; n != maxInvalidAnswerAttempts {
		t.Fatalf("%d POSTs of waf-later, want %d attempts", n, maxInvalidAnswerAttempts)
	}
}

// A transaction written to the binlog before the full sync notes its
// position but not yet visible when the sync lists the users (here an XA
// transaction prepared before and committed after) must still be
// provisioned: the listing waits for it.
func TestFullSyncSeesATransactionCommittedAfterItsPosition(t *testing.T) {
	h := newHarness(t)
	h.create(drupaltest.User{Name: "visible", Status: 1})
	ctx := context.Background()
	conn, err := h.db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	uuid := drupaltest.NewUUID()
	for _, q := range []string{
		"XA START 'late'",
		"INSERT INTO users (uid, uuid, langcode) VALUES (50, '" + uuid + "', 'en')",
		`INSERT INTO users_field_data (uid, langcode, preferred_langcode, name, pass, mail, status, created, changed, access, login, init, default_langcode)
			VALUES (50, 'en', 'en', 'late', '$2y$10$notloggedanywhere', 'late@example.org', 1, 1, 1, 0, 0, 'late@example.org', 1)`,
		"XA END 'late'",
		"XA PREPARE 'late'",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	h.start()
	// The sync has noted its position: it either waits in its listing
	// for the prepared transaction's locks, or (the defect) has listed
	// without it and ended.
	eventually(t, "the full sync to wait for the prepared transaction or end", func() bool {
		return h.agent.kinds.users.reader.Conflicts() > 0 || h.agent.saved.synced.Load()
	})
	if _, err := conn.ExecContext(ctx, "XA COMMIT 'late'"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if _, ok := h.scim.UserByUserName("late"); !ok {
		t.Fatal("the user committed after the sync's position is not on the server")
	}
	h.assertServerMatchesDB()
}

// A uid deleted and created again for another person (a new uuid) is a
// deletion of the old account and a creation of a new one: the newcomer
// never takes over the previous person's account.
func TestReusedUIDGetsANewAccount(t *testing.T) {
	tests := []struct {
		name        string
		onDelete    string
		agentDown   bool // the reuse happens while no agent runs
		sameName    bool
		wantOldGone bool // the old account is deleted, not deactivated
		deleteFirst bool // the deletion is handled before the uid comes back
	}{
		{"one transaction while streaming", "delete", false, false, true, false},
		{"while the agent is down", "delete", true, false, true, false},
		{"same userName, while the agent is down", "delete", true, true, true, false},
		{"deactivate: the old account is not reactivated", "deactivate", false, false, false, true},
		{"deactivate, while the agent is down", "deactivate", true, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withProvisioning("on_delete: "+tt.onDelete))
			uid := h.create(drupaltest.User{Name: "first", Mail: str("first@example.org"), Status: 1})
			h.start()
			h.settle()
			old := h.mustServerUser(uid)
			if tt.agentDown {
				h.stop()
			}
			name := "second"
			if tt.sameName {
				name = "first"
			}
			newcomer := drupaltest.User{UID: uid, UUID: drupaltest.NewUUID(), Name: name, Mail: str("second@example.org"), Status: 1}
			ctx := context.Background()
			if tt.deleteFirst {
				if err := h.site.Delete(ctx, uid); err != nil {
					t.Fatal(err)
				}
				h.settle()
				if _, err := h.site.Create(ctx, newcomer); err != nil {
					t.Fatal(err)
				}
			} else if err := h.site.Recreate(ctx, newcomer); err != nil {
				t.Fatal(err)
			}
			if tt.agentDown {
				h.start()
			}
			h.settle()

			su := h.mustServerUser(uid)
			if su.ID == old.ID {
				t.Fatalf("the newcomer took over the previous person's account %s: %+v", old.ID, su.Attributes)
			}
			if su.UserName() != name || su.ExternalID() != newcomer.UUID {
				t.Fatalf("new account = %+v", su.Attributes)
			}
			prev, kept := h.scim.UserByID(old.ID)
			switch {
			case tt.wantOldGone && kept:
				t.Fatalf("the previous person's account is still there: %+v", prev.Attributes)
			case !tt.wantOldGone && (!kept || prev.Get("active") != false || prev.UserName() != "first"):
				t.Fatalf("the previous person's account = %+v, %v; want it kept deactivated and unchanged", prev.Attributes, kept)
			}
			rec, _, _ := h.agent.store.Account(uid)
			if rec.SCIMID != su.ID {
				t.Fatalf("state holds %s for uid %d, want the new account %s", rec.SCIMID, uid, su.ID)
			}
		})
	}
}

// A user deleted and another created with the same userName: the new
// user's POST meets the old account (409) until the old one's deletion is
// sent. It must wait for that deletion, not be parked behind it, whether
// the POST comes first or the deletion guard holds the DELETE.
func TestSameNameRecreatedWaitsForTheOldAccountsDeletion(t *testing.T) {
	for _, tt := range []struct {
		name  string
		guard bool // the guard holds the old account's DELETE
	}{
		{"the POST comes first", false},
		{"the guard holds the DELETE", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withProvisioning("max_deletes: 1"))
			other := h.create(drupaltest.User{Name: "other", Status: 1})
			old := h.create(drupaltest.User{Name: "same", Mail: str("old@example.org"), Status: 1})
			h.start()
			h.settle()
			oldID := h.mustServerUser(old).ID
			ctx := context.Background()
			if tt.guard {
				// One deletion uses up max_deletes: the next one is held.
				if err := h.site.Delete(ctx, other); err != nil {
					t.Fatal(err)
				}
				h.settle()
			} else {
				// The old account's DELETE is slow: the new user's POST
				// meets the old account first.
				h.scim.Inject(scimtest.Fault{Method: "DELETE", Times: 1, Latency: time.Second})
			}
			if err := h.site.Delete(ctx, old); err != nil {
				t.Fatal(err)
			}
			uid := h.create(drupaltest.User{Name: "same", Mail: str("new@example.org"), Status: 1})
			conflicted := func() bool {
				for _, r := range h.scim.RequestsMatching("POST", "/Users") {
					if r.Status == 409 {
						return true
					}
				}
				return false
			}
			eventually(t, "the new user's POST to meet the old account", conflicted)
			if tt.guard {
				eventually(t, "the guard to hold the old account's deletion", func() bool { return h.agent.guard.HeldCount() == 1 })
				if parked, _ := ParkedUsers(h.agent.store); len(parked) != 0 {
					t.Fatalf("parked while the old account's deletion is held: %+v", parked)
				}
				h.agent.ApproveDeletes()
			}
			h.settle()
			if parked, _ := ParkedUsers(h.agent.store); len(parked) != 0 {
				t.Fatalf("parked = %+v, want none", parked)
			}
			if _, ok := h.scim.UserByID(oldID); ok {
				t.Fatal("the old account is still there")
			}
			su := h.mustServerUser(uid)
			if su.UserName() != "same" || su.ID == oldID {
				t.Fatalf("new account = %+v", su.Attributes)
			}
			h.assertServerMatchesDB()
		})
	}
}
