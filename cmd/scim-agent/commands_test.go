package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

func (e *env) create(name, mail string) uint32 {
	e.t.Helper()
	u := drupaltest.User{Name: name, Status: 1}
	if mail != "" {
		u.Mail = drupaltest.Str(mail)
	}
	return e.Env.Create(u)
}

// waitStatus runs `scim-agent status` until its output holds want, for
// up to 20s, and returns the last run's output and exit code for the
// test to judge.
func (e *env) waitStatus(want string) (stdout, stderr string, code int) {
	e.t.Helper()
	agenttest.Poll(20*time.Second, func() bool {
		stdout, stderr, code = e.run("status", "--config", e.config)
		return strings.Contains(stdout, want)
	})
	return stdout, stderr, code
}

func TestSyncCommandWithoutARunningAgent(t *testing.T) {
	e := newEnv(t, "")
	alice := e.create("alice", "alice@example.org")
	e.create("bob", "shared@example.org")
	e.create("carol", "shared@example.org")
	e.create("dave", "dave@example.org")
	// dave already has an account on the server: sync adopts it.
	e.scim.Seed(map[string]any{"userName": "dave", "active": true})

	out, _, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(alice), "--dry-run")
	if code != 0 || !strings.HasPrefix(out, "created     uid=") {
		t.Fatalf("sync --uid --dry-run: exit %d\n%s", code, out)
	}
	if n := e.scim.CountRequests("POST", "/Users"); n != 0 || len(e.scim.Users()) != 1 {
		t.Fatalf("dry run wrote: %d POSTs", n)
	}

	out, _, code = e.run("sync", "--config", e.config, "--uid", fmt.Sprint(alice))
	if code != 0 || !strings.Contains(out, `created     uid=1 userName="alice"`) {
		t.Fatalf("sync --uid: exit %d\n%s", code, out)
	}
	out, _, code = e.run("sync", "--config", e.config, "--name", "bob")
	if code != 0 || !strings.Contains(out, `created     uid=2 userName="bob"`) {
		t.Fatalf("sync --name: exit %d\n%s", code, out)
	}
	out, _, code = e.run("sync", "--config", e.config, "--mail", "shared@example.org")
	if code != 0 || !strings.Contains(out, `unchanged   uid=2 userName="bob"`) || !strings.Contains(out, `created     uid=3 userName="carol"`) {
		t.Fatalf("sync --mail: exit %d\n%s", code, out)
	}
	out, _, code = e.run("sync", "--config", e.config, "--all")
	if code != 0 || !strings.Contains(out, `adopted     uid=4 userName="dave"`) || strings.Contains(out, `uid=0`) {
		t.Fatalf("sync --all: exit %d\n%s", code, out)
	}
	if m := e.mismatch(); m != "" {
		t.Fatalf("after sync --all: %s", m)
	}
	if len(e.scim.Users()) != 4 {
		t.Fatalf("%d accounts, want 4 (dave adopted, not duplicated)", len(e.scim.Users()))
	}
	t.Logf("sync --all output:\n%s", out)

	_, stderr, code := e.run("sync", "--config", e.config, "--name", "nobody")
	if code != 1 || !strings.Contains(stderr, `name "nobody": no Drupal user matches`) {
		t.Fatalf("sync --name nobody: exit %d\n%s", code, stderr)
	}
	if _, _, code := e.run("sync", "--config", e.config, "--uid", "1", "--all"); code != 2 {
		t.Fatalf("two selectors: exit %d, want 2", code)
	}
}

func TestSyncIntoAnEmptyServer(t *testing.T) {
	e := newEnv(t, "")
	for i := 0; i < 5; i++ {
		e.create(fmt.Sprintf("empty%d", i), "")
	}
	out, _, code := e.run("sync", "--config", e.config, "--all")
	if code != 0 || strings.Count(out, "created ") != 5 {
		t.Fatalf("sync --all into an empty server: exit %d\n%s", code, out)
	}
	if m := e.mismatch(); m != "" {
		t.Fatal(m)
	}
}

func TestCommandsBesideARunningAgent(t *testing.T) {
	e := newEnv(t, "  max_deletes: 2")
	for i := 0; i < 4; i++ {
		e.create(fmt.Sprintf("run%d", i), fmt.Sprintf("run%d@example.org", i))
	}
	p := e.start()
	e.waitReady(p)
	e.waitMatch(p)

	// A sync while the agent runs is handed to it: the server lost an
	// account, the sync puts it back.
	lost, _ := e.scim.UserByUserName("run1")
	e.scim.Remove(lost.ID)
	out, _, code := e.run("sync", "--config", e.config, "--all")
	if code != 0 || !strings.Contains(out, `created     uid=2 userName="run1"`) {
		t.Fatalf("sync beside a running agent: exit %d\n%s\n%s", code, out, p.output())
	}
	e.waitMatch(p)

	// A user the server refuses is parked; status shows it; retry
	// --parked sends it once the server accepts it.
	reject := func(method string, attrs map[string]any) *scimtest.Fault {
		if name, _ := attrs["userName"].(string); name == "refused" {
			return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "userName refused by policy"}
		}
		return nil
	}
	e.scim.Reject(reject)
	e.create("refused", "")
	out, _, _ = e.waitStatus("userName refused by policy")
	if !strings.Contains(out, "parked               1") || !strings.Contains(out, `uid=5 userName="refused" op=create status=400`) ||
		!strings.Contains(out, "ready                yes") {
		t.Fatalf("status:\n%s", out)
	}
	t.Logf("status output:\n%s", out)
	js, _, code := e.run("status", "--config", e.config, "--json")
	if code != 0 || !strings.Contains(js, `"queue_depth": 0`) || !strings.Contains(js, `"detail": "userName refused by policy"`) {
		t.Fatalf("status --json: exit %d\n%s", code, js)
	}
	if s := e.statusJSON(); s["running"] != true {
		t.Fatalf("GET /status = %v", s)
	}
	e.scim.Reject(nil)
	out, _, code = e.run("retry", "--config", e.config, "--parked")
	if code != 0 || !strings.Contains(out, `created     uid=5 userName="refused"`) {
		t.Fatalf("retry --parked: exit %d\n%s", code, out)
	}
	e.waitMatch(p)

	// Three deletions with max_deletes 2: the third is held until
	// approve-deletes.
	ctx := context.Background()
	for uid := uint32(1); uid <= 3; uid++ {
		if err := e.site.Delete(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	out, _, _ = e.waitStatus("TRIPPED")
	if !strings.Contains(out, "deletion guard       TRIPPED") {
		t.Fatalf("guard not tripped:\n%s\n%s", out, p.output())
	}
	if n := e.scim.CountRequests("DELETE", "/Users"); n != 2 {
		t.Fatalf("%d DELETEs before approval, want 2", n)
	}
	out, _, code = e.run("approve-deletes", "--config", e.config)
	if code != 0 || !strings.Contains(out, "approved: 1 held") {
		t.Fatalf("approve-deletes: exit %d\n%s", code, out)
	}
	e.waitMatch(p)
}

func TestApproveDeletesWithoutARunningAgentClearsTheGuard(t *testing.T) {
	e := newEnv(t, "  max_deletes: 1")
	e.create("a1", "")
	e.create("a2", "")
	p := e.start()
	e.waitReady(p)
	e.waitMatch(p)
	ctx := context.Background()
	e.site.Delete(ctx, 1)
	e.site.Delete(ctx, 2)
	agenttest.Poll(20*time.Second, func() bool { return strings.Contains(p.output(), `"msg":"guard.tripped"`) })
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	// Still tripped after a restart...
	p = e.start()
	e.waitReady(p)
	if n := e.scim.CountRequests("DELETE", "/Users"); n != 1 {
		t.Fatalf("%d DELETEs, want 1 while the guard holds", n)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	// ...until approved with no agent running, or with run --approve-deletes.
	out, _, code := e.run("approve-deletes", "--config", e.config)
	if code != 0 || !strings.Contains(out, "the next start sends") {
		t.Fatalf("approve-deletes: exit %d\n%s", code, out)
	}
	p = e.start()
	e.waitMatch(p)
}
