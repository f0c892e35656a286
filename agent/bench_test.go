package agent

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// BenchmarkWorkQueue is the queue's cost per uid: one single-uid
// transaction queued, handed out and finished.
func BenchmarkWorkQueue(b *testing.B) {
	w := newWork(0)
	now := time.Now()
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		i++
		w.transaction([]key{userKey(i % 1000)}, binlog.Position{File: "bin.000001", Offset: i}, now)
		k, it, _ := w.queue.Get()
		w.finished(k, it, Result{})
		w.queue.Done(k)
	}
}

// BenchmarkBacklog measures how fast the agent drains a backlog, end to
// end against the real MariaDB and the in-process SCIM server on
// loopback: b.N changes are written while the agent is stopped, then the
// timer runs from its start until every change is handled. "create" is
// one user created per transaction (one POST each); "noop-save" is a
// Drupal save that changes nothing mapped (a password rehash: no request
// at all, which the benchmark checks); "mail-save" changes the mail, on
// a server that takes value filters in PATCH paths (one PATCH each), one
// with ETags (one PATCH of the whole list, conditional on the version
// held) and one that takes neither (a GET and a PATCH each).
// requests/change counts what reached the server.
func BenchmarkBacklog(b *testing.B) {
	for _, tc := range []struct {
		name, kind string
		scim       scimtest.Options
	}{
		{"create", "create", scimtest.Options{}},
		{"noop-save", "noop-save", scimtest.Options{}},
		{"mail-save/value-filter", "mail-save", scimtest.Options{}},
		{"mail-save/etag", "mail-save", scimtest.Options{ETags: true, NoValueFilterPaths: true}},
		{"mail-save/get-patch", "mail-save", scimtest.Options{NoValueFilterPaths: true}},
	} {
		kind := tc.kind
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b, withSCIM(tc.scim))
			ctx := context.Background()
			var uids []uint32
			if kind != "create" {
				for i := 0; i < b.N; i++ {
					uids = append(uids, h.create(drupaltest.User{Name: fmt.Sprintf("n%d", i), Mail: str("n@example.org"), Status: 1}))
				}
			}
			h.start()
			h.settle()
			h.stop()
			for i := 0; i < b.N; i++ {
				var err error
				switch kind {
				case "create":
					_, err = h.site.Create(ctx, drupaltest.User{Name: fmt.Sprintf("c%d", i), Mail: str("c@example.org"), Status: 1})
				case "noop-save":
					err = h.site.Update(ctx, uids[i], func(u *drupaltest.User) { u.Pass = "$2y$10$rehash" })
				case "mail-save":
					err = h.site.Update(ctx, uids[i], func(u *drupaltest.User) { u.Mail = str(fmt.Sprintf("m%d@example.org", i)) })
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			h.scim.ResetRequests()
			b.ReportAllocs()
			b.ResetTimer()
			h.start()
			h.settle()
			b.StopTimer()
			if n := h.scim.CountRequests("", "/Users"); kind == "noop-save" && n != 0 {
				b.Fatalf("%d requests for saves that change nothing mapped", n)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
			b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(len(h.userRequests()))/float64(b.N), "requests/change")
		})
	}
}
