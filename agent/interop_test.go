package agent

import (
	"net/http"
	"strings"
	"testing"

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
