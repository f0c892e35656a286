package measure

import (
	"context"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// The two kinds of SCIM server of BenchmarkProvision, each taking ~1,200
// creates/s from 4 clients on this 2-core machine, the capacity of the
// independent server the agent was first measured against. (Without a
// cost of its own the in-process server takes ~10,000 a second, and the
// agent, not the server, is the bottleneck: see BenchmarkSyncScale.)
var provisionServers = []struct {
	name string
	opts scimtest.Options
	// calibrate, when set, replaces opts.WorkPerRequest with what makes
	// the server alone take serverCapacity creates/s on this machine.
	calibrate bool
}{
	// cpu-bound spends only CPU on a request (~1.6 ms of it on the
	// machine the README's figures come from) and nothing else: on two
	// cores it competes with the agent and MariaDB, so every µs of the
	// agent's CPU is taken from the server's capacity. A fixed amount of
	// work would make its capacity the machine's speed (12,000 rounds
	// took 1,385 creates/s on one host and 2,080 on another), and the
	// agent's share of two cores grows with the rate it is asked for.
	{"cpu-bound", scimtest.Options{WorkPerRequest: 12000}, true},
	// commit-bound spends ~0.3 ms of CPU and waits 2.5 ms for its
	// database's commit on every write, as a production server does: its
	// capacity is what its clients keep in flight (~1,200 creates/s from
	// 4 of them on any machine that has the CPU for it).
	{"commit-bound", scimtest.Options{WorkPerRequest: 2500, WaitPerWrite: 2500 * time.Microsecond}, false},
}

// serverCapacity is the creates/s of the independent SCIM server the
// agent was first measured against (1,170-1,200 from 4 clients on this
// 2-core machine), which the cpu-bound server is calibrated to.
const serverCapacity = 1200

// BenchmarkProvision compares the agent with the SCIM server's own
// capacity, in one run for each kind of server (provisionServers). 4
// clients POST the agent's bodies straight at a server, half of them
// before and half after the agent's turn (the machine is shared: this
// brackets the agent's measurement in time). The
// agent's binary, with its default 4 workers, provisions a site of users
// into a server of the same kind (its initial sync), then, restarted
// after backlog Drupal creates made while it was stopped, drains them.
// Both are measured the same way, from the server's log: POSTs from the
// first one's arrival to the last one's answer.
//
// It reports each ratio (agent / direct), the agent's CPU (user + system
// of its own process, from /proc; the SCIM server's and MariaDB's are
// not in it) per user provisioned, its statements to MariaDB per user
// during the sync (MariaDB's user statistics) and its peak RSS.
// SCIM_AGENT_BENCH_USERS (default 20000) and SCIM_AGENT_BENCH_BACKLOG
// (default 5000) size it. One op is the whole comparison: run it with
// -benchtime=1x.
func BenchmarkProvision(b *testing.B) {
	for _, srv := range provisionServers {
		b.Run(srv.name, func(b *testing.B) {
			agentBinary(b)
			opts := srv.opts
			if srv.calibrate {
				opts.WorkPerRequest = calibrate(b, opts, serverCapacity)
			}
			for range b.N {
				provision(b, opts)
			}
		})
	}
}

func provision(b *testing.B, opts scimtest.Options) {
	users := envInt("SCIM_AGENT_BENCH_USERS", 20000)
	backlog := envInt("SCIM_AGENT_BENCH_BACKLOG", 5000)
	const token = "bench-token"
	opts.Token = token

	direct := scimtest.New(b, opts)
	half := users / 2
	bodies := agentBodies(b, "user", 2*half)
	postAll(b, direct, token, bodies[:half], 4)
	before, beforeRate := throughput(direct)
	direct.ResetRequests()

	env := agenttest.New(b, agenttest.Options{SCIM: opts})
	dir := b.TempDir()
	bulkCreate(b, env.Site, "user", users)
	c := benchConfig(env, dir)
	statements := dbStatements(b, env)

	p := startAgent(b, env, c, dir)
	p.waitFor("the initial sync's accounts on the server", 30*time.Minute, func() bool { return env.SCIM.UserCount() == users })
	syncUser, syncSys := p.cpuSplit()
	p.waitFor("readiness after the initial sync", time.Minute, p.ready)
	syncStatements := dbStatements(b, env) - statements
	n, agentSync := throughput(env.SCIM)
	if n != users {
		b.Fatalf("%d POSTs during the sync of %d users", n, users)
	}
	syncRSS := p.mem().hwm
	p.stop()

	// What a start costs with nothing to do (the checks, the state file
	// of every account, the binlog's connection): the backlog's CPU
	// includes it once.
	p = startAgent(b, env, c, dir)
	p.waitFor("readiness with nothing to do", time.Minute, p.ready)
	startUser, startSys := p.cpuSplit()
	p.stop()

	env.SCIM.ResetRequests()
	parallel(b, backlog, func(i int) error {
		_, err := env.Site.Create(context.Background(), siteUser("late", i))
		return err
	})
	p = startAgent(b, env, c, dir)
	p.waitFor("the backlog's accounts on the server", 30*time.Minute, func() bool { return env.SCIM.UserCount() == users+backlog })
	backlogUser, backlogSys := p.cpuSplit()
	n, agentBacklog := throughput(env.SCIM)
	if n != backlog {
		b.Fatalf("%d POSTs for a backlog of %d creates", n, backlog)
	}
	backlogRSS := p.mem().hwm
	p.stop()

	postAll(b, direct, token, bodies[half:], 4)
	after, afterRate := throughput(direct)
	// Every direct POST over the time they took.
	capacity := float64(before+after) / (float64(before)/beforeRate + float64(after)/afterRate)

	perUser := func(s float64, n int) float64 { return s / float64(n) * 1e6 }
	b.ReportMetric(agentSync/capacity, "sync-ratio")
	b.ReportMetric(agentBacklog/capacity, "backlog-ratio")
	b.ReportMetric(perUser(syncUser+syncSys, users), "sync-cpu-µs/user")
	b.ReportMetric(perUser(backlogUser+backlogSys, backlog), "backlog-cpu-µs/user")
	b.ReportMetric(perUser(backlogUser+backlogSys-startUser-startSys, backlog), "backlog-cpu-µs/user-after-start")
	b.ReportMetric(float64(syncStatements)/float64(users), "sync-db-statements/user")
	b.ReportMetric(kib(max(syncRSS, backlogRSS)), "peak-RSS-MiB")
	b.Logf("server alone: %.0f creates/s (%.0f before the agent, %.0f after); agent: sync of %d users %.0f/s (ratio %.2f), backlog of %d creates %.0f/s (ratio %.2f)",
		capacity, beforeRate, afterRate, users, agentSync, agentSync/capacity, backlog, agentBacklog, agentBacklog/capacity)
	b.Logf("agent CPU per user: sync %.0f µs (%.0f user, %.0f system), backlog %.0f µs (%.0f user, %.0f system; %.0f µs without the %.0f ms of a start with nothing to do); %d statements to MariaDB in the sync (%.4f/user); peak RSS %.1f MiB",
		perUser(syncUser+syncSys, users), perUser(syncUser, users), perUser(syncSys, users),
		perUser(backlogUser+backlogSys, backlog), perUser(backlogUser, backlog), perUser(backlogSys, backlog),
		perUser(backlogUser+backlogSys-startUser-startSys, backlog), (startUser+startSys)*1e3,
		syncStatements, float64(syncStatements)/float64(users), kib(max(syncRSS, backlogRSS)))
}

// calibrate returns the rounds of work a request (Options.WorkPerRequest)
// that make a server with opts take about target creates/s from 4
// clients: it times the server at opts' rounds and at twice as many,
// and solves the line through the two (a request's time is a fixed part
// plus the rounds'). The benchmark measures the capacity it compares
// with again around the agent's turn: this only chooses the server.
func calibrate(b *testing.B, opts scimtest.Options, target float64) int {
	b.Helper()
	const token, posts = "calibrate-token", 2000
	opts.Token = token
	bodies := agentBodies(b, "calibrate", posts)
	secondsPerCreate := func(rounds int) float64 {
		o := opts
		o.WorkPerRequest = rounds
		srv := scimtest.New(b, o)
		postAll(b, srv, token, bodies, 4)
		_, rate := throughput(srv)
		return 1 / rate
	}
	r1, r2 := opts.WorkPerRequest, 2*opts.WorkPerRequest
	t1, t2 := secondsPerCreate(r1), secondsPerCreate(r2)
	perRound := (t2 - t1) / float64(r2-r1)
	if perRound <= 0 {
		b.Fatalf("calibration: %.0f creates/s at %d rounds, %.0f at %d: the work does not slow the server", 1/t1, r1, 1/t2, r2)
	}
	rounds := int((1/target - (t1 - perRound*float64(r1))) / perRound)
	if rounds < 1 {
		b.Fatalf("calibration: the server alone takes %.0f creates/s at %d rounds and at least %.0f with none; it cannot be made to take %.0f", 1/t1, r1, 1/(t1-perRound*float64(r1)), target)
	}
	b.Logf("calibration: %.0f creates/s at %d rounds a request, %.0f at %d: %d rounds for %.0f", 1/t1, r1, 1/t2, r2, rounds, target)
	return rounds
}
