package agent

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/logging"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// TestMain runs the package's tests against one private MariaDB, then
// checks every log line they produced against the documented schema and
// for leaked secrets (see logschema_test.go).
func TestMain(m *testing.M) {
	code := testdb.RunMain(m)
	if path := os.Getenv("SCIM_AGENT_LOG_DUMP"); path != "" {
		// Every line the agents logged, for debugging a failure.
		os.WriteFile(path, []byte(strings.Join(collectedLines(), "\n")+"\n"), 0o644)
	}
	if code == 0 {
		if err := checkCollectedLogs(); err != nil {
			fmt.Fprintln(os.Stderr, "log check failed:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// logSink collects every log line of every agent the tests run, and the
// secrets those agents were given.
var logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets []string
}

type sinkWriter struct{}

func (sinkWriter) Write(p []byte) (int, error) {
	logSink.mu.Lock()
	defer logSink.mu.Unlock()
	return logSink.buf.Write(p)
}

func rememberSecret(s string) {
	logSink.mu.Lock()
	defer logSink.mu.Unlock()
	logSink.secrets = append(logSink.secrets, s)
}

// collectedLines returns the JSON log lines collected so far.
func collectedLines() []string {
	logSink.mu.Lock()
	defer logSink.mu.Unlock()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(logSink.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// harness is one Drupal database, one SCIM server (an agenttest.Env)
// and one agent.
type harness struct {
	t    testing.TB
	env  *agenttest.Env
	srv  *testdb.Server
	db   *testdb.Database
	site *drupaltest.Site
	scim *scimtest.Server
	cfg  *config.Config
	dir  string

	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	env  agenttest.Options
	opts []agenttest.Option
}

// withServer runs the harness on a server of the test's own.
func withServer(s *testdb.Server) harnessOption { return func(c *harnessConfig) { c.env.Server = s } }

// withProvisioning adds lines to the config's provisioning section.
func withProvisioning(yaml string) harnessOption {
	return func(c *harnessConfig) { c.opts = append(c.opts, agenttest.Provisioning(yaml)) }
}

func withSCIM(o scimtest.Options) harnessOption { return func(c *harnessConfig) { c.env.SCIM = o } }

func withPrefix(p string) harnessOption { return func(c *harnessConfig) { c.env.Prefix = p } }

// withMapping adds lines to the config's mapping section.
func withMapping(yaml string) harnessOption {
	return func(c *harnessConfig) { c.opts = append(c.opts, agenttest.Mapping(yaml)) }
}

// withConfig changes the config some other way.
func withConfig(o agenttest.Option) harnessOption {
	return func(c *harnessConfig) { c.opts = append(c.opts, o) }
}

// testToken is the SCIM token every test agent uses; the log check makes
// sure it never appears in a log line.
const testToken = agenttest.Token

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	var hc harnessConfig
	for _, o := range opts {
		o(&hc)
	}
	env := agenttest.New(t, hc.env)
	h := &harness{t: t, env: env, srv: hc.env.Server, db: env.DB, site: env.Site, scim: env.SCIM, dir: env.Dir}
	if h.srv == nil {
		h.srv = testdb.Shared(t)
	}
	for _, s := range env.Secrets() {
		rememberSecret(s)
	}
	doc := env.Config().With(hc.opts...).YAML()
	var err error
	if h.cfg, err = config.Parse([]byte(doc), "test-config.yaml", agenttest.LookupEnv(env.Token)); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	t.Cleanup(h.stop)
	return h
}

// start opens and runs the agent in the background.
func (h *harness) start(opts ...func(*Options)) {
	h.t.Helper()
	log, err := logging.New("debug", "json", sinkWriter{})
	if err != nil {
		h.t.Fatal(err)
	}
	o := Options{Config: h.cfg, Logger: log, ReadyWindow: 2 * time.Second, ShutdownTimeout: 5 * time.Second}
	for _, fn := range opts {
		fn(&o)
	}
	a, err := Open(context.Background(), o)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
}

// editState opens the state file while no agent runs and lets edit
// change it, as a crash, an operator or a lost position would leave it.
func (h *harness) editState(edit func(*state.Store) error) {
	h.t.Helper()
	store, err := state.Open(h.cfg.State.Path, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer store.Close()
	if err := edit(store); err != nil {
		h.t.Fatal(err)
	}
}

// stop cancels the agent and waits for Run to return.
func (h *harness) stop() {
	if h.agent == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("Run did not return within 30s of cancel")
	}
	h.agent.Close()
	h.agent = nil
}

// headPosition is the binlog position after everything written so far,
// with the GTID of the last transaction.
func (h *harness) headPosition() binlog.Position {
	h.t.Helper()
	var file string
	var pos uint32
	var doDB, ignoreDB sql.NullString
	root := h.srv.Root()
	var gtid string
	if err := root.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		h.t.Fatal(err)
	}
	if err := root.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		h.t.Fatal(err)
	}
	return binlog.Position{File: file, Offset: pos, GTID: gtid}
}

// atLeast reports whether p is at or past target. MariaDB GTIDs compare
// per domain (a rotation to a new file with no transaction in it does
// not count); without them, file:pos is compared.
func atLeast(p, target binlog.Position) bool {
	if p.GTID != "" && target.GTID != "" {
		have := gtidSeqs(p.GTID)
		for domain, seq := range gtidSeqs(target.GTID) {
			if have[domain] < seq {
				return false
			}
		}
		return true
	}
	if p.File != target.File {
		return p.File > target.File
	}
	return p.Offset >= target.Offset
}

// gtidSeqs maps each domain of a MariaDB GTID set ("0-1-15,1-2-3") to
// its sequence number.
func gtidSeqs(set string) map[string]uint64 {
	out := map[string]uint64{}
	for _, g := range strings.Split(set, ",") {
		parts := strings.Split(strings.TrimSpace(g), "-")
		if len(parts) != 3 {
			continue
		}
		var seq uint64
		fmt.Sscan(parts[2], &seq)
		out[parts[0]] = seq
	}
	return out
}

// settle waits until the agent has handled every change written so far.
func (h *harness) settle() {
	h.t.Helper()
	target := h.headPosition()
	if !agenttest.Poll(60*time.Second, func() bool {
		if pos, idle := h.agent.caughtUp(); idle && (atLeast(pos, target) || atLeast(h.agent.SavedPosition(), target)) {
			return true
		}
		select {
		case err := <-h.done:
			h.t.Fatalf("agent stopped while settling: %v", err)
		default:
		}
		return false
	}) {
		pos, _, _ := h.agent.work.marks.Safe()
		h.t.Fatalf("agent did not reach %v within 60s (safe %v, saved %v, depth %d)", target, pos,
			h.agent.SavedPosition(), h.agent.work.depth())
	}
}

// create makes a Drupal user and returns its uid.
func (h *harness) create(u drupaltest.User) uint32 {
	h.t.Helper()
	return h.env.Create(u)
}

// createMany creates n active users named fmt.Sprintf(format, i), each
// in its own save, and returns their uids in order.
func (h *harness) createMany(format string, n int) []uint32 {
	h.t.Helper()
	uids := make([]uint32, n)
	for i := range uids {
		uids[i] = h.create(drupaltest.User{Name: fmt.Sprintf(format, i), Status: 1})
	}
	return uids
}

// delete deletes uids in Drupal, one user delete each.
func (h *harness) delete(uids ...uint32) {
	h.t.Helper()
	for _, uid := range uids {
		if err := h.site.Delete(context.Background(), uid); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) update(uid uint32, change func(*drupaltest.User)) {
	h.t.Helper()
	if err := h.site.Update(context.Background(), uid, change); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) load(uid uint32) drupaltest.User {
	h.t.Helper()
	u, err := h.site.Load(context.Background(), uid)
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// userRequests returns the requests to /Users paths: everything a change
// causes (readiness probes read /ServiceProviderConfig).
func (h *harness) userRequests() []scimtest.Request {
	return h.scim.RequestsMatching("", "/Users")
}

// count returns the number of requests of one method to /Users paths.
func (h *harness) count(method string) int {
	return h.scim.CountRequests(method, "/Users")
}

// serverUser returns the server's account with this externalId.
func (h *harness) serverUser(uuid string) (scimtest.User, bool) {
	for _, u := range h.scim.Users() {
		if u.ExternalID() == uuid {
			return u, true
		}
	}
	return scimtest.User{}, false
}

// assertServerMatchesDB checks that the server holds exactly one account
// per provisioned Drupal user, with Drupal's values, and nothing else
// (other than the accounts listed in extra by id).
func (h *harness) assertServerMatchesDB(extra ...string) {
	h.t.Helper()
	diffs, err := h.site.Differences(context.Background(), h.scim.Users(),
		func(uid uint32) bool { return !h.cfg.Provisioning.Excluded(uid) }, extra...)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, d := range diffs {
		h.t.Error(d)
	}
}

// postsByUserName counts the POST /Users requests per userName.
func (h *harness) postsByUserName() map[string]int {
	n := map[string]int{}
	for _, r := range h.scim.RequestsMatching("POST", "/Users") {
		var body map[string]any
		json.Unmarshal(r.Body, &body)
		name, _ := body["userName"].(string)
		n[name]++
	}
	return n
}

// eventually waits for cond (see agenttest.Eventually).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	agenttest.Eventually(t, what, cond)
}
