package measure

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// BenchmarkSyncScale is the agent's initial sync of sites of 10,000 and
// 100,000 users (about 3 minutes in all), each against a SCIM
// server that spends nothing on a request, so the agent is what is
// measured: time per user (from the first POST to the last answer) must
// not grow with the site. It reports µs/user and the agent's CPU per user.
//
// The 100,000-user run then measures memory with every user managed and
// 100,000 changes pending: the server goes down (503), one change per
// user is committed (a mail UPDATE each, its own transaction), and once
// the agent has read them all its RSS (VmRSS, VmHWM, of which anonymous)
// is reported; the server comes back and the backlog drains.
func BenchmarkSyncScale(b *testing.B) {
	sizes := []int{10000, 100000}
	for _, users := range sizes {
		b.Run(strconv.Itoa(users), func(b *testing.B) {
			agentBinary(b)
			for range b.N {
				syncScale(b, users)
			}
		})
	}
}

func syncScale(b *testing.B, users int) {
	// A server of its own, with room for a large site in memory.
	srv := testdb.StartPrivate(b, testdb.Options{ExtraArgs: []string{"--innodb-buffer-pool-size=256M"}})
	env := agenttest.New(b, agenttest.Options{Server: srv, SCIM: scimtest.Options{Token: "bench-token"}})
	dir := b.TempDir()
	uids := bulkCreate(b, env.Site, "user", users)
	p := startAgent(b, env, benchConfig(env, dir), dir)
	p.waitFor("the initial sync's accounts on the server", 60*time.Minute, func() bool { return env.SCIM.UserCount() == users })
	cpu := p.cpu()
	n, rate := throughput(env.SCIM)
	if n != users {
		b.Fatalf("%d POSTs for %d users", n, users)
	}
	tenths := tenthRates(env.SCIM)
	p.waitFor("readiness after the initial sync", time.Minute, p.ready)
	synced := p.mem()
	b.ReportMetric(1e6/rate, "µs/user")
	b.ReportMetric(cpu/float64(users)*1e6, "cpu-µs/user")
	b.ReportMetric(float64(synced.hwm)/1024, "sync-peak-RSS-MiB")
	b.Logf("sync of %d users: %.0f users/s (%.0f µs/user), agent CPU %.0f µs/user; after it VmRSS %.1f MiB (anon %.1f, file %.1f), peak %.1f MiB",
		users, rate, 1e6/rate, cpu/float64(users)*1e6, kib(synced.rss), kib(synced.anon), kib(synced.file), kib(synced.hwm))
	b.Logf("users/s in each tenth of the sync: %.0f", tenths)
	if users < 100000 {
		p.stop()
		return
	}

	// Every user managed; now as many changes pending.
	env.SCIM.SetDown(true)
	env.SCIM.ResetRequests()
	parallel(b, users, func(i int) error {
		_, err := env.DB.DB.Exec("UPDATE users_field_data SET mail = ? WHERE uid = ?", fmt.Sprintf("changed%06d@example.org", i), uids[i])
		return err
	})
	p.waitFor("every change read and pending", 30*time.Minute, func() bool {
		s, ok := p.status()
		return ok && s.QueueDepth >= users-loadAhead
	})
	pending := p.mem()
	b.ReportMetric(float64(pending.hwm)/1024, "pending-peak-RSS-MiB")
	b.Logf("%d users managed, %d changes pending: VmRSS %.1f MiB (anon %.1f, file %.1f), peak %.1f MiB",
		users, users, kib(pending.rss), kib(pending.anon), kib(pending.file), kib(pending.hwm))
	env.SCIM.SetDown(false)
	start := time.Now()
	p.waitFor("the backlog drained", 60*time.Minute, func() bool {
		s, ok := p.status()
		return ok && s.QueueDepth == 0 && s.LagSeconds == 0
	})
	b.Logf("backlog of %d mail changes drained in %s; peak RSS %.1f MiB", users, time.Since(start).Round(time.Second), kib(p.mem().hwm))
	p.stop()
}

// tenthRates is the POSTs a second in each tenth of the server's log (in
// order of answer): a sync whose cost grows with the site slows down
// from tenth to tenth.
func tenthRates(srv *scimtest.Server) []float64 {
	var ends []time.Time
	for _, r := range srv.RequestsMatching(http.MethodPost, "/Users") {
		ends = append(ends, r.Time.Add(r.Duration))
	}
	slices.SortFunc(ends, time.Time.Compare)
	var rates []float64
	for i := 1; i <= 10 && len(ends) >= 20; i++ {
		from, to := ends[(i-1)*len(ends)/10], ends[i*len(ends)/10-1]
		rates = append(rates, float64(len(ends)/10)/to.Sub(from).Seconds())
	}
	return rates
}

// loadAhead bounds the keys the agent holds outside its queue (read
// ahead by its loader, or in its workers' hands).
const loadAhead = 2*250 + 8

func kib(n int64) float64 { return float64(n) / 1024 }

// agentStatus is the part of GET /status the measurements read.
type agentStatus struct {
	QueueDepth int     `json:"queue_depth"`
	LagSeconds float64 `json:"lag_seconds"`
}

func (p *agentProc) status() (agentStatus, bool) {
	var s agentStatus
	resp, err := http.Get("http://" + p.admin + "/status")
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}
