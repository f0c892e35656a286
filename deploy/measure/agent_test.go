package measure

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
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/mapping"
)

// built is the agent's binary, built once per test binary, exactly as
// the Dockerfile builds it.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// agentBinary returns the path of the built binary.
func agentBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "scim-agent-measure-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "scim-agent")
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", built.path, "./cmd/scim-agent")
		build.Dir = "../.."
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.path
}

// removeBinary removes the built binary's directory (from TestMain).
func removeBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// agentProc is the agent's binary running as a process of its own, so
// that its CPU time and memory are its own (the SCIM server runs in the
// test process, MariaDB in another).
type agentProc struct {
	tb      testing.TB
	cmd     *exec.Cmd
	admin   string
	logPath string
	exited  chan error
	started time.Time
}

// startAgent writes c as the agent's config (its admin listener on a free
// port) and runs `scim-agent run` on it, logging to a file in dir.
func startAgent(tb testing.TB, env *agenttest.Env, c agenttest.Config, dir string) *agentProc {
	tb.Helper()
	p := &agentProc{tb: tb, admin: agenttest.FreeAddr(tb), logPath: filepath.Join(dir, fmt.Sprintf("agent-%d.log", time.Now().UnixNano())),
		exited: make(chan error, 1)}
	c.AdminListen = p.admin
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(c.YAML()), 0o600); err != nil {
		tb.Fatal(err)
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	p.cmd = exec.Command(agentBinary(tb), "run", "--config", config)
	p.cmd.Env = append(os.Environ(), agenttest.TokenVar+"="+env.Token)
	if extra := os.Getenv("SCIM_AGENT_BENCH_AGENT_ENV"); extra != "" {
		// Settings for the agent's process alone (GOGC=..., GOMEMLIMIT=...).
		p.cmd.Env = append(p.cmd.Env, strings.Fields(extra)...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		tb.Fatal(err)
	}
	go func() {
		p.exited <- p.cmd.Wait()
		logFile.Close()
	}()
	tb.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// pid is the agent's process id.
func (p *agentProc) pid() int { return p.cmd.Process.Pid }

// cpu is the CPU time (user + system) the agent has used so far.
func (p *agentProc) cpu() float64 {
	p.tb.Helper()
	s, err := cpuSeconds(p.pid())
	if err != nil {
		p.tb.Fatal(err)
	}
	return s
}

// cpuSplit is cpu split into user and system time.
func (p *agentProc) cpuSplit() (user, sys float64) {
	p.tb.Helper()
	user, sys, err := cpuTimes(p.pid())
	if err != nil {
		p.tb.Fatal(err)
	}
	return user, sys
}

// mem reads the agent's memory.
func (p *agentProc) mem() memSample {
	p.tb.Helper()
	m, err := readMem(p.pid())
	if err != nil {
		p.tb.Fatal(err)
	}
	return m
}

// ready reports whether GET /readyz answers 200.
func (p *agentProc) ready() bool {
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitFor polls cond every 20ms for up to limit, failing with the log's
// tail when the agent exits or the time is up.
func (p *agentProc) waitFor(what string, limit time.Duration, cond func() bool) {
	p.tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		select {
		case err := <-p.exited:
			p.exited <- err
			p.tb.Fatalf("agent exited (%v) while waiting for %s\n%s", err, what, p.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("no %s within %s\n%s", what, limit, p.logTail())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *agentProc) stop() {
	p.tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.tb.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			p.tb.Fatalf("exit after SIGTERM: %v\n%s", err, p.logTail())
		}
	case <-time.After(30 * time.Second):
		p.tb.Fatalf("agent still running 30s after SIGTERM\n%s", p.logTail())
	}
}

func (p *agentProc) logTail() string {
	out, _ := os.ReadFile(p.logPath)
	return tail(out)
}

// benchConfig is the agent's config for the measurements: the defaults
// an operator starts with (4 workers, info logs), no deletion limit.
func benchConfig(env *agenttest.Env, dir string) agenttest.Config {
	c := env.Config().With(agenttest.Provisioning("workers: 4\nmax_deletes: 0"))
	c.StatePath, c.LogLevel = filepath.Join(dir, "state.db"), ""
	return c
}

// siteUser is the i-th user of a measured site: every default mapping
// source set, a third of them with a role.
func siteUser(prefix string, i int) drupaltest.User {
	u := drupaltest.User{Name: fmt.Sprintf("%s%06d", prefix, i), Mail: drupaltest.Str(fmt.Sprintf("%s%06d@example.org", prefix, i)),
		Status: 1, Timezone: "Europe/Berlin"}
	if i%3 == 0 {
		u.Roles = []string{"editor"}
	}
	return u
}

// bulkCreate makes n users (siteUser(prefix, 0..n-1)) with bulk imports,
// 2000 per transaction, and returns their uids.
func bulkCreate(tb testing.TB, site *drupaltest.Site, prefix string, n int) []uint32 {
	tb.Helper()
	var uids []uint32
	for start := 0; start < n; start += 2000 {
		batch := make([]drupaltest.User, 0, 2000)
		for i := start; i < min(start+2000, n); i++ {
			batch = append(batch, siteUser(prefix, i))
		}
		got, err := site.CreateMany(context.Background(), batch)
		if err != nil {
			tb.Fatal(err)
		}
		uids = append(uids, got...)
	}
	return uids
}

// agentBodies returns the bodies the agent POSTs for siteUser(prefix,
// 0..n-1), each with a uuid of its own: the mapping's own rendering.
func agentBodies(tb testing.TB, prefix string, n int) [][]byte {
	tb.Helper()
	m, err := mapping.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([][]byte, n)
	for i := range out {
		u := siteUser(prefix, i)
		acct := drupal.Account{UID: uint32(i + 1), UUID: drupaltest.NewUUID(), Langcode: "en", Values: map[string]any{
			"name": u.Name, "mail": *u.Mail, "status": int64(u.Status), "preferred_langcode": "en", "timezone": u.Timezone,
			"roles": u.Roles}}
		if out[i], err = json.Marshal(m.Map(acct).Resource()); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// postAll POSTs bodies to the server from clients connections at once,
// as directly as a client can: a kept-alive connection each, no retries.
func postAll(tb testing.TB, srv *scimtest.Server, token string, bodies [][]byte, clients int) {
	tb.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(bodies) {
					return
				}
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/Users", bytes.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", scimtest.MediaType)
				req.Header.Set("Accept", scimtest.MediaType)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("POST %d: status %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// throughput is what the server's log says of its POSTs /Users: how many,
// and how many a second from the first one's arrival to the last one's
// answer. The same measure for the direct clients and for the agent.
func throughput(srv *scimtest.Server) (n int, perSecond float64) {
	posts := srv.RequestsMatching(http.MethodPost, "/Users")
	if len(posts) == 0 {
		return 0, 0
	}
	first := slices.MinFunc(posts, func(a, b scimtest.Request) int { return a.Time.Compare(b.Time) }).Time
	var last time.Time
	for _, r := range posts {
		if end := r.Time.Add(r.Duration); end.After(last) {
			last = end
		}
	}
	return len(posts), float64(len(posts)) / last.Sub(first).Seconds()
}

// dbStatements returns the statements the agent's MariaDB account has
// sent so far (MariaDB's user statistics, switched on here), or -1 where
// the server keeps none.
func dbStatements(tb testing.TB, env *agenttest.Env) int64 {
	tb.Helper()
	if _, err := env.DB.DB.Exec("SET GLOBAL userstat = 1"); err != nil {
		return -1
	}
	var n int64
	err := env.DB.DB.QueryRow(`SELECT COALESCE(SUM(SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS), 0)
		FROM information_schema.USER_STATISTICS WHERE USER = ?`, "agent_"+env.DB.Name).Scan(&n)
	if err != nil {
		return -1
	}
	return n
}
