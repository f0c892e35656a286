package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/scim-agent/scim-agent/internal/buildinfo"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// The agent against servers that cannot be trusted blindly (README,
// "SCIM servers", what it checks of every answer): each test gives
// scimtest a mode and asserts the server's final state and the requests
// it received.

// A 409 whose lookup meets a filter the server ignores, or a total
// without Resources, is a server fault: the lookup is retried (the
// position held, readiness naming it), nothing is POSTed again, and once
// the server behaves the account is adopted.
func TestUntrustedLookupHoldsTheCreate(t *testing.T) {
	for _, mode := range []scimtest.FilterMode{scimtest.FilterIgnored, scimtest.FilterCountOnly} {
		t.Run(mode.String(), func(t *testing.T) {
			h := newHarness(t, withSCIM(scimtest.Options{Filter: mode}))
			// Somebody else's account first, so that an ignored filter
			// answers it; then ann's, made before the agent ran.
			other := h.scim.Seed(map[string]any{"userName": "zed", "externalId": "not-a-drupal-uuid"})
			h.scim.Seed(map[string]any{"userName": "ann", "displayName": "Old Ann"})
			h.start()
			h.settle()
			h.waitReady()

			uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
			head := h.headPosition()
			eventually(t, "readiness names the untrusted answers", func() bool {
				return strings.Contains(h.agent.Readiness().Reason, "answers cannot be trusted")
			})
			if r := h.agent.Readiness(); r.Ready || !strings.Contains(r.Reason, `userName eq "ann"`) {
				t.Errorf("readiness %+v, want the lookup named", r)
			}
			eventually(t, "the lookup retried", func() bool { return h.scim.CountRequests("GET", "/Users") >= 2 })
			if atLeast(h.agent.SavedPosition(), head) {
				t.Fatalf("the position %v passed the held create (head %v)", h.agent.SavedPosition(), head)
			}
			if n := h.postsByUserName()["ann"]; n != 1 {
				t.Fatalf("%d POSTs for ann while the lookup was untrusted, want 1", n)
			}
			if st := h.agent.Status(); len(st.Parked) != 0 {
				t.Fatalf("parked while the server's answers were untrusted: %+v", st.Parked)
			}

			h.scim.SetFilter(scimtest.FilterHonoured)
			h.settle()
			h.assertServerMatchesDB(other)
			if n := h.postsByUserName()["ann"]; n != 1 {
				t.Errorf("%d POSTs for ann, want 1", n)
			}
			if u := h.mustServerUser(uid); u.Get("displayName") != "ann" {
				t.Errorf("adopted account %+v", u)
			}
			h.waitReady()
			for _, r := range h.userRequests() {
				if r.Method == http.MethodDelete || r.Method == http.MethodPost && r.Status == http.StatusCreated {
					t.Errorf("unexpected %s %s -> %d", r.Method, r.Path, r.Status)
				}
			}
		})
	}
}

// answers lists the requests as "METHOD status", the writes with the
// If-Match they carried ("PATCH 412 if-match=W/\"3\"").
func answers(reqs []scimtest.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = fmt.Sprintf("%s %d", r.Method, r.Status)
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			out[i] += " if-match=" + r.Header.Get("If-Match")
		}
	}
	return out
}

// wantAnswers fails unless the requests are, in order, as described by
// want ("PATCH 412", "GET 200", ...: method and status).
func wantAnswers(t *testing.T, reqs []scimtest.Request, want ...string) {
	t.Helper()
	ok := len(reqs) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = fmt.Sprintf("%s %d", reqs[i].Method, reqs[i].Status) == want[i]
	}
	if !ok {
		t.Fatalf("requests %v, want %v", answers(reqs), want)
	}
}

// emailValues returns the server's addresses of an account by type.
func emailValues(u scimtest.User) map[string]string {
	out := map[string]string{}
	list, _ := u.Get("emails").([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		typ, _ := m["type"].(string)
		v, _ := m["value"].(string)
		out[typ] = v
	}
	return out
}

var homeAddress = map[string]any{"value": "bob@home.example", "type": "home"}

// With ETags, a mail change carries If-Match with the version the agent
// last saw; an admin's edit since (a home address, a title) makes it a
// 412, and the agent reads the account again and sends the change again,
// keeping the edit.
func TestETagStaleVersionIsReadAgain(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{ETags: true}))
	uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	h.scim.Edit(id, func(m map[string]any) {
		m["emails"] = append(m["emails"].([]any), homeAddress)
		m["title"] = "Boss"
	})
	edited, _ := h.scim.UserByID(id)
	h.scim.ResetRequests()

	h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
	h.settle()
	reqs := h.userRequests()
	wantAnswers(t, reqs, "PATCH 412", "GET 200", "PATCH 200")
	wantRetriedAtTheVersionRead(t, reqs, edited.Version)
	u := h.mustServerUser(uid)
	if got := emailValues(u); got["work"] != "robert@example.org" || got["home"] != "bob@home.example" || u.Get("title") != "Boss" {
		t.Fatalf("server account %v: the mail or the admin's edit is lost", u.Attributes)
	}
	h.assertServerMatchesDB()

	// The next change: the list holds a home address now, so the work
	// address alone, with a value filter, conditional on the version of
	// the last PATCH's answer.
	h.scim.ResetRequests()
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("bobby@example.org") })
	h.settle()
	reqs = h.userRequests()
	wantAnswers(t, reqs, "PATCH 200")
	if p := patchPaths(reqs[0]); len(p) != 1 || p[0] != workFilter || reqs[0].Header.Get("If-Match") != u.Version {
		t.Fatalf("PATCH paths %v If-Match %q, want %s conditional on %s", p, reqs[0].Header.Get("If-Match"), workFilter, u.Version)
	}
	if got := emailValues(h.mustServerUser(uid)); got["work"] != "bobby@example.org" || got["home"] != "bob@home.example" {
		t.Fatalf("emails %v", got)
	}
}

// An edit made on the server between the agent's GET and its PATCH (a
// home address added while a sync repairs the mail) gets the PATCH a
// 412: the agent reads again and merges, so the edit survives and the
// mail is Drupal's.
func TestETagEditBetweenGETAndPATCHSurvives(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{ETags: true}))
	uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	// Drift: the work address changed by hand.
	h.scim.Edit(id, func(m map[string]any) {
		m["emails"] = []any{map[string]any{"value": "by-hand@example.org", "type": "work", "primary": true}}
	})
	var once atomic.Bool
	h.scim.BeforeServe(func(r scimtest.Request) {
		if r.Method == http.MethodPatch && once.CompareAndSwap(false, true) {
			h.scim.Edit(id, func(m map[string]any) { m["emails"] = append(m["emails"].([]any), homeAddress) })
		}
	})
	h.scim.ResetRequests()

	res, err := h.agent.SyncNow(context.Background(), Selection{UIDs: []uint32{uid}}, false)
	if err != nil || len(res) != 1 || res[0].Outcome != Updated {
		t.Fatalf("sync: %+v %v", res, err)
	}
	reqs := h.userRequests()
	wantAnswers(t, reqs, "GET 200", "PATCH 412", "GET 200", "PATCH 200")
	if reqs[1].Header.Get("If-Match") == "" || reqs[3].Header.Get("If-Match") == reqs[1].Header.Get("If-Match") {
		t.Errorf("If-Match %v", answers(reqs))
	}
	if got := emailValues(h.mustServerUser(uid)); got["work"] != "bob@example.org" || got["home"] != "bob@home.example" {
		t.Fatalf("emails %v: the concurrent edit or the mail is lost", got)
	}
	h.assertServerMatchesDB()
}

// A server with ETags and no PATCH: the PUT of the account read carries
// If-Match, so an admin's edit made between the GET and the PUT is not
// overwritten with the copy read before it; a DELETE carries it too.
func TestETagOnPUTAndDELETE(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{ETags: true, DisablePatch: true}))
	uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	var once atomic.Bool
	h.scim.BeforeServe(func(r scimtest.Request) {
		if r.Method == http.MethodPut && once.CompareAndSwap(false, true) {
			h.scim.Edit(id, func(m map[string]any) { m["title"] = "set by an admin" })
		}
	})
	h.scim.ResetRequests()

	h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
	h.settle()
	wantAnswers(t, h.userRequests(), "GET 200", "PUT 412", "GET 200", "PUT 200")
	u := h.mustServerUser(uid)
	if emailValues(u)["work"] != "robert@example.org" || u.Get("title") != "set by an admin" {
		t.Fatalf("server account %v: the mail or the admin's edit is lost", u.Attributes)
	}
	h.assertServerMatchesDB()

	// A DELETE with the version of the PUT's answer, stale after another
	// edit: 412, read, DELETE with the version read.
	h.scim.Edit(id, func(m map[string]any) { m["title"] = "edited again" })
	edited, _ := h.scim.UserByID(id)
	h.scim.ResetRequests()
	if err := h.site.Delete(context.Background(), uid); err != nil {
		t.Fatal(err)
	}
	h.settle()
	reqs := h.userRequests()
	wantAnswers(t, reqs, "DELETE 412", "GET 200", "DELETE 204")
	wantRetriedAtTheVersionRead(t, reqs, edited.Version)
	if _, ok := h.scim.UserByID(id); ok {
		t.Fatal("the account is still on the server")
	}
}

// An account that keeps changing under the agent's writes costs a few
// tries, then the reconcile is retried with backoff like an outage (the
// position held, nothing parked) until a write lands.
func TestETagConflictsAreBoundedThenRetried(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{ETags: true}))
	uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
	h.start()
	h.settle()
	id := h.mustServerUser(uid).ID
	var edits atomic.Int32
	h.scim.BeforeServe(func(r scimtest.Request) {
		if r.Method == http.MethodPatch {
			if n := edits.Add(1); n <= maxPreconditionTries+1 {
				h.scim.Edit(id, func(m map[string]any) { m["title"] = fmt.Sprint("edit ", n) })
			}
		}
	})
	h.scim.ResetRequests()
	logsBefore := len(collectedLines())

	h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
	h.settle()
	var statuses []int
	for _, r := range h.scim.RequestsMatching(http.MethodPatch, "/Users") {
		statuses = append(statuses, r.Status)
	}
	if fmt.Sprint(statuses) != fmt.Sprint([]int{412, 412, 412, 412, 200}) {
		t.Fatalf("PATCH answers %v (requests %v)", statuses, answers(h.userRequests()))
	}
	retried := false
	for _, line := range collectedLines()[logsBefore:] {
		retried = retried || strings.Contains(line, `"msg":"reconcile.error"`) && strings.Contains(line, "changed on the server")
	}
	if !retried {
		t.Error("no reconcile.error saying the account kept changing")
	}
	u := h.mustServerUser(uid)
	if emailValues(u)["work"] != "robert@example.org" || u.Get("title") != fmt.Sprint("edit ", maxPreconditionTries+1) {
		t.Fatalf("server account %v", u.Attributes)
	}
	if st := h.agent.Status(); len(st.Parked) != 0 {
		t.Fatalf("parked: %+v", st.Parked)
	}
}

// A lenient server answers the POST of a userName it holds with 200 and
// the old account as it is: the agent makes it match with the PATCH that
// follows (and says so), instead of recording as pushed what the server
// does not hold; an account of another identity is not taken that way.
func TestLenientCreateIsMadeToMatch(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{LenientCreate: true}))
	old := h.scim.Seed(map[string]any{"userName": "ann", "displayName": "Old Ann", "active": false, "title": "kept",
		"emails": []any{map[string]any{"value": "old@example.org", "type": "work", "primary": true}, homeAddress}})
	other := h.scim.Seed(map[string]any{"userName": "cyd", "externalId": "someone-else"})
	h.start()
	h.settle()
	h.waitReady()
	logsBefore := len(collectedLines())

	uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
	h.settle()
	wantAnswers(t, h.userRequests(), "POST 200", "PATCH 200")
	u := h.mustServerUser(uid)
	if u.ID != old || u.Get("title") != "kept" || emailValues(u)["home"] != "bob@home.example" {
		t.Fatalf("server account %v: not the old account made to match", u.Attributes)
	}
	if st := h.agent.Status(); len(st.Parked) != 0 {
		t.Fatalf("parked: %+v", st.Parked)
	}
	h.assertServerMatchesDB(other)
	lenient := false
	for _, line := range collectedLines()[logsBefore:] {
		lenient = lenient || strings.Contains(line, `"msg":"`+MsgLenientCreate+`"`) && strings.Contains(line, `"status":200`)
	}
	if !lenient {
		t.Errorf("no %s line", MsgLenientCreate)
	}

	// cyd's userName is held by an account of another identity: parked,
	// never taken over nor changed.
	h.scim.ResetRequests()
	cyd := h.create(drupaltest.User{Name: "cyd", Mail: str("cyd@example.org"), Status: 1})
	h.settle()
	wantAnswers(t, h.userRequests(), "POST 200")
	st := h.agent.Status()
	if len(st.Parked) != 1 || st.Parked[0].UID != cyd || !strings.Contains(st.Parked[0].Detail, "someone-else") {
		t.Fatalf("parked %+v, want cyd refused naming the other identity", st.Parked)
	}
	if acct, _, _ := h.agent.store.Account(cyd); acct.SCIMID != "" {
		t.Fatalf("cyd's record holds %s, the other identity's account", acct.SCIMID)
	}
	if u, _ := h.scim.UserByID(other); u.ExternalID() != "someone-else" || u.Get("emails") != nil {
		t.Fatalf("the other identity's account was changed: %v", u.Attributes)
	}
}

// workFilter is the PATCH path of the agent's value in a typed list.
const workFilter = `emails[type eq "work"].value`

// patchPaths returns the paths of a PATCH request's operations.
func patchPaths(r scimtest.Request) []string {
	var out []string
	ops, _ := r.JSON()["Operations"].([]any)
	for _, op := range ops {
		p, _ := op.(map[string]any)["path"].(string)
		out = append(out, p)
	}
	return out
}

// A mail change costs one request where that is safe: a PATCH of the
// work address alone, with a value filter, where the server takes them
// (the other addresses stay without being read); where it refuses one
// (400 invalidPath) the change is read and sent whole, and the agent
// remembers, so later changes read first at once.
func TestMailChangeInOneRequest(t *testing.T) {
	mailChange := func(h *harness, uid uint32, mail string) []scimtest.Request {
		h.t.Helper()
		h.scim.ResetRequests()
		h.update(uid, func(u *drupaltest.User) { u.Mail = str(mail) })
		h.settle()
		if got := emailValues(h.mustServerUser(uid)); got["work"] != mail || got["home"] != "bob@home.example" {
			h.t.Fatalf("emails %v after the change to %s", got, mail)
		}
		return h.userRequests()
	}
	withHome := func(h *harness, uid uint32) {
		h.scim.Edit(h.mustServerUser(uid).ID, func(m map[string]any) { m["emails"] = append(m["emails"].([]any), homeAddress) })
	}

	t.Run("value filter taken", func(t *testing.T) {
		h := newHarness(t)
		uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
		h.start()
		h.settle()
		withHome(h, uid)
		for _, mail := range []string{"robert@example.org", "bobby@example.org"} {
			reqs := mailChange(h, uid, mail)
			wantAnswers(t, reqs, "PATCH 200")
			if p := patchPaths(reqs[0]); len(p) != 1 || p[0] != workFilter {
				t.Fatalf("PATCH paths %v, want %s", p, workFilter)
			}
		}
		h.assertServerMatchesDB()
	})
	t.Run("value filter refused", func(t *testing.T) {
		h := newHarness(t, withSCIM(scimtest.Options{NoValueFilterPaths: true}))
		uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
		h.start()
		h.settle()
		withHome(h, uid)
		reqs := mailChange(h, uid, "robert@example.org")
		wantAnswers(t, reqs, "PATCH 400", "GET 200", "PATCH 200")
		if p := patchPaths(reqs[2]); len(p) != 1 || p[0] != "emails" {
			t.Fatalf("PATCH paths %v after the refusal, want emails", p)
		}
		// Learnt: the next change reads first at once.
		wantAnswers(t, mailChange(h, uid, "bobby@example.org"), "GET 200", "PATCH 200")
		if st := h.agent.Status(); len(st.Parked) != 0 {
			t.Fatalf("parked: %+v", st.Parked)
		}
		h.assertServerMatchesDB()
	})
	t.Run("value filter taken but not applied", func(t *testing.T) {
		// The PATCH's answer still holds the old address: the change is
		// sent whole from that answer (no GET), and learnt.
		h := newHarness(t, withSCIM(scimtest.Options{IgnoreValueFilterPaths: true}))
		uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
		h.start()
		h.settle()
		withHome(h, uid)
		wantAnswers(t, mailChange(h, uid, "robert@example.org"), "PATCH 200", "PATCH 200")
		wantAnswers(t, mailChange(h, uid, "bobby@example.org"), "GET 200", "PATCH 200")
		h.assertServerMatchesDB()
	})
	t.Run("one account without a work address", func(t *testing.T) {
		// noTarget says more about the account than the server: the
		// change is read and sent whole, and the next user's still goes
		// in one request.
		h := newHarness(t)
		uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
		other := h.create(drupaltest.User{Name: "cyd", Mail: str("cyd@example.org"), Status: 1})
		h.start()
		h.settle()
		h.scim.Edit(h.mustServerUser(uid).ID, func(m map[string]any) { m["emails"] = []any{homeAddress} })
		wantAnswers(t, mailChange(h, uid, "robert@example.org"), "PATCH 400", "GET 200", "PATCH 200")
		withHome(h, other)
		wantAnswers(t, mailChange(h, other, "cyd@example.com"), "PATCH 200")
		h.assertServerMatchesDB()
	})
	t.Run("ETags", func(t *testing.T) {
		// The version the agent holds says the list held only its
		// address: the whole list, conditional on it, in one PATCH.
		h := newHarness(t, withSCIM(scimtest.Options{ETags: true, NoValueFilterPaths: true}))
		uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
		h.start()
		h.settle()
		h.scim.ResetRequests()
		h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
		h.settle()
		reqs := h.userRequests()
		wantAnswers(t, reqs, "PATCH 200")
		if p := patchPaths(reqs[0]); len(p) != 1 || p[0] != "emails" || reqs[0].Header.Get("If-Match") == "" {
			t.Fatalf("PATCH paths %v, If-Match %q", p, reqs[0].Header.Get("If-Match"))
		}
		h.assertServerMatchesDB()
	})
}

// A 404 that is not a SCIM error (an HTML page: Google's answer to a PUT,
// a proxy's to a path it does not route) says nothing of the account: it
// is retried like a 5xx, never taken for "gone" (which would create the
// account again, or forget it).
func TestHTMLNotFoundIsNotGone(t *testing.T) {
	for _, tc := range []struct {
		method string
		opts   scimtest.Options
		want   []string
	}{
		{http.MethodPatch, scimtest.Options{}, []string{"PATCH 404", "PATCH 404", "PATCH 200"}},
		{http.MethodPut, scimtest.Options{DisablePatch: true}, []string{"GET 200", "PUT 404", "PUT 404", "PUT 200"}},
		{http.MethodGet, scimtest.Options{DisablePatch: true}, []string{"GET 404", "GET 404", "GET 200", "PUT 200"}},
		{http.MethodDelete, scimtest.Options{}, []string{"DELETE 404", "DELETE 404", "DELETE 204"}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			h := newHarness(t, withSCIM(tc.opts))
			uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
			h.start()
			h.settle()
			id := h.mustServerUser(uid).ID
			f := scimtest.HTMLNotFound(tc.method, "/Users/")
			f.Times = 2
			h.scim.Inject(f)
			h.scim.ResetRequests()
			if tc.method == http.MethodDelete {
				if err := h.site.Delete(context.Background(), uid); err != nil {
					t.Fatal(err)
				}
			} else {
				h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
			}
			h.settle()
			wantAnswers(t, h.userRequests(), tc.want...)
			if tc.method == http.MethodDelete {
				if _, ok := h.scim.UserByID(id); ok {
					t.Fatal("the account is still on the server")
				}
				if _, known, _ := h.agent.store.Account(uid); known {
					t.Fatal("the record of the deleted user is kept")
				}
				return
			}
			if u := h.mustServerUser(uid); u.ID != id || emailValues(u)["work"] != "robert@example.org" {
				t.Fatalf("server account %s %v, want %s changed in place", u.ID, u.Attributes, id)
			}
			h.assertServerMatchesDB()
		})
	}
}

// Without /ServiceProviderConfig, etag is assumed off (no If-Match, the
// last write wins) unless scim.capabilities.etag says the server has
// them; then a stale version gets its 412 and the edit survives.
func TestETagsWithoutServiceProviderConfig(t *testing.T) {
	for _, etag := range []string{"auto", "true"} {
		t.Run("etag "+etag, func(t *testing.T) {
			h := newHarness(t, withSCIM(scimtest.Options{ETags: true, NoServiceProviderConfig: true}))
			h.cfg.SCIM.Capabilities.ETag = config.Capability(etag)
			uid := h.create(drupaltest.User{Name: "bob", Mail: str("bob@example.org"), Status: 1})
			h.start()
			h.settle()
			h.scim.Edit(h.mustServerUser(uid).ID, func(m map[string]any) { m["title"] = "Boss" })
			h.scim.ResetRequests()
			h.update(uid, func(u *drupaltest.User) { u.Mail = str("robert@example.org") })
			h.settle()
			reqs := h.userRequests()
			if etag == "auto" {
				wantAnswers(t, reqs, "PATCH 200")
				if v := reqs[0].Header.Get("If-Match"); v != "" {
					t.Fatalf("If-Match %q to a server assumed without ETags", v)
				}
			} else {
				wantAnswers(t, reqs, "PATCH 412", "GET 200", "PATCH 200")
			}
			if u := h.mustServerUser(uid); u.Get("title") != "Boss" || emailValues(u)["work"] != "robert@example.org" {
				t.Fatalf("server account %v", u.Attributes)
			}
			h.assertServerMatchesDB()
		})
	}
}

// A server that cannot filter (it says so and answers a filter with 400,
// or it ignores filters and scim.capabilities.filter says so) still gets
// its existing accounts and groups adopted after a 409: the lookup reads
// every account, page by page, and sends no filter. Before, the lookup
// was parked (400) or retried for ever (an ignored filter is untrusted).
func TestLookupWithoutFilterReadsEveryAccount(t *testing.T) {
	for name, tc := range map[string]struct {
		opts   scimtest.Options
		filter config.Capability // scim.capabilities.filter
	}{
		"advertised": {scimtest.Options{DisableFilter: true}, ""},
		"overridden": {scimtest.Options{Filter: scimtest.FilterIgnored}, "false"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, withSCIM(tc.opts), withGroups(""))
			h.cfg.SCIM.Capabilities.Filter = tc.filter
			// More accounts than one page holds, ann's on the second.
			for i := range 150 {
				h.scim.Seed(map[string]any{"userName": fmt.Sprintf("other%03d", i)})
			}
			ann := h.scim.Seed(map[string]any{"userName": "ann"})
			staff := h.scim.SeedGroup(map[string]any{"displayName": "Staff"})
			if err := h.site.CreateRole(ctx, "staff", "Staff"); err != nil {
				t.Fatal(err)
			}
			uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1, Roles: []string{"staff"}})
			h.start()
			h.settle()

			if st := h.agent.Status(); len(st.Parked) != 0 || len(st.ParkedGroups) != 0 {
				t.Fatalf("parked: %+v %+v", st.Parked, st.ParkedGroups)
			}
			if u := h.mustServerUser(uid); u.ID != ann {
				t.Fatalf("ann's account is %s, want the existing %s adopted", u.ID, ann)
			}
			if g := h.mustGroup("staff"); g.ID != staff || !slices.Equal(g.Members(), []string{ann}) {
				t.Fatalf("staff = %+v, want the existing group %s adopted with ann", g, staff)
			}
			if n := h.postsByUserName()["ann"]; n != 1 {
				t.Errorf("%d POSTs for ann, want 1 (answered 409)", n)
			}
			pages := 0
			for _, r := range h.scim.Requests() {
				if r.Query.Has("filter") {
					t.Errorf("a filter sent to a server without filtering: %s %s?%s", r.Method, r.Path, r.RawQuery)
				}
				if r.Method == http.MethodGet && r.Path == "/Users" {
					pages++
				}
			}
			if pages < 2 {
				t.Errorf("%d pages of /Users read, want both pages", pages)
			}
		})
	}
}

// A server that answers a create with 201 but leaves a mapped attribute
// out of the account it made is followed by the PATCH that sets it (and
// a scim.lenient_create line naming the attribute), instead of recording
// as pushed what the server does not hold.
func TestCreateAnsweredWithDifferencesIsMadeToMatch(t *testing.T) {
	h := newHarness(t, withSCIM(scimtest.Options{DropOnCreate: []string{"displayName"}}))
	h.start()
	h.settle()
	h.waitReady()
	logsBefore := len(collectedLines())

	uid := h.create(drupaltest.User{Name: "ann", Mail: str("ann@example.org"), Status: 1})
	h.settle()
	wantAnswers(t, h.userRequests(), "POST 201", "PATCH 200")
	if u := h.mustServerUser(uid); u.Get("displayName") != "ann" {
		t.Fatalf("displayName %v after the create, want ann", u.Get("displayName"))
	}
	h.assertServerMatchesDB()
	lenient := false
	for _, line := range collectedLines()[logsBefore:] {
		lenient = lenient || strings.Contains(line, `"msg":"`+MsgLenientCreate+`"`) && strings.Contains(line, `"status":201`) &&
			strings.Contains(line, "displayName")
	}
	if !lenient {
		t.Errorf("no %s line naming displayName", MsgLenientCreate)
	}
	// Made to match once: the next save that changes nothing mapped sends
	// nothing.
	h.scim.ResetRequests()
	h.update(uid, func(u *drupaltest.User) { u.Access = 1700000000 })
	h.settle()
	if reqs := h.userRequests(); len(reqs) != 0 {
		t.Errorf("requests after a save that changes nothing mapped: %v", reqs)
	}
}

// wantRetriedAtTheVersionRead checks a write answered 412, the GET after
// it and the write again: the first conditional on the version before
// the edit, the second on read, the version the GET returned.
func wantRetriedAtTheVersionRead(t *testing.T, reqs []scimtest.Request, read string) {
	t.Helper()
	if v := reqs[0].Header.Get("If-Match"); v == "" || v == read {
		t.Errorf("first %s If-Match %q, want the version before the edit", reqs[0].Method, v)
	}
	if v := reqs[2].Header.Get("If-Match"); v != read {
		t.Errorf("second %s If-Match %q, want the version read, %q", reqs[2].Method, v, read)
	}
}

// Every request names the agent and its version in User-Agent, so a
// server's operators can tell its calls (and which release) apart.
func TestRequestsNameTheAgentAndItsVersion(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.create(drupaltest.User{Name: "uma", Mail: str("uma@example.org"), Status: 1})
	h.settle()
	want := "scim-agent/" + buildinfo.Read().Short()
	reqs := h.scim.Requests()
	if len(reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	for _, r := range reqs {
		if got := r.Header.Get("User-Agent"); got != want {
			t.Fatalf("%s %s with User-Agent %q, want %q", r.Method, r.Path, got, want)
		}
	}
}
