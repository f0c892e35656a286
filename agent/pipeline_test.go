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
	"github.com/scim-agent/scim-agent/internal/state"
)

var str = drupaltest.Str

func TestCreateIsOnePOST(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.scim.ResetRequests()

	uid := h.create(drupaltest.User{Name: "alice", Mail: str("alice@example.org"), Status: 1,
		Timezone: "Europe/Paris", Roles: []string{"editor"}})
	h.settle()

	if n := h.count("POST"); n != 1 {
		t.Fatalf("%d POSTs for one created user, want 1", n)
	}
	if n := len(h.userRequests()); n != 1 {
		t.Fatalf("%d requests for one created user, want 1: %+v", n, h.userRequests())
	}
	post := h.scim.RequestsMatching("POST", "/Users")[0]
	if post.ContentType != "application/scim+json" {
		t.Fatalf("Content-Type %q", post.ContentType)
	}
	body := post.JSON()
	if _, leaked := body["pass"]; leaked {
		t.Fatal("password hash sent")
	}
	u := h.load(uid)
	su, ok := h.serverUser(u.UUID)
	if !ok || su.UserName() != "alice" || su.Get("timezone") != "Europe/Paris" || su.Get("displayName") != "alice" ||
		su.Get("preferredLanguage") != "en" || su.Get("active") != true {
		t.Fatalf("server user = %+v", su)
	}
	h.assertServerMatchesDB()
}

func TestMailChangeBySaveIsOnePATCH(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
	h.start()
	h.settle()
	// The IdP keeps a home address beside the work one the agent manages.
	id := h.mustServerUser(uid).ID
	h.scim.Edit(id, func(m map[string]any) {
		m["emails"] = append(m["emails"].([]any), map[string]any{"value": "bob@home.example", "type": "home"})
	})
	h.scim.ResetRequests()

	// Drupal's save: DELETE + INSERT of users_field_data in one transaction.
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
	h.settle()

	// One request: the work address alone, named with a value filter,
	// so the addresses of other types stay without being read.
	reqs := h.userRequests()
	if got := methods(reqs); len(reqs) != 1 || got[0] != "PATCH /Users/"+id {
		t.Fatalf("requests after a mail change = %v, want one PATCH", got)
	}
	ops := reqs[0].JSON()["Operations"].([]any)
	if len(ops) != 1 || ops[0].(map[string]any)["path"] != `emails[type eq "work"].value` || ops[0].(map[string]any)["value"] != "robert@example.org" {
		t.Fatalf("PATCH operations = %v, want only the work address", ops)
	}
	var home bool
	for _, e := range h.mustServerUser(uid).Get("emails").([]any) {
		if e := e.(map[string]any); e["type"] == "home" && e["value"] == "bob@home.example" {
			home = true
		}
	}
	if !home {
		t.Fatalf("the home address is gone: emails = %v", h.mustServerUser(uid).Get("emails"))
	}
	h.assertServerMatchesDB()
}

func methods(reqs []scimtest.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Method + " " + r.Path
	}
	return out
}

func TestLoginsAndNoOpSavesSendNothing(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "carol", Mail: str("carol@example.org"), Status: 1, Translations: []string{"fr"}})
	h.start()
	h.settle()
	h.scim.ResetRequests()

	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if err := h.site.Login(ctx, uid, time.Now().Unix()+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A save that changes nothing mapped (here: a password rehash).
	h.update(uid, func(u *drupaltest.User) { u.Pass = "$S$Erehashed0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ" })
	// A save that changes nothing at all.
	h.update(uid, func(u *drupaltest.User) {})
	h.settle()
	// (The readiness probe's GET /ServiceProviderConfig may run meanwhile;
	// it is not caused by the changes.)
	if reqs := h.scim.RequestsMatching("", "/Users"); len(reqs) != 0 {
		t.Fatalf("%d requests after logins and no-op saves, want 0: %v", len(reqs), methods(reqs))
	}
}

func TestBlockUnblockRename(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "dave", Mail: str("dave@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.ResetRequests()

	h.update(uid, func(u *drupaltest.User) { u.Status = 0 })
	h.settle()
	if su := h.mustServerUser(uid); su.Get("active") != false {
		t.Fatalf("after block active = %v", su.Get("active"))
	}
	h.update(uid, func(u *drupaltest.User) { u.Status = 1 })
	h.settle()
	if su := h.mustServerUser(uid); su.Get("active") != true {
		t.Fatalf("after unblock active = %v", su.Get("active"))
	}
	h.update(uid, func(u *drupaltest.User) { u.Name = "david" })
	h.settle()
	su := h.mustServerUser(uid)
	if su.ID != id || su.UserName() != "david" {
		t.Fatalf("after rename: id %s userName %s, want id %s userName david", su.ID, su.UserName(), id)
	}
	if got := methods(h.userRequests()); len(got) != 3 || h.count("PATCH") != 3 {
		t.Fatalf("requests = %v, want three PATCHes", got)
	}
	h.assertServerMatchesDB()
}

func (h *harness) mustServerUser(uid uint32) scimtest.User {
	h.t.Helper()
	u := h.load(uid)
	su, ok := h.serverUser(u.UUID)
	if !ok {
		h.t.Fatalf("uid %d (%s) not on the server", uid, u.Name)
	}
	return su
}

func TestDeleteSendsDELETE(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "erin", Mail: str("erin@example.org"), Status: 1, Roles: []string{"editor"}})
	keep := h.create(drupaltest.User{Name: "frank", Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.ResetRequests()

	if err := h.site.Delete(context.Background(), uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := methods(h.userRequests()); len(got) != 1 || got[0] != "DELETE /Users/"+id {
		t.Fatalf("requests = %v, want one DELETE /Users/%s", got, id)
	}
	if _, ok := h.scim.UserByID(id); ok {
		t.Fatal("user still on the server")
	}
	if _, known, _ := h.agent.store.Account(uid); known {
		t.Fatal("state still holds the deleted uid")
	}
	h.mustServerUser(keep)
	h.assertServerMatchesDB()
}

func TestDeleteWithOnDeleteDeactivate(t *testing.T) {
	h := newHarness(t, withProvisioning("on_delete: deactivate"))
	uid := h.create(drupaltest.User{Name: "gina", Mail: str("gina@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.ResetRequests()

	if err := h.site.Delete(context.Background(), uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	reqs := h.userRequests()
	if len(reqs) != 1 || reqs[0].Method != "PATCH" {
		t.Fatalf("requests = %v, want one PATCH", methods(reqs))
	}
	su, ok := h.scim.UserByID(id)
	if !ok || su.Get("active") != false {
		t.Fatalf("server user after delete = %+v, %v; want it kept with active=false", su, ok)
	}
	// A replay of the same deletion sends nothing more.
	h.scim.ResetRequests()
	if _, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, false); err != nil {
		t.Fatal(err)
	}
	if n := len(h.userRequests()); n != 0 {
		t.Fatalf("%d requests reconciling an already deactivated deleted user", n)
	}
}

func TestTranslationsAnonymousNonASCIIAndNullMail(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	translated := h.create(drupaltest.User{Name: "hans", Mail: str("hans@example.org"), Status: 1,
		Langcode: "de", Translations: []string{"en", "fr"}})
	// The translation rows disagree with the default row: only the default counts.
	if _, err := h.db.DB.Exec("UPDATE users_field_data SET timezone = 'UTC', preferred_langcode = 'fr' WHERE uid = ? AND default_langcode = 0", translated); err != nil {
		t.Fatal(err)
	}
	unicode := h.create(drupaltest.User{Name: "Zoë Ødegård 山田 \"quoted\"", Mail: str("zoe@example.org"), Status: 1})
	nomail := h.create(drupaltest.User{Name: "nomail", Status: 1})
	h.settle()

	if su := h.mustServerUser(translated); su.Get("preferredLanguage") != "de" || su.Get("timezone") != nil {
		t.Fatalf("translated user = %+v: want the default row's values", su.Attributes)
	}
	if su := h.mustServerUser(unicode); su.UserName() != "Zoë Ødegård 山田 \"quoted\"" {
		t.Fatalf("non-ASCII userName = %q", su.UserName())
	}
	if su := h.mustServerUser(nomail); su.Get("emails") != nil {
		t.Fatalf("NULL mail sent as %v", su.Get("emails"))
	}
	for _, r := range h.userRequests() {
		if name, _ := r.JSON()["userName"].(string); r.Method == "POST" && name == "" {
			t.Fatal("uid 0 (anonymous) was sent")
		}
	}
	if n := h.count("POST"); n != 3 {
		t.Fatalf("%d POSTs, want 3 (uid 0 never)", n)
	}
	h.assertServerMatchesDB()
}

func TestInitialSyncProvisionsExistingUsers(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 25; i++ {
		h.create(drupaltest.User{Name: fmt.Sprintf("user%02d", i), Mail: str(fmt.Sprintf("u%d@example.org", i)), Status: 1})
	}
	h.start()
	h.settle()
	if n := h.count("POST"); n != 25 {
		t.Fatalf("%d POSTs in the initial sync, want 25", n)
	}
	h.assertServerMatchesDB()

	// A restart with the saved position sends nothing.
	h.stop()
	h.scim.ResetRequests()
	h.start()
	h.settle()
	for _, r := range h.userRequests() {
		if r.Method != "GET" {
			t.Fatalf("restart sent %s %s", r.Method, r.Path)
		}
	}
}

func TestExistingServerAccountIsAdoptedOn409(t *testing.T) {
	h := newHarness(t)
	seeded := h.scim.Seed(map[string]any{"userName": "Ivy", "active": false, "nickName": "kept",
		"emails": []any{map[string]any{"value": "old@example.org", "type": "work", "primary": true}}})
	h.start()
	h.settle()
	uid := h.create(drupaltest.User{Name: "ivy", Mail: str("ivy@example.org"), Status: 1})
	h.settle()

	su := h.mustServerUser(uid)
	if su.ID != seeded {
		t.Fatalf("server account %s, want the existing %s adopted", su.ID, seeded)
	}
	if n := len(h.scim.Users()); n != 1 {
		t.Fatalf("%d accounts on the server, want 1 (no duplicate)", n)
	}
	if su.Get("nickName") != "kept" {
		t.Fatal("adoption dropped an attribute the agent does not manage")
	}
	if h.count("POST") != 1 {
		t.Fatalf("%d POSTs, want exactly the one answered 409", h.count("POST"))
	}
	h.assertServerMatchesDB()
}

func TestForeignAccountIsNeitherAdoptedNorDeleted(t *testing.T) {
	h := newHarness(t)
	foreign := h.scim.Seed(map[string]any{"userName": "ivan", "externalId": "another-directory-7", "active": true})
	h.start()
	h.settle()
	uid := h.create(drupaltest.User{Name: "ivan", Mail: str("ivan@example.org"), Status: 1})
	h.settle()
	parked, err := ParkedUsers(h.agent.store)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].UID != uid || !strings.Contains(parked[0].Parked.Detail, "another-directory-7") {
		t.Fatalf("parked = %+v, want uid %d parked naming the other owner", parked, uid)
	}

	// Deleting the Drupal user must not delete the account it never owned.
	h.scim.ResetRequests()
	if err := h.site.Delete(context.Background(), uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if n := h.count("DELETE") + h.count("PATCH") + h.count("PUT"); n != 0 {
		t.Fatalf("%d writes after deleting a user whose server account is foreign: %v", n, methods(h.userRequests()))
	}
	if _, ok := h.scim.UserByID(foreign); !ok {
		t.Fatal("the foreign account was deleted")
	}
	if _, known, _ := h.agent.store.Account(uid); known {
		t.Fatal("state still holds the deleted uid")
	}
}

func TestOutageAnd429LoseNothing(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.scim.Inject(scimtest.Fault{Method: "POST", PathPrefix: "/Users", Times: 3, Status: 429, RetryAfter: "1"})
	a := h.create(drupaltest.User{Name: "jack", Mail: str("jack@example.org"), Status: 1})
	h.settle()
	h.mustServerUser(a)

	h.scim.SetDown(true)
	h.createMany("down%d", 5)
	h.update(a, func(u *drupaltest.User) { u.Mail = str("jack@new.example.org") })
	// Wait until the outage has refused the agent twice (jack's four
	// POSTs above count for nothing here: waiting for five POSTs in all
	// let a busy machine end the outage after one refusal).
	agenttest.Poll(20*time.Second, func() bool {
		n := 0
		for _, r := range h.scim.RequestsMatching("POST", "/Users") {
			if r.Status == 503 {
				n++
			}
		}
		return n >= 2
	})
	if pos, _, _ := h.agent.work.marks.Safe(); atLeast(pos, h.headPosition()) {
		t.Fatal("the position moved past changes the server has not taken")
	}
	h.scim.SetDown(false)
	h.settle()
	h.assertServerMatchesDB()
	refused, created := 0, map[string]int{}
	for _, r := range h.scim.RequestsMatching("POST", "/Users") {
		switch r.Status {
		case 503, 429:
			refused++
		case 201:
			name, _ := r.JSON()["userName"].(string)
			created[name]++
		}
	}
	if refused < 5 {
		t.Fatalf("%d POSTs refused: the outage was never hit", refused)
	}
	for name, n := range created {
		if n != 1 {
			t.Fatalf("%s created %d times", name, n)
		}
	}
	if len(created) != 6 {
		t.Fatalf("%d users created, want 6: %v", len(created), created)
	}
}

func TestBadRequestParksOneUserOnly(t *testing.T) {
	h := newHarness(t)
	h.scim.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if emails, _ := attrs["emails"].([]any); len(emails) > 0 {
			if v, _ := emails[0].(map[string]any)["value"].(string); v == "not-a-mail" {
				return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "emails.value: not an e-mail address"}
			}
		}
		return nil
	})
	h.start()
	h.settle()
	bad := h.create(drupaltest.User{Name: "kim", Mail: str("not-a-mail"), Status: 1})
	good := h.create(drupaltest.User{Name: "lee", Mail: str("lee@example.org"), Status: 1})
	h.settle()

	h.mustServerUser(good)
	if _, ok := h.serverUser(h.load(bad).UUID); ok {
		t.Fatal("the rejected user is on the server")
	}
	parked, err := ParkedUsers(h.agent.store)
	if err != nil || len(parked) != 1 || parked[0].UID != bad || parked[0].Status != 400 ||
		parked[0].Detail != "emails.value: not an e-mail address" {
		t.Fatalf("parked = %+v, %v", parked, err)
	}
	if st := h.agent.Status(); len(st.Parked) != 1 || h.agent.parkedCount() != 1 {
		t.Fatalf("status parked = %+v", st.Parked)
	}
	// Its next change retries it.
	h.update(bad, func(u *drupaltest.User) { u.Mail = str("kim@example.org") })
	h.settle()
	h.mustServerUser(bad)
	if parked, _ := ParkedUsers(h.agent.store); len(parked) != 0 {
		t.Fatalf("still parked after the fix: %+v", parked)
	}
	h.assertServerMatchesDB()
}

func TestLostPOSTResponseIsAdoptedNotDuplicated(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	// The server creates the account but the answer never arrives: the
	// client retries the POST, meets 409 and adopts the account.
	h.scim.Inject(scimtest.Fault{Method: "POST", PathPrefix: "/Users", Times: 1, DropResponse: true})
	uid := h.create(drupaltest.User{Name: "lost", Mail: str("lost@example.org"), Status: 1})
	h.settle()
	if n := len(h.scim.Users()); n != 1 {
		t.Fatalf("%d accounts on the server, want 1", n)
	}
	h.mustServerUser(uid)
	statuses := []int{}
	for _, r := range h.scim.RequestsMatching("POST", "/Users") {
		statuses = append(statuses, r.Status)
	}
	if len(statuses) != 2 || statuses[1] != 409 {
		t.Fatalf("POST statuses = %v, want the applied-but-lost one then a 409", statuses)
	}
}

func TestCrashBetweenPOSTAndSaveLooksBeforePosting(t *testing.T) {
	h := newHarness(t)
	uid := h.create(drupaltest.User{Name: "mid", Mail: str("mid@example.org"), Status: 1})
	u := h.load(uid)
	// State as a crash leaves it: the POST went out (the server has the
	// account), its outcome was never saved.
	id := h.scim.Seed(map[string]any{"userName": "mid", "externalId": u.UUID, "active": true,
		"emails": []any{map[string]any{"value": "mid@example.org", "type": "work", "primary": true}}})
	h.editState(func(store *state.Store) error {
		return store.PutAccount(state.Account{UID: uid, Creating: true, UserName: "mid", ExternalID: u.UUID})
	})
	h.start()
	h.settle()
	if n := h.count("POST"); n != 0 {
		t.Fatalf("%d POSTs: the agent posted again instead of looking the account up", n)
	}
	if su := h.mustServerUser(uid); su.ID != id {
		t.Fatalf("server account %s, want %s", su.ID, id)
	}
	rec, _, _ := h.agent.store.Account(uid)
	if rec.SCIMID != id || rec.Creating {
		t.Fatalf("state = %+v", rec)
	}
}

func TestCrashBetweenPOSTAndSaveThenDeleteTouchesOnlyOurAccount(t *testing.T) {
	tests := []struct {
		name        string
		postArrived bool // the server holds the account the POST made
		wantDeletes int
	}{
		{"the POST made the account: it is deleted", true, 1},
		{"a namesake without our externalId is somebody else's: left alone", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			uid := h.create(drupaltest.User{Name: "midgone", Status: 1})
			u := h.load(uid)
			attrs := map[string]any{"userName": "midgone", "active": true}
			if tt.postArrived {
				attrs["externalId"] = u.UUID
			}
			id := h.scim.Seed(attrs)
			h.editState(func(store *state.Store) error {
				return store.PutAccount(state.Account{UID: uid, Creating: true, UserName: "midgone", ExternalID: u.UUID})
			})
			// Deleted in Drupal before the agent comes back.
			if err := h.site.Delete(context.Background(), uid); err != nil {
				t.Fatal(err)
			}
			h.start()
			h.settle()
			if n := h.count("DELETE"); n != tt.wantDeletes {
				t.Fatalf("%d DELETEs, want %d", n, tt.wantDeletes)
			}
			if _, ok := h.scim.UserByID(id); ok == tt.postArrived {
				t.Fatalf("account %s still there = %v", id, ok)
			}
			if _, known, _ := h.agent.store.Account(uid); known {
				t.Fatal("state still holds the deleted uid")
			}
		})
	}
}

func TestServerWithoutPATCHGetsPUTOfItsOwnCopy(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{Token: testToken, DisablePatch: true}))
	uid := h.create(drupaltest.User{Name: "putty", Mail: str("putty@example.org"), Status: 1})
	h.start()
	h.settle()
	su := h.mustServerUser(uid)
	// An attribute the agent does not manage, set on the server.
	h.scim.Edit(su.ID, func(m map[string]any) { m["title"] = "set by the IdP" })
	h.scim.ResetRequests()

	h.update(uid, func(u *drupaltest.User) { u.Mail = str("putty@new.example.org"); u.Status = 0 })
	h.settle()
	if got := methods(h.userRequests()); len(got) != 2 || got[0] != "GET /Users/"+su.ID || got[1] != "PUT /Users/"+su.ID {
		t.Fatalf("requests = %v, want GET then PUT of the account", got)
	}
	if h.count("PATCH") != 0 {
		t.Fatal("PATCH sent to a server without PATCH")
	}
	su = h.mustServerUser(uid)
	if su.Get("title") != "set by the IdP" {
		t.Fatal("the PUT dropped an attribute the agent does not manage")
	}
	h.assertServerMatchesDB()
}
