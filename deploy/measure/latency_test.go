package measure

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// BenchmarkCommitToRequest is the delay a user sees: the agent's binary
// runs and is ready, then Drupal creates users at 100 a second for 10
// seconds, and each user's time from its COMMIT (the create's return) to
// its POST's arrival at the SCIM server is taken from the server's log.
// It reports p50, p99 and the largest, in milliseconds.
func BenchmarkCommitToRequest(b *testing.B) {
	const perSecond, users = 100, 1000
	agentBinary(b)
	for range b.N {
		env := agenttest.New(b, agenttest.Options{SCIM: scimtest.Options{Token: "bench-token"}})
		dir := b.TempDir()
		p := startAgent(b, env, benchConfig(env, dir), dir)
		p.waitFor("readiness", time.Minute, p.ready)

		committed := make(map[string]time.Time, users)
		tick := time.NewTicker(time.Second / perSecond)
		for i := range users {
			<-tick.C
			u := siteUser("late", i)
			if _, err := env.Site.Create(context.Background(), u); err != nil {
				b.Fatal(err)
			}
			committed[u.Name] = time.Now()
		}
		tick.Stop()
		p.waitFor("every create on the server", time.Minute, func() bool { return env.SCIM.UserCount() == users })
		p.stop()

		var delays []time.Duration
		for _, r := range env.SCIM.RequestsMatching(http.MethodPost, "/Users") {
			name, _ := r.JSON()["userName"].(string)
			if at, ok := committed[name]; ok {
				delays = append(delays, r.Time.Sub(at))
				delete(committed, name) // the first POST of each user counts
			}
		}
		if len(delays) != users {
			b.Fatalf("%d of %d creates POSTed", len(delays), users)
		}
		slices.Sort(delays)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		p50, p99, worst := delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1]
		b.ReportMetric(ms(p50), "p50-ms")
		b.ReportMetric(ms(p99), "p99-ms")
		b.ReportMetric(ms(worst), "max-ms")
		b.Logf("%d creates at %d/s: commit to POST p50 %.1f ms, p99 %.1f ms, max %.1f ms", users, perSecond, ms(p50), ms(p99), ms(worst))
	}
}
