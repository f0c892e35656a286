// Package measure measures the agent's binary as operators run it: a
// process of its own against a private MariaDB and the in-process SCIM
// server, its CPU and memory read from the kernel's own accounting
// (/proc/<pid>/stat and status).
//
// The benchmarks (make bench runs them once each, -benchtime=1x) compare
// the agent's throughput with the SCIM server's own capacity and report
// its CPU per user (BenchmarkProvision), sync sites of 10,000 and 100,000
// users and hold 100,000 changes pending (BenchmarkSyncScale), and time
// a create from its COMMIT to its POST (BenchmarkCommitToRequest).
//
// TestRSSUnderLoad sizes the agent's memory for the deployment examples;
// it runs only on request, since it takes minutes:
//
//	SCIM_AGENT_MEASURE=1 go test ./deploy/measure/ -run RSS -v -timeout 30m
//
// SCIM_AGENT_MEASURE_USERS (default 20000) is the size of the site the
// initial sync walks; SCIM_AGENT_MEASURE_CHANGES (default 5000) is the
// burst of Drupal-style changes made once the agent is ready. The numbers
// it prints are what deploy/kubernetes/*.yaml and deploy/systemd size
// their memory requests and limits from.
package measure

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

func TestMain(m *testing.M) {
	code := testdb.RunMain(m)
	removeBinary()
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// memSample is one reading of /proc/<pid>/status, in KiB. anon is the
// process's own memory (Go heap, stacks); file is mapped files, which for
// the agent is mostly the bbolt state file (mapped read-only: clean page
// cache the kernel can reclaim under a cgroup's limit) and the binary.
type memSample struct{ rss, hwm, anon, file int64 }

func readMem(pid int) (memSample, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memSample{}, err
	}
	defer f.Close()
	var s memSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rss = n
		case "VmHWM":
			s.hwm = n
		case "RssAnon":
			s.anon = n
		case "RssFile":
			s.file = n
		}
	}
	return s, sc.Err()
}

// cpuSeconds is the user+system CPU time the process has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s, the
// USER_HZ of every Linux architecture Go supports here).
func cpuSeconds(pid int) (float64, error) {
	user, sys, err := cpuTimes(pid)
	return user + sys, err
}

// cpuTimes is cpuSeconds split into user and system time.
func cpuTimes(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces: count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return utime / 100, stime / 100, nil
}

// sampler reads the process's memory every 50ms and keeps the largest
// RSS seen (VmHWM is the kernel's own peak, the authoritative number).
type sampler struct {
	pid     int
	maxRSS  atomic.Int64
	maxAnon atomic.Int64
	stop    chan struct{}
	stopped chan struct{}
}

func startSampler(pid int) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := readMem(pid); err == nil {
				if m.rss > s.maxRSS.Load() {
					s.maxRSS.Store(m.rss)
				}
				if m.anon > s.maxAnon.Load() {
					s.maxAnon.Store(m.anon)
				}
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func TestRSSUnderLoad(t *testing.T) {
	if os.Getenv("SCIM_AGENT_MEASURE") == "" {
		t.Skip("set SCIM_AGENT_MEASURE=1 to measure the agent's memory (takes minutes)")
	}
	users := envInt("SCIM_AGENT_MEASURE_USERS", 20000)
	changes := envInt("SCIM_AGENT_MEASURE_CHANGES", 5000)
	ctx := context.Background()
	dir := t.TempDir()

	// The binary exactly as the Dockerfile builds it.
	bin := filepath.Join(dir, "scim-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/scim-agent")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	env := agenttest.New(t, agenttest.Options{SCIM: scimtest.Options{Token: "measure-token"}})
	site, scim := env.Site, env.SCIM
	start := time.Now()
	uids := make([]uint32, users)
	parallel(t, users, func(i int) error {
		u := drupaltest.User{Name: fmt.Sprintf("user%06d", i), Mail: drupaltest.Str(fmt.Sprintf("user%06d@example.org", i)),
			Status: 1, Timezone: "Europe/Berlin"}
		if i%3 == 0 {
			u.Roles = []string{"editor"}
		}
		uid, err := site.Create(ctx, u)
		uids[i] = uid
		return err
	})
	t.Logf("site: %d users created in %s", users, time.Since(start).Round(time.Second))

	admin := agenttest.FreeAddr(t)
	config := filepath.Join(dir, "config.yaml")
	c := env.Config().With(agenttest.Provisioning("max_deletes: 0"))
	c.StatePath, c.AdminListen, c.LogLevel = filepath.Join(dir, "state.db"), admin, ""
	doc := c.YAML()
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "--config", config)
	cmd.Env = append(os.Environ(), "SCIM_TOKEN=measure-token")
	logFile, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	smp := startSampler(cmd.Process.Pid)
	defer func() { close(smp.stop); <-smp.stopped }()

	status := func() (map[string]any, bool) {
		resp, err := http.Get("http://" + admin + "/status")
		if err != nil {
			return nil, false
		}
		defer resp.Body.Close()
		var m map[string]any
		return m, json.NewDecoder(resp.Body).Decode(&m) == nil
	}
	waitFor := func(what string, limit time.Duration, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !done() {
			select {
			case err := <-exited:
				out, _ := os.ReadFile(logFile.Name())
				t.Fatalf("agent exited (%v) while waiting for %s\n%s", err, what, tail(out))
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				out, _ := os.ReadFile(logFile.Name())
				t.Fatalf("no %s within %s\n%s", what, limit, tail(out))
			}
		}
	}
	lastCPU, lastAt := 0.0, time.Now()
	report := func(phase string) {
		m, err := readMem(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		cpu, err := cpuSeconds(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		wall := time.Since(lastAt).Seconds()
		var stateMiB float64
		if fi, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
			stateMiB = float64(fi.Size()) / (1 << 20)
		}
		mib := func(kib int64) float64 { return float64(kib) / 1024 }
		t.Logf("%s: VmRSS %.1f MiB (anon %.1f, file %.1f), VmHWM %.1f MiB, max sampled RSS %.1f MiB / anon %.1f MiB; state.db %.1f MiB; CPU %.1fs in %.0fs (%.2f cores)",
			phase, mib(m.rss), mib(m.anon), mib(m.file), mib(m.hwm), mib(smp.maxRSS.Load()), mib(smp.maxAnon.Load()),
			stateMiB, cpu-lastCPU, wall, (cpu-lastCPU)/wall)
		lastCPU, lastAt = cpu, time.Now()
	}

	start, lastAt = time.Now(), time.Now()
	// The in-process SCIM server slows down as it fills (about 40
	// creates/s at 50,000 users on 2 cores): allow 50ms a user.
	waitFor("readiness after the initial sync", max(5*time.Minute, time.Duration(users)*50*time.Millisecond), func() bool {
		s, ok := status()
		return ok && s["ready"] == true
	})
	t.Logf("initial sync of %d users: %s", users, time.Since(start).Round(time.Second))
	report("after initial sync")

	lastAt = time.Now()
	// The burst: Drupal-style creates, saves (DELETE + INSERT of the
	// field data), blocks and deletions of existing users, from 4
	// connections at once, as a busy site's PHP workers would.
	start = time.Now()
	parallel(t, changes, func(i int) error {
		uid := uids[i%users]
		switch i % 4 {
		case 0:
			_, err := site.Create(ctx, drupaltest.User{Name: fmt.Sprintf("burst%06d", i), Mail: drupaltest.Str(fmt.Sprintf("burst%06d@example.org", i)), Status: 1})
			return err
		case 1:
			return site.Update(ctx, uid, func(u *drupaltest.User) { u.Mail = drupaltest.Str(u.Name + "@new.example.org") })
		case 2:
			return site.Update(ctx, uid, func(u *drupaltest.User) { u.Status = 0 })
		default:
			return site.Delete(ctx, uid)
		}
	})
	t.Logf("burst: %d changes written in %s", changes, time.Since(start).Round(time.Second))
	var want int
	waitFor("the server to match the database", 20*time.Minute, func() bool {
		if err := env.DB.DB.QueryRow("SELECT COUNT(*) FROM users WHERE uid > 0").Scan(&want); err != nil {
			t.Fatal(err)
		}
		s, ok := status()
		return ok && len(scim.Users()) == want && s["queue_depth"] == float64(0) && s["lag_seconds"] == float64(0)
	})
	t.Logf("burst drained in %s (server holds %d users)", time.Since(start).Round(time.Second), want)
	report("after the burst")

	// Idle: what the agent settles at once the Go runtime has returned
	// what it no longer needs (scavenging happens within minutes; two
	// are enough to see the trend).
	time.Sleep(2 * time.Minute)
	report("idle 2 minutes later")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		exited <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("agent still running 15s after SIGTERM")
	}
}

// parallel runs fn(0..n-1) on 4 goroutines and fails the test on the
// first error.
func parallel(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- fmt.Errorf("item %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
