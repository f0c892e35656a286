package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// binary is the scim-agent built once for this package's tests: signals
// and SIGKILL need a process of its own.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scim-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "scim-agent")
	// -buildvcs=auto: the environment may say false, but `version` must
	// show the revision as the Makefile's build does.
	out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build scim-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testdb.RunMain(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const token = "cmd-test-token-5b2e"

// env is one Drupal database, one SCIM server (an agenttest.Env) and a
// config file for the binary.
type env struct {
	*agenttest.Env
	t      *testing.T
	db     *testdb.Database
	site   *drupaltest.Site
	scim   *scimtest.Server
	dir    string
	config string
	admin  string
	// statePath is state.path; the control socket is statePath + ".sock".
	statePath string
}

// newEnv builds an env whose config's provisioning section gets the lines
// of extra.
func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	ae := agenttest.New(t, agenttest.Options{SCIM: scimtest.Options{Token: token}})
	e := &env{Env: ae, t: t, db: ae.DB, site: ae.Site, scim: ae.SCIM, dir: ae.Dir,
		statePath: filepath.Join(ae.Dir, "state.db"), admin: agenttest.FreeAddr(t)}
	e.writeConfig(e.scim.URL, extra)
	return e
}

// writeConfig writes the config file for the SCIM server at url, the
// env's state path and admin address, with the provisioning lines of
// extra.
func (e *env) writeConfig(url, extra string) {
	c := e.Env.Config().With(agenttest.Provisioning(extra))
	c.SCIMURL, c.StatePath, c.AdminListen, c.LogLevel = url, e.statePath, e.admin, ""
	e.writeYAML(c.YAML())
}

// writeYAML writes doc as the env's config file.
func (e *env) writeYAML(doc string) {
	e.config = filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(e.config, []byte(doc), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// agentProcess is a running scim-agent.
type agentProcess struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	exited chan struct{}
	err    error
}

func (e *env) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SCIM_TOKEN="+token)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// start runs `scim-agent run` on the env's config with args.
func (e *env) start(args ...string) *agentProcess {
	e.t.Helper()
	return e.startWith(nil, args...)
}

// startWith is start with the variables of environ added to the
// process's environment.
func (e *env) startWith(environ []string, args ...string) *agentProcess {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"run", "--config", e.config}, args...)...)
	cmd.Env = append(append(os.Environ(), "SCIM_TOKEN="+token), environ...)
	p := &agentProcess{cmd: cmd, stdout: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout = &lockedWriter{w: p.stdout}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		out := p.output()
		for _, secret := range append(e.Secrets(), drupaltest.HashPrefixes...) {
			if strings.Contains(out, secret) {
				e.t.Errorf("the agent's output holds a secret (%.6s...)", secret)
			}
		}
		if e.t.Failed() {
			e.t.Logf("agent output:\n%s", out)
		}
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *agentProcess) output() string {
	w := p.cmd.Stdout.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

// waitReady waits for /readyz to answer 200.
func (e *env) waitReady(p *agentProcess) {
	e.t.Helper()
	if !agenttest.Poll(60*time.Second, func() bool {
		select {
		case <-p.exited:
			e.t.Fatalf("agent exited: %v\n%s", p.err, p.output())
		default:
		}
		resp, err := http.Get("http://" + e.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		e.t.Fatalf("agent not ready within 60s\n%s", p.output())
	}
}

// mismatch describes how the server differs from the database, or "".
func (e *env) mismatch() string {
	diffs, err := e.site.Differences(context.Background(), e.scim.Users(), func(uid uint32) bool { return uid != 0 })
	if err != nil {
		e.t.Fatal(err)
	}
	if len(diffs) == 0 {
		return ""
	}
	return diffs[0]
}

// waitMatch waits until the server equals the database.
func (e *env) waitMatch(p *agentProcess) {
	e.t.Helper()
	var m string
	if !agenttest.Poll(60*time.Second, func() bool {
		if m = e.mismatch(); m == "" {
			return true
		}
		select {
		case <-p.exited:
			e.t.Fatalf("agent exited: %v (%s)\n%s", p.err, m, p.output())
		default:
		}
		return false
	}) {
		e.t.Fatalf("server does not match the database after 60s: %s\n%s", m, p.output())
	}
}

// burst makes n Drupal-style changes: creates, mail changes by save,
// blocks and deletes.
func (e *env) burst(prefix string, n int) {
	e.t.Helper()
	ctx := context.Background()
	var uids []uint32
	for i := 0; i < n; i++ {
		uid, err := e.site.Create(ctx, drupaltest.User{Name: fmt.Sprintf("%s%03d", prefix, i),
			Mail: drupaltest.Str(fmt.Sprintf("%s%d@example.org", prefix, i)), Status: 1})
		if err != nil {
			e.t.Fatal(err)
		}
		uids = append(uids, uid)
		switch {
		case i%4 == 1:
			err = e.site.Update(ctx, uids[i-1], func(u *drupaltest.User) { u.Mail = drupaltest.Str(u.Name + "@new.example.org") })
		case i%4 == 2:
			err = e.site.Update(ctx, uids[i-1], func(u *drupaltest.User) { u.Status = 0 })
		case i%4 == 3:
			err = e.site.Delete(ctx, uids[i-2])
		}
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// successfulPOSTs counts the 201 answers to POST /Users per userName.
func (e *env) successfulPOSTs() map[string]int {
	n := map[string]int{}
	for _, r := range e.scim.RequestsMatching("POST", "/Users") {
		if r.Status == http.StatusCreated {
			name, _ := r.JSON()["userName"].(string)
			n[name]++
		}
	}
	return n
}

func TestSIGKILLWithChangesPendingLosesNothing(t *testing.T) {
	e := newEnv(t, "")
	e.burst("before", 8)
	p := e.start()
	e.waitReady(p)

	// Slow the server so that work is pending when the agent dies.
	e.scim.Inject(scimtest.Fault{Latency: 30 * time.Millisecond})
	e.burst("during", 40)
	agenttest.Poll(30*time.Second, func() bool { return e.scim.CountRequests("", "/Users") >= 20 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if e.mismatch() == "" {
		t.Fatal("nothing was pending at SIGKILL: the test proves nothing")
	}
	e.scim.ClearFaults()

	p = e.start()
	e.waitMatch(p)
	// A POST cut off by the kill before the server answered created
	// nothing (the restart looked the account up before posting again);
	// every POST the server answered must be the only one for its user.
	for name, n := range answeredPOSTs(e) {
		if n > 1 {
			t.Errorf("%s POSTed %d times with an answer: a duplicate POST after the restart", name, n)
		}
	}
}

// answeredPOSTs counts, per userName, the POST /Users requests the
// server answered (201, or 409 for an account that already existed).
func answeredPOSTs(e *env) map[string]int {
	n := map[string]int{}
	for _, r := range e.scim.RequestsMatching("POST", "/Users") {
		if r.Status != 0 {
			name, _ := r.JSON()["userName"].(string)
			n[name]++
		}
	}
	return n
}

func TestSIGTERMDuringBurstExitsZeroAndLosesNothing(t *testing.T) {
	e := newEnv(t, "")
	p := e.start()
	e.waitReady(p)
	e.scim.Inject(scimtest.Fault{Latency: 20 * time.Millisecond})
	e.burst("term", 40)
	agenttest.Eventually(t, "10 requests at the SCIM server", func() bool { return e.scim.CountRequests("", "/Users") >= 10 })
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent still running 15s after SIGTERM\n%s", p.output())
	}
	if took := time.Since(start); took > 12*time.Second {
		t.Fatalf("shutdown took %s, bound is 10s", took)
	}
	if p.err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.output())
	}
	if !strings.Contains(p.output(), `"msg":"agent.stop"`) {
		t.Fatalf("no agent.stop line:\n%s", p.output())
	}
	e.scim.ClearFaults()
	p = e.start()
	e.waitMatch(p)
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	e := newEnv(t, "")
	p := e.start()
	e.waitReady(p)
	// A request that hangs: the graceful shutdown would wait 10s for it.
	e.scim.Inject(scimtest.Fault{Latency: time.Minute})
	e.create("hanging", "")
	agenttest.Eventually(t, "the hanging POST", func() bool { return e.scim.CountRequests("POST", "/Users") > 0 })
	p.cmd.Process.Signal(syscall.SIGTERM)
	agenttest.Eventually(t, "binlog.stopped after the first SIGTERM", func() bool {
		return strings.Contains(p.output(), `"msg":"binlog.stopped"`)
	})
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM did not stop the agent at once")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("second signal took %s", took)
	}
	if ee, ok := p.err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit after the second signal: %v, want status 130", p.err)
	}
}

func TestSIGTERMDuringStartupChecksExitsZero(t *testing.T) {
	e := newEnv(t, "")
	// A slow SCIM server: run's start-up check waits for its answer.
	e.scim.Inject(scimtest.Fault{Method: "GET", PathPrefix: "/ServiceProviderConfig", Latency: time.Minute})
	p := e.start()
	if !agenttest.Poll(30*time.Second, func() bool { return e.scim.CountRequests("GET", "/ServiceProviderConfig") > 0 }) {
		t.Fatalf("the start-up check never asked the SCIM server\n%s", p.output())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
	if p.err != nil || strings.Contains(p.output(), `"check.failed"`) {
		t.Fatalf("SIGTERM during the start-up checks: exit %v, want 0 and no failed check\n%s", p.err, p.output())
	}
}

func TestStateCommandsNeedAnExistingStateFile(t *testing.T) {
	e := newEnv(t, "") // no agent has run: no state file yet
	for _, cmd := range []string{"status", "approve-deletes"} {
		out, errOut, code := e.run(cmd, "--config", e.config)
		if code != 1 || !strings.Contains(errOut, "no state file at "+filepath.Join(e.dir, "state.db")) {
			t.Errorf("%s without a state file: exit %d\n%s%s", cmd, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state.db")); !os.IsNotExist(err) {
		t.Fatalf("a command created the state file: %v", err)
	}
}

func TestCheckCommandExitCodes(t *testing.T) {
	e := newEnv(t, "")
	out, _, code := e.run("check", "--config", e.config)
	if code != 0 || !strings.Contains(out, "ok    mysql.binlog_format") || strings.Contains(out, "FAIL") {
		t.Fatalf("check on a good set-up: exit %d\n%s", code, out)
	}
	e.writeConfig(e.scim.URL+"/wrong", "")
	out, _, code = e.run("check", "--config", e.config)
	if code != 1 || !strings.Contains(out, "FAIL  scim.service_provider_config") || !strings.Contains(out, "fix: ") {
		t.Fatalf("check on a wrong URL: exit %d\n%s", code, out)
	}
	// run refuses to start on a failed check.
	p := e.start()
	<-p.exited
	if p.err == nil || !strings.Contains(p.output(), `"msg":"check.failed"`) {
		t.Fatalf("run with a failing check: %v\n%s", p.err, p.output())
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	os.WriteFile(path, []byte("mysql:\n  dsn: x@tcp(127.0.0.1:1)/d\n  servr_id: 3\n"), 0o600)
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"check", "--config", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), `config.yaml:3: unknown key "servr_id" in mysql`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestVersionAndHelp(t *testing.T) {
	e := &env{t: t}
	out, _, code := e.run("version")
	if code != 0 || !strings.HasPrefix(out, "scim-agent v") || !regexp.MustCompile(`revision   [0-9a-f]{40}`).MatchString(out) {
		t.Fatalf("version: exit %d\n%s", code, out)
	}
	for _, c := range commands() {
		_, stderr, code := e.run(c.name, "-h")
		if code != 0 || !strings.Contains(stderr, "Usage: scim-agent "+c.name) || !strings.Contains(stderr, "Example:") {
			t.Errorf("%s -h: exit %d\n%s", c.name, code, stderr)
		}
	}
	if _, _, code := e.run("nonsense"); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
}

// statusJSON reads GET /status of a running agent.
func (e *env) statusJSON() map[string]any {
	e.t.Helper()
	resp, err := http.Get("http://" + e.admin + "/status")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// metrics returns what the running agent's /metrics answers ("" while
// it cannot be reached).
func (e *env) metrics() string {
	resp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
