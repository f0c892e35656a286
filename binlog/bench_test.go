package binlog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"go.uber.org/zap"
)

// drupalFieldDataTM is users_field_data's table map as Drupal creates it.
var drupalFieldDataTM = tableMap("users_field_data", "uid", "langcode", "preferred_langcode", "preferred_admin_langcode",
	"name", "pass", "mail", "timezone", "status", "created", "changed", "access", "login", "init", "default_langcode")

func drupalRow(uid uint32, lang string, access int32, def int8) []any {
	return []any{uid, lang, "en", nil, "user" + fmt.Sprint(uid), "$2y$10$abcdefghijklmnopqrstuv0123456789abcdefghijklmnopqrs",
		"user@example.org", "Europe/Berlin", int8(1), int32(1_700_000_000), int32(1_700_000_100), access, access, "user@example.org", def}
}

// BenchmarkAssemble measures the grouping and comparison of this package
// alone, on hand-made events shaped like MariaDB's for Drupal's two most
// frequent writes to the user tables: a login (UPDATE of login/access on
// two translation rows) and a save (DELETE and re-INSERT of both rows).
// One op is one transaction.
func BenchmarkAssemble(b *testing.B) {
	mapped := []Table{
		{Name: "users", KeyColumn: "uid"},
		{Name: "users_field_data", KeyColumn: "uid", Columns: mappedColumns},
	}
	for _, kind := range []string{"logins", "saves"} {
		b.Run(kind, func(b *testing.B) {
			a := newAssembler("drupal", mapped, nameRule{}, fakeColumns{}, nil, zap.NewNop())
			a.file = "mariadb-bin.000001"
			a.gset, _ = gomysql.ParseGTIDSet(gomysql.MariaDBFlavor, "0-1-1")
			eb := &events{pos: 4}
			gtid := &replication.MariadbGTIDEvent{GTID: gomysql.MariadbGTID{DomainID: 0, ServerID: 1}, Flags: 0x0c}
			evs := []*replication.BinlogEvent{eb.add(replication.MARIADB_GTID_EVENT, 42, gtid)}
			if kind == "logins" {
				evs = append(evs, rowsEv(eb, replication.UPDATE_ROWS_EVENTv1, drupalFieldDataTM,
					drupalRow(7, "en", 100, 1), drupalRow(7, "en", 200, 1), drupalRow(7, "de", 100, 0), drupalRow(7, "de", 200, 0)))
			} else {
				evs = append(evs,
					rowsEv(eb, replication.DELETE_ROWS_EVENTv1, drupalFieldDataTM, drupalRow(7, "de", 100, 0), drupalRow(7, "en", 100, 1)),
					rowsEv(eb, replication.WRITE_ROWS_EVENTv1, drupalFieldDataTM, drupalRow(7, "en", 100, 1)),
					rowsEv(eb, replication.WRITE_ROWS_EVENTv1, drupalFieldDataTM, drupalRow(7, "de", 100, 0)))
			}
			evs = append(evs, eb.add(replication.XID_EVENT, 31, &replication.XIDEvent{}))
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			for i := range b.N {
				gtid.GTID.SequenceNumber = uint64(i) + 2
				for _, ev := range evs {
					n, err := a.event(ctx, ev)
					if err != nil {
						b.Fatal(err)
					}
					if n != nil && len(n.UIDs) != 0 {
						b.Fatalf("uids %v", n.UIDs)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "notices/s")
		})
	}
}

// BenchmarkStream measures the whole path on the test MariaDB: the binlog
// dump over TCP, decoding, grouping and comparison, for a batch of logins
// and a batch of saves written beforehand. One op streams the whole
// batch. notices/s is the throughput of a running stream, from its first
// notice to its last; setup-ms is what each op spends before its first
// notice (connecting, registering as a replica, MariaDB finding the
// starting GTID in its binlog), which a running agent pays once per
// connection, not per batch.
func BenchmarkStream(b *testing.B) {
	const batch = 5000
	for _, kind := range []string{"logins", "saves"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			f := newFixture(b, "", mappedColumns, func(c *Config) { c.Logger = nil })
			uid, err := f.site.Create(ctx, drupaltest.User{Name: "bench", Mail: drupaltest.Str("bench@example.org"),
				Status: 1, Translations: []string{"de"}})
			if err != nil {
				b.Fatal(err)
			}
			start := f.pos(b)
			for i := range batch {
				if kind == "logins" {
					err = f.site.Login(ctx, uid, int64(1_700_000_000+i))
				} else {
					err = f.site.Update(ctx, uid, func(u *drupaltest.User) { u.Pass = fmt.Sprintf("$2y$10$%d", i) })
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			end := f.pos(b)
			b.ReportAllocs()
			b.ResetTimer()
			var setup, running time.Duration
			for range b.N {
				count := 0
				began := time.Now()
				var first time.Time
				err := f.s.Stream(ctx, start, func(_ context.Context, n Notice) error {
					count++
					if count == 1 {
						first = time.Now()
					}
					if len(n.UIDs) != 0 {
						return fmt.Errorf("uids %v", n.UIDs)
					}
					if n.Pos.File == end.File && n.Pos.Offset == end.Offset {
						return errStop
					}
					return nil
				})
				if !errors.Is(err, errStop) || count != batch {
					b.Fatalf("Stream: %v after %d notices", err, count)
				}
				setup += first.Sub(began)
				running += time.Since(first)
			}
			b.ReportMetric(float64(b.N*(batch-1))/running.Seconds(), "notices/s")
			b.ReportMetric(float64(setup.Milliseconds())/float64(b.N), "setup-ms/op")
		})
	}
}
