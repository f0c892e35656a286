package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// update rewrites the golden files of sync --explain: go test ./cmd/scim-agent -run Explain -update.
var update = flag.Bool("update", false, "rewrite testdata/*.golden from the output")

// explainScope is the README's scope: (staff or editor) and active, or an
// address at example.org.
const explainScope = `scope: [[{source: roles, op: in, values: [staff, editor]}, {source: status, op: equals, value: "1"}], ` +
	`[{source: mail, op: matches, value: '@example\.org$'}]]`

// masker replaces what changes from one run to the next (ids, uuids,
// fingerprints, times, ports) with stable names; the same id keeps one
// name throughout an output, so that the steps still say which account
// is which.
type masker struct {
	ids map[string]string
}

var (
	uuidPattern        = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	fingerprintPattern = regexp.MustCompile(`\b[0-9a-f]{16}\b|"(fingerprint|[a-zA-Z.:]+)": [0-9]{12,20}\b`)
	timePattern        = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	portPattern        = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	versionPattern     = regexp.MustCompile(`W/\\?"[^"\\]*\\?"`)
)

func (m *masker) mask(s string) string {
	if m.ids == nil {
		m.ids = map[string]string{}
	}
	s = uuidPattern.ReplaceAllStringFunc(s, func(id string) string {
		if _, ok := m.ids[id]; !ok {
			m.ids[id] = fmt.Sprintf("<id-%d>", len(m.ids)+1)
		}
		return m.ids[id]
	})
	s = fingerprintPattern.ReplaceAllStringFunc(s, func(fp string) string {
		if k, _, ok := strings.Cut(fp, ": "); ok {
			return k + ": <fingerprint>"
		}
		return "<fingerprint>"
	})
	s = timePattern.ReplaceAllString(s, "<time>")
	s = portPattern.ReplaceAllString(s, "127.0.0.1:<port>")
	return versionPattern.ReplaceAllString(s, `<version>`)
}

// golden compares out, masked, with testdata/name.golden (rewritten with
// -update), and fails on any difference.
func golden(t *testing.T, name, out string) {
	t.Helper()
	got := (&masker{}).mask(out)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("sync --explain output differs from %s (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// explain runs sync --explain for uid and returns its output and exit
// code, after checking it leaks nothing.
func (e *env) explain(uid uint32, args ...string) (string, int) {
	e.t.Helper()
	out, stderr, code := e.run(append([]string{"sync", "--config", e.config, "--uid", fmt.Sprint(uid), "--explain"}, args...)...)
	e.noSecrets(out + stderr)
	if strings.TrimSpace(stderr) != "" {
		e.t.Logf("stderr: %s", stderr)
	}
	return out, code
}

// noSecrets fails the test when s holds the token, the DSN password or a
// password hash.
func (e *env) noSecrets(s string) {
	e.t.Helper()
	for _, secret := range append(e.Secrets(), drupaltest.HashPrefixes...) {
		if strings.Contains(s, secret) {
			e.t.Errorf("the output holds a secret (%.6s...)", secret)
		}
	}
	if strings.Contains(s, "pass") && regexp.MustCompile(`\bpass\b`).MatchString(s) {
		e.t.Errorf("the output names the pass column:\n%s", s)
	}
}

func TestSyncExplainGolden(t *testing.T) {
	e := newEnv(t, explainScope)
	ctx := context.Background()
	staff := func(name string) uint32 {
		return e.Create(drupaltest.User{Name: name, Mail: drupaltest.Str(name + "@other.test"), Status: 1, Roles: []string{"staff"}, Timezone: "Europe/Oslo"})
	}

	ann := staff("ann")
	out, code := e.explain(ann)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_created", out)

	out, code = e.explain(ann)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_unchanged", out)

	// ann loses the role and the mail is elsewhere: out of scope.
	if err := e.site.Update(ctx, ann, func(u *drupaltest.User) { u.Roles = nil }); err != nil {
		t.Fatal(err)
	}
	out, code = e.explain(ann)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_out_of_scope", out)

	// bob's userName is refused: parked by a first sync, then explained.
	e.scim.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if name, _ := attrs["userName"].(string); name == "bob" {
			return &scimtest.Fault{Status: 400, ScimType: "invalidValue", Detail: "userName refused by policy"}
		}
		return nil
	})
	bob := staff("bob")
	if _, _, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(bob)); code != 1 {
		t.Fatalf("sync of a refused user: exit %d, want 1", code)
	}
	out, code = e.explain(bob)
	if code != 1 {
		t.Fatalf("explain of a parked user: exit %d, want 1\n%s", code, out)
	}
	golden(t, "explain_parked", out)
	e.scim.Reject(nil)

	// carol is provisioned, then deleted in Drupal.
	carol := staff("carol")
	if _, _, code := e.run("sync", "--config", e.config, "--uid", fmt.Sprint(carol)); code != 0 {
		t.Fatalf("sync carol: exit %d", code)
	}
	if err := e.site.Delete(ctx, carol); err != nil {
		t.Fatal(err)
	}
	out, code = e.explain(carol)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_deleted", out)

	// A dry run says what it would send, and sends it not.
	dave := staff("dave")
	out, code = e.explain(dave, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_dry_run", out)
	if _, ok := e.scim.UserByUserName("dave"); ok {
		t.Fatal("sync --explain --dry-run created the account")
	}

	// gina has an account on the server already: the POST's 409, the
	// lookup and why the account found is taken.
	e.scim.Seed(map[string]any{"userName": "gina", "active": false, "title": "kept"})
	gina := staff("gina")
	out, code = e.explain(gina)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	golden(t, "explain_adopted", out)
}

// TestSyncExplainJSON: --json gives the same as one JSON document, which
// parses, with no agent running and through a running agent's socket.
func TestSyncExplainJSON(t *testing.T) {
	e := newEnv(t, explainScope)
	uid := e.Create(drupaltest.User{Name: "erin", Mail: drupaltest.Str("erin@example.org"), Status: 1})
	outside := e.Create(drupaltest.User{Name: "frank", Mail: drupaltest.Str("frank@other.test"), Status: 1})

	check := func(out string, wantOutcome, wantAction string) map[string]any {
		t.Helper()
		var doc struct {
			Explanations []map[string]any `json:"explanations"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("sync --explain --json does not parse: %v\n%s", err, out)
		}
		if len(doc.Explanations) != 1 {
			t.Fatalf("%d explanations, want 1:\n%s", len(doc.Explanations), out)
		}
		x := doc.Explanations[0]
		for _, step := range []string{"drupal", "scope", "desired", "record", "server", "decision", "requests"} {
			if _, ok := x[step]; !ok {
				t.Errorf("the JSON explanation lacks %q:\n%s", step, out)
			}
		}
		d, _ := x["decision"].(map[string]any)
		if d["outcome"] != wantOutcome || d["action"] != wantAction {
			t.Fatalf("decision = %v, want %s by %s\n%s", d, wantAction, wantOutcome, out)
		}
		return x
	}
	out, code := e.explain(uid, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	x := check(out, "created", "create")
	if scope, _ := x["scope"].(map[string]any); scope["in"] != true || scope["clause"] != float64(2) {
		t.Fatalf("scope = %v, want in by clause 2", x["scope"])
	}
	out, _ = e.explain(outside, "--json")
	x = check(out, "skipped", "nothing")
	if scope, _ := x["scope"].(map[string]any); scope["in"] != false {
		t.Fatalf("scope = %v, want out", x["scope"])
	}

	// Through a running agent: the same path, the same document.
	p := e.start()
	e.waitReady(p)
	out, code = e.explain(uid, "--json")
	if code != 0 {
		t.Fatalf("through the running agent: exit %d\n%s\n%s", code, out, p.output())
	}
	x = check(out, "unchanged", "nothing")
	if reqs, _ := x["requests"].([]any); len(reqs) != 1 {
		t.Fatalf("through the running agent: requests %v, want the GET", x["requests"])
	}
	text, code := e.explain(uid, "--dry-run")
	if code != 0 || !strings.Contains(text, "uid 1: unchanged (dry run") || !strings.Contains(text, "8. Requests\n   GET /Users/") {
		t.Fatalf("sync --explain --dry-run through the running agent: exit %d\n%s", code, text)
	}
	if _, stderr, code := e.run("sync", "--config", e.config, "--all", "--explain"); code != 2 || !strings.Contains(stderr, "--explain explains the users or roles given") {
		t.Fatalf("sync --all --explain: exit %d, %s", code, stderr)
	}
	if _, stderr, code := e.run("sync", "--config", e.config, "--uid", "1", "--json"); code != 2 || !strings.Contains(stderr, "--json goes with --explain") {
		t.Fatalf("sync --json: exit %d, %s", code, stderr)
	}
}

// TestSyncExplainByNameAndMail: --explain after --name or --mail explains
// every user the selector picks, each under its own uid, and only those.
func TestSyncExplainByNameAndMail(t *testing.T) {
	e := newEnv(t, "")
	erin := e.Create(drupaltest.User{Name: "erin", Mail: drupaltest.Str("shared@example.org"), Status: 1})
	fred := e.Create(drupaltest.User{Name: "fred", Mail: drupaltest.Str("shared@example.org"), Status: 1})
	e.Create(drupaltest.User{Name: "gail", Mail: drupaltest.Str("gail@example.org"), Status: 1})
	// explained returns the outcome of each uid explained.
	explained := func(args ...string) map[uint32]string {
		t.Helper()
		out, stderr, code := e.run(append([]string{"sync", "--config", e.config, "--explain", "--json"}, args...)...)
		e.noSecrets(out + stderr)
		if code != 0 {
			t.Fatalf("sync %v --explain --json: exit %d\n%s%s", args, code, out, stderr)
		}
		var doc struct {
			Explanations []struct {
				UID      uint32 `json:"uid"`
				Decision struct {
					Outcome string `json:"outcome"`
				} `json:"decision"`
			} `json:"explanations"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("sync %v --explain --json does not parse: %v\n%s", args, err, out)
		}
		got := map[uint32]string{}
		for _, x := range doc.Explanations {
			got[x.UID] = x.Decision.Outcome
		}
		return got
	}
	if got, want := explained("--name", "erin"), map[uint32]string{erin: "created"}; !maps.Equal(got, want) {
		t.Fatalf("--name erin explained %v, want %v", got, want)
	}
	if got, want := explained("--mail", "shared@example.org"), map[uint32]string{erin: "unchanged", fred: "created"}; !maps.Equal(got, want) {
		t.Fatalf("--mail explained %v, want %v", got, want)
	}
	if _, ok := e.scim.UserByUserName("gail"); ok {
		t.Fatal("gail was provisioned by syncs that did not select her")
	}
}
