package testdb

import (
	"context"
	"sync"
	"testing"
	"time"
)

// shared is the one Server of a test binary, started on first use.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// RunMain runs the tests of a package and stops the package's shared
// server afterwards. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.RunMain(m)) }
func RunMain(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}

// Shared returns the package's shared Server, starting it on first use. A
// test fails (it does not skip) when the server cannot be started, naming
// the reason, e.g. that mariadbd is not installed.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.srv, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		t.Fatalf("start the test MariaDB: %v", shared.err)
	}
	return shared.srv
}

// NewTestDatabase creates a fresh Drupal database on the shared Server and
// closes its pool when the test ends.
func NewTestDatabase(t testing.TB, prefix string) *Database {
	t.Helper()
	db, err := Shared(t).NewDatabase(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// StartPrivate starts a Server of the test's own, with opts, and stops it
// when the test ends. Use it for servers configured unlike the shared one
// (binlog off, binlog_format MIXED).
func StartPrivate(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start a private test MariaDB: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}
