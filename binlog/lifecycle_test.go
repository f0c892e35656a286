package binlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
	"golang.org/x/time/rate"
)

// serverPos reads the current position over root, as CurrentPosition
// does.
func serverPos(t testing.TB, root *sql.DB) Position {
	t.Helper()
	var p Position
	if err := root.QueryRow("SELECT @@gtid_binlog_pos").Scan(&p.GTID); err != nil {
		t.Fatal(err)
	}
	var doDB, ignoreDB sql.NullString
	if err := root.QueryRow("SHOW MASTER STATUS").Scan(&p.File, &p.Offset, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCancelReturnsPromptly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	// Warm both pools up so that their connections predate the count.
	if _, err := f.site.Create(ctx, drupaltest.User{Name: "warm"}); err != nil {
		t.Fatal(err)
	}
	start := f.pos(t)
	before := runtime.NumGoroutine()

	r := f.stream(t, start, nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "cancel"})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), uid)
	if !f.s.Status().Connected {
		t.Error("Status().Connected is false while streaming")
	}

	began := time.Now()
	err = r.stop(t)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Stream took %s to return after cancel", took)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stream returned %v, want context.Canceled", err)
	}
	if f.s.Status().Connected {
		t.Error("Status().Connected is true after Stream returned")
	}
	agenttest.Poll(5*time.Second, func() bool {
		if runtime.NumGoroutine() <= before {
			return true
		}
		runtime.Gosched()
		return false
	})
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Stream returned, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestCloseStopsStream(t *testing.T) {
	f := newFixture(t, "", mappedColumns, nil)
	r := f.stream(t, f.pos(t), nil)
	r.expect(t, f.exec(t, "INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'x')"))
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("Stream returned %v after Close, want context.Canceled", err)
	}
	noop := func(context.Context, Notice) error { return nil }
	if err := f.s.Stream(context.Background(), Position{File: "x", Offset: 4}, noop); err == nil {
		t.Error("Stream on a closed Streamer did not fail")
	}
}

func TestStreamRejectsBadStarts(t *testing.T) {
	f := newFixture(t, "", mappedColumns, nil)
	noop := func(context.Context, Notice) error { return nil }
	for _, from := range []Position{{}, {Offset: 4}, {GTID: "not a gtid"}} {
		if err := f.s.Stream(context.Background(), from, noop); err == nil {
			t.Errorf("Stream from %+v did not fail", from)
		}
	}
	if err := f.s.Stream(context.Background(), f.pos(t), nil); err == nil {
		t.Error("Stream without a handle function did not fail")
	}
	// Only one Stream at a time.
	r := f.stream(t, f.pos(t), nil)
	r.expect(t, f.exec(t, "INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'y')"))
	if err := f.s.Stream(context.Background(), f.pos(t), noop); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("a second concurrent Stream returned %v", err)
	}
}

func TestStatusHeartbeats(t *testing.T) {
	f := newFixture(t, "", mappedColumns, func(c *Config) { c.Heartbeat = 100 * time.Millisecond })
	if st := f.s.Status(); st.Connected || !st.LastEvent.IsZero() || !st.LastHeartbeat.IsZero() {
		t.Errorf("Status before streaming = %+v", st)
	}
	began := time.Now()
	r := f.stream(t, f.pos(t), nil)
	r.expect(t, f.exec(t, "INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'z')"))
	if st := f.s.Status(); !st.Connected || st.LastEvent.Before(began) {
		t.Errorf("Status after a transaction = %+v", st)
	}
	// An idle stream still hears from the server.
	agenttest.Eventually(t, "a heartbeat", func() bool { return f.s.Status().LastHeartbeat.After(began) })
}

// proxy forwards TCP connections to a server and can silence the ones open
// at a given moment without closing them, as a dead network link does, or
// throttle what the server sends, as a slow link does.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []*silencer
	// limit, when set, bounds the bytes per second forwarded from the
	// server to the client, in chunks of at most its burst.
	limit atomic.Pointer[rate.Limiter]
}

// throttle limits what every connection forwards from the server to
// bytesPerSecond, in chunks of chunk bytes: bytes keep flowing, slowly.
func (p *proxy) throttle(bytesPerSecond, chunk int) {
	p.limit.Store(rate.NewLimiter(rate.Limit(bytesPerSecond), chunk))
}

// forward writes b to dst, throttled when toClient and a limit is set.
func (p *proxy) forward(ctx context.Context, dst net.Conn, b []byte, toClient bool) error {
	lim := p.limit.Load()
	for len(b) > 0 {
		n := len(b)
		if toClient && lim != nil {
			n = min(n, lim.Burst())
			if err := lim.WaitN(ctx, n); err != nil {
				return err
			}
		}
		if _, err := dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

type silencer struct{ silent atomic.Bool }

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			sil := &silencer{}
			p.mu.Lock()
			p.conns = append(p.conns, sil)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn, toClient bool) {
				defer wg.Done()
				defer dst.Close()
				defer src.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !sil.silent.Load() {
						if werr := p.forward(ctx, dst, buf[:n], toClient); werr != nil {
							return
						}
					}
					if err != nil {
						if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
							t.Logf("proxy: %v", err)
						}
						return
					}
				}
			}
			wg.Add(2)
			go pipe(s, c, false)
			go pipe(c, s, true)
		}
	}()
	return p
}

// silence makes every connection open now drop what it carries.
func (p *proxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.silent.Store(true)
	}
}

// newProxiedFixture returns a fixture whose streamer reaches the shared
// server through a proxy, with heartbeat.
func newProxiedFixture(t *testing.T, heartbeat time.Duration) (*fixture, *proxy, *testdb.Database) {
	t.Helper()
	db := testdb.NewTestDatabase(t, "")
	p := newProxy(t, testdb.Shared(t).Addr)
	f := newFixtureOn(t, db, mappedColumns, func(c *Config) {
		dsn, err := mysqldrv.ParseDSN(c.DSN)
		if err != nil {
			t.Fatal(err)
		}
		dsn.Addr = p.l.Addr().String()
		c.DSN = dsn.FormatDSN()
		c.Heartbeat = heartbeat
	})
	return f, p, db
}

func TestSilentLinkIsReconnected(t *testing.T) {
	ctx := context.Background()
	f, p, db := newProxiedFixture(t, 200*time.Millisecond)
	// Positions are read directly: the streamer's own pool goes through
	// the proxy too.
	pos := func() Position { return serverPos(t, testdb.Shared(t).Root()) }
	r := f.stream(t, pos(), nil)
	u1, err := f.site.Create(ctx, drupaltest.User{Name: "before"})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, pos(), u1)

	// The link goes silent: no event, no heartbeat, no error. The read
	// timeout (3 heartbeats) must notice and reconnect.
	p.silence()
	u2, err := f.site.Create(ctx, drupaltest.User{Name: "during"})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, pos(), u2)
	if _, err := db.DB.Exec("INSERT INTO users_data (uid, module, name) VALUES (1, 'm', 'marker')"); err != nil {
		t.Fatal(err)
	}
	r.expect(t, pos())
	if f.logs.FilterMessage(MsgReconnect).Len() == 0 {
		t.Errorf("no %q log after the link went silent", MsgReconnect)
	}
}

// TestLargeTransactionOnASlowLinkArrives: a link that keeps delivering
// bytes is alive, however long a big transaction takes to come through.
// Only silence may count as a dead link: a read timeout for the whole of
// each read made the stream reconnect, restart the same transaction and
// time out again, for ever.
func TestLargeTransactionOnASlowLinkArrives(t *testing.T) {
	const heartbeat = 100 * time.Millisecond
	f, p, db := newProxiedFixture(t, heartbeat)
	pos := func() Position { return serverPos(t, testdb.Shared(t).Root()) }
	start := pos()
	// One statement writing about 70 KiB of rows of a watched table (a
	// migration), logged as rows events of up to 8 KiB each and an
	// annotate event holding the statement, as big again.
	var values []string
	role := strings.Repeat("r", 200)
	for i := range 300 {
		values = append(values, fmt.Sprintf("('user', 0, 42, 42, 'en', %d, '%s')", i, role))
	}
	if _, err := db.DB.Exec("INSERT INTO user__roles (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES " +
		strings.Join(values, ", ")); err != nil {
		t.Fatal(err)
	}
	end := pos()
	// 16 KiB/s in 512-byte chunks: bytes arrive every 31 ms, far within
	// 3 heartbeats, but a single 8 KiB rows event takes half a second, and
	// the transaction several seconds.
	p.throttle(16<<10, 512)
	r := f.stream(t, start, nil)
	deadline := time.After(3 * waitFor)
	for {
		select {
		case n := <-r.notices:
			if n.Pos.File == end.File && n.Pos.Offset == end.Offset {
				checkNotice(t, n, end, 42)
				return
			}
		case <-r.done:
			t.Fatalf("Stream returned: %v", r.err)
		case <-deadline:
			t.Fatalf("the transaction never arrived over the slow link (%d reconnects)", f.logs.FilterMessage(MsgReconnect).Len())
		}
	}
}
