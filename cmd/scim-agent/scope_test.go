package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// TestANarrowedScopeAppliesAtEachChangeAndToAllWithSyncAll: the README's
// promise for a scope changed in the config, through the binary. After
// the restart an account the new scope leaves out stays as it was until
// its user changes; `sync --all` beside the running agent brings the
// rest in line at once, and leaves the users still in scope alone.
func TestANarrowedScopeAppliesAtEachChangeAndToAllWithSyncAll(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	user := func(name, role string) uint32 {
		return e.Env.Create(drupaltest.User{Name: name, Mail: drupaltest.Str(name + "@example.org"), Status: 1, Roles: []string{role}})
	}
	user("s1", "staff")
	changed, untouched := user("o1", "author"), user("o2", "author")
	p := e.start()
	e.waitMatch(p)
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited

	e.writeConfig(e.scim.URL, "scope: [[{source: roles, op: in, values: [staff]}]]")
	p = e.start()
	e.waitReady(p)
	active := func(name string) bool {
		u, ok := e.scim.UserByUserName(name)
		if !ok {
			t.Fatalf("%s has no account on the server", name)
		}
		return u.Get("active") == true
	}
	if !active("o1") || !active("o2") {
		t.Fatal("the restart changed accounts whose users did not change")
	}

	if err := e.site.Update(ctx, changed, func(u *drupaltest.User) { u.Timezone = "Europe/Oslo" }); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "o1 deactivated at its next change", func() bool { return !active("o1") })
	if !active("o2") {
		t.Fatal("o2 deactivated though it did not change")
	}

	out, _, code := e.run("sync", "--config", e.config, "--all")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`uid=%d userName="o2"`, untouched)) || !strings.Contains(out, "deactivated") {
		t.Fatalf("sync --all beside the agent: exit %d\n%s", code, out)
	}
	if active("o2") || active("o1") || !active("s1") {
		t.Fatalf("after sync --all: s1 %v, o1 %v, o2 %v; want only s1 active", active("s1"), active("o1"), active("o2"))
	}
}
