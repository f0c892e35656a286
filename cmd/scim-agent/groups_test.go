package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// withGroups rewrites the env's config with groups on.
func (e *env) withGroups(extra string) {
	e.t.Helper()
	c := e.Env.Config().With(agenttest.Provisioning(extra))
	c.StatePath, c.AdminListen, c.LogLevel = e.statePath, e.admin, ""
	c.Extra = "groups:\n  enabled: true\n"
	e.writeYAML(c.YAML())
}

// members returns the member ids of the server's group of role, sorted.
func (e *env) members(role string) []string {
	for _, g := range e.scim.Groups() {
		if g.ExternalID() == role {
			m := g.Members()
			slices.Sort(m)
			return m
		}
	}
	return nil
}

// createRoles creates Drupal roles, each labelled with its id in capitals.
func (e *env) createRoles(ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		if err := e.site.CreateRole(context.Background(), id, strings.ToUpper(id)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// userIDs returns the server ids of the named accounts, sorted.
func (e *env) userIDs(names ...string) []string {
	var ids []string
	for _, n := range names {
		if u, ok := e.scim.UserByUserName(n); ok {
			ids = append(ids, u.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// A kill -9 after a user's POST and during its group's PATCH: the
// restart converges, with no second account and no second group.
func TestSIGKILLBetweenAUsersPOSTAndItsGroupPATCH(t *testing.T) {
	e := newEnv(t, "")
	e.withGroups("")
	ctx := context.Background()
	if err := e.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.site.Create(ctx, drupaltest.User{Name: "first", Status: 1, Roles: []string{"editor"}}); err != nil {
		t.Fatal(err)
	}
	p := e.start()
	e.waitMatch(p)
	agenttest.Eventually(t, "the editor group with its member", func() bool { return len(e.members("editor")) == 1 })

	// The group's PATCH hangs: the agent dies in it.
	e.scim.Inject(scimtest.Fault{Method: "PATCH", PathPrefix: "/Groups", Times: 1, Latency: time.Minute})
	if _, err := e.site.Create(ctx, drupaltest.User{Name: "second", Status: 1, Roles: []string{"editor"}}); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "the group's PATCH in flight", func() bool { return e.scim.CountRequests("PATCH", "/Groups") >= 1 })
	if _, ok := e.scim.UserByUserName("second"); !ok {
		t.Fatal("the user's POST did not come before its group's PATCH")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	e.scim.ClearFaults()

	p = e.start()
	e.waitMatch(p)
	agenttest.Eventually(t, "both users members of the group", func() bool {
		return slices.Equal(e.members("editor"), e.userIDs("first", "second"))
	})
	for name, n := range answeredPOSTs(e) {
		if n > 1 {
			t.Errorf("%s POSTed %d times: a duplicate after the restart", name, n)
		}
	}
	if n := e.scim.CountRequests("POST", "/Groups"); n != 1 || len(e.scim.Groups()) != 1 {
		t.Fatalf("%d POST /Groups, %d groups: want one of each", n, len(e.scim.Groups()))
	}
}

// A kill -9 while a group's POST is applied on the server and its answer
// has not come: the restart finds the group the POST made (its Creating
// record was on disk before the POST) and posts no second one.
func TestSIGKILLDuringAGroupsPOSTMakesNoSecondGroup(t *testing.T) {
	e := newEnv(t, "")
	e.withGroups("")
	ctx := context.Background()
	if err := e.site.CreateRole(ctx, "editor", "Editors"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.site.Create(ctx, drupaltest.User{Name: "first", Status: 1, Roles: []string{"editor"}}); err != nil {
		t.Fatal(err)
	}
	e.scim.Inject(scimtest.Fault{Method: "POST", PathPrefix: "/Groups", Times: 1, Hold: time.Minute})
	p := e.start()
	agenttest.Eventually(t, "the group made on the server, its answer held", func() bool {
		_, made := e.scim.GroupByDisplayName("Editors")
		return made && e.scim.CountRequests("POST", "/Groups") == 1
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	e.scim.ClearFaults()

	p = e.start()
	// The held POST already made the group with its member: what shows
	// the restart's reconcile of it is the adoption, in the metrics.
	adopted := regexp.MustCompile(`(?m)^scim_agent_reconciles_total\{kind="group",op="[a-z_]+",outcome="adopted"\} 1$`)
	agenttest.Eventually(t, "the restart's adoption of the group, counted", func() bool {
		return adopted.MatchString(e.metrics())
	})
	if got := e.members("editor"); !slices.Equal(got, e.userIDs("first")) {
		t.Fatalf("members %v, want first's account", got)
	}
	if n, groups := e.scim.CountRequests("POST", "/Groups"), e.scim.Groups(); n != 1 || len(groups) != 1 {
		t.Fatalf("%d POST /Groups, %d groups: want the first POST's group, adopted, and no second POST", n, len(groups))
	}
	if got := e.scim.RequestsMatching("POST", "/Groups")[0].Status; got != 0 {
		t.Fatalf("the POST before the kill was answered (%d): the test proves nothing", got)
	}
}

// A group the server refuses is parked: status lists its role (from the
// running agent, then from the state file), the parked_groups metric
// counts it, and retry --parked creates it once the server accepts it,
// beside the agent and without one.
func TestStatusAndRetryOfAParkedGroup(t *testing.T) {
	e := newEnv(t, "")
	e.withGroups("")
	ctx := context.Background()
	e.createRoles("editor", "staff")
	if _, err := e.site.Create(ctx, drupaltest.User{Name: "first", Status: 1, Roles: []string{"editor", "staff"}}); err != nil {
		t.Fatal(err)
	}
	refuse := func(label string) {
		e.scim.RejectGroups(func(method string, attrs map[string]any) *scimtest.Fault {
			if attrs["displayName"] == label {
				return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "displayName refused by policy"}
			}
			return nil
		})
	}
	refuse("EDITOR")
	p := e.start()
	out, _, _ := e.waitStatus("displayName refused by policy")
	if !strings.Contains(out, "parked               1") || !strings.Contains(out, "role=editor op=create status=400") ||
		strings.Contains(out, "role=staff") {
		t.Fatalf("status beside the agent:\n%s", out)
	}
	if !strings.Contains(e.metrics(), "\nscim_agent_parked_groups 1\n") {
		t.Fatalf("parked_groups metric:\n%s", e.metrics())
	}
	e.scim.RejectGroups(nil)
	out, _, code := e.run("retry", "--config", e.config, "--parked")
	if code != 0 || !strings.Contains(out, "created     role=editor") || strings.Contains(out, "role=staff") {
		t.Fatalf("retry --parked beside the agent: exit %d\n%s", code, out)
	}
	if got := e.members("editor"); !slices.Equal(got, e.userIDs("first")) {
		t.Fatalf("editor members %v after retry", got)
	}
	if out, _, _ := e.waitStatus("parked               0"); strings.Contains(out, "role=editor") {
		t.Fatalf("status after retry:\n%s", out)
	}

	// Without a running agent the state file answers: a new role the
	// server refuses is parked by sync, and status and retry work on the
	// file.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if err := e.site.CreateRole(ctx, "author", "AUTHORS"); err != nil {
		t.Fatal(err)
	}
	if err := e.site.Update(ctx, 1, func(u *drupaltest.User) { u.Roles = append(u.Roles, "author") }); err != nil {
		t.Fatal(err)
	}
	refuse("AUTHORS")
	if out, _, code := e.run("sync", "--config", e.config, "--role", "author"); code == 0 || !strings.Contains(out, "role=author") {
		t.Fatalf("sync --role author against a refusing server: exit %d\n%s", code, out)
	}
	out, _, code = e.run("status", "--config", e.config)
	if code != 0 || !strings.Contains(out, "not running (read from the state file)") || !strings.Contains(out, "role=author op=create status=400") {
		t.Fatalf("status from the state file: exit %d\n%s", code, out)
	}
	e.scim.RejectGroups(nil)
	out, _, code = e.run("retry", "--config", e.config, "--parked")
	if code != 0 || !strings.Contains(out, "created     role=author") {
		t.Fatalf("retry --parked without an agent: exit %d\n%s", code, out)
	}
	if out, _, _ := e.run("status", "--config", e.config); !strings.Contains(out, "parked               0") {
		t.Fatalf("status after the retry:\n%s", out)
	}
}

// sync --role and --all reconcile groups, with or without a running
// agent, and status counts them.
func TestSyncOfGroups(t *testing.T) {
	e := newEnv(t, "")
	e.withGroups("")
	ctx := context.Background()
	e.createRoles("editor", "staff")
	e.create("ann", "")
	if err := e.site.Update(ctx, 1, func(u *drupaltest.User) { u.Roles = []string{"editor", "staff"} }); err != nil {
		t.Fatal(err)
	}
	if out, _, code := e.run("sync", "--config", e.config, "--uid", "1"); code != 0 || !strings.Contains(out, "created ") {
		t.Fatalf("sync --uid: exit %d\n%s", code, out)
	}
	out, _, code := e.run("sync", "--config", e.config, "--role", "editor")
	if code != 0 || !strings.Contains(out, "created     role=editor") || strings.Contains(out, "role=staff") {
		t.Fatalf("sync --role editor: exit %d\n%s", code, out)
	}
	out, _, code = e.run("sync", "--config", e.config, "--all")
	if code != 0 || !strings.Contains(out, "unchanged   role=editor") || !strings.Contains(out, "created     role=staff") {
		t.Fatalf("sync --all: exit %d\n%s", code, out)
	}
	if got := e.members("staff"); !slices.Equal(got, e.userIDs("ann")) {
		t.Fatalf("staff members = %v", got)
	}
	if out, _, _ := e.run("status", "--config", e.config); !strings.Contains(out, "groups               2 (2 members)") {
		t.Fatalf("status:\n%s", out)
	}

	// Beside a running agent: handed over the control socket.
	p := e.start()
	e.waitReady(p)
	g, _ := e.scim.GroupByDisplayName("STAFF")
	e.scim.RemoveGroup(g.ID)
	out, _, code = e.run("sync", "--config", e.config, "--role", "staff")
	if code != 0 || !strings.Contains(out, "created     role=staff") {
		t.Fatalf("sync --role beside an agent: exit %d\n%s", code, out)
	}
	if out, _, code = e.run("sync", "--config", e.config, "--all", "--dry-run"); code != 0 || !strings.Contains(out, "unchanged   role=staff") {
		t.Fatalf("sync --all --dry-run beside an agent: exit %d\n%s", code, out)
	}
}

// TestSyncExplainRole: sync --role ID --explain tells the role's
// reconcile as text and, with --json, as one document whose explanation
// carries the role, with no agent running and through a running one.
func TestSyncExplainRole(t *testing.T) {
	e := newEnv(t, "")
	e.withGroups("")
	e.createRoles("editor")
	ann, err := e.site.Create(context.Background(), drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(ann)); code != 0 {
		t.Fatalf("sync ann: exit %d\n%s", code, stderr)
	}
	out, stderr, code := e.run("sync", "--config", e.config, "--role", "editor", "--explain")
	e.noSecrets(out + stderr)
	annID := e.userIDs("ann")[0]
	for _, want := range []string{"role editor: created\n", "uid 1  member: account " + annID, "no group on the server: all of it is sent",
		"create: no group of role editor is known", "8. Requests\n   POST /Groups: 201"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("sync --role editor --explain: exit %d, output lacks %q:\n%s\n%s", code, want, out, stderr)
		}
	}
	check := func(out string) {
		t.Helper()
		var doc struct {
			Explanations []map[string]any `json:"explanations"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Explanations) != 1 {
			t.Fatalf("not one explanation: %v\n%s", err, out)
		}
		x := doc.Explanations[0]
		decision, _ := x["decision"].(map[string]any)
		if x["role"] != "editor" || decision["outcome"] != "unchanged" || x["uid"] != nil {
			t.Fatalf("explanation %v", x)
		}
	}
	out, stderr, code = e.run("sync", "--config", e.config, "--role", "editor", "--explain", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s", code, stderr)
	}
	check(out)
	p := e.start()
	e.waitReady(p)
	out, stderr, code = e.run("sync", "--config", e.config, "--role", "editor", "--explain", "--json")
	if code != 0 {
		t.Fatalf("--json through the running agent: exit %d\n%s\n%s", code, stderr, p.output())
	}
	check(out)
}
