package binlog

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pipeConn returns the two ends of an in-memory connection whose reading
// end is an idleConn.
func pipeConn(t *testing.T, timeout time.Duration) (*idleConn, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	return newIdleConn(client, timeout), server
}

func TestIdleConnLetsASlowLinkThrough(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c, server := pipeConn(t, timeout)
	// One byte every eighth of the timeout, for 3 timeouts: a slow link,
	// never a silent one.
	const n = 24
	go func() {
		tick := time.NewTicker(timeout / 8)
		defer tick.Stop()
		for range n {
			<-tick.C
			if _, err := server.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("a link delivering a byte every %s failed with a %s idle timeout: %v", timeout/8, timeout, err)
	}
}

func TestIdleConnFailsASilentLink(t *testing.T) {
	c, _ := pipeConn(t, 50*time.Millisecond)
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, errIdle) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read on a silent link = %v, want the idle timeout (a net.Error whose Timeout is true)", err)
	}
	// Clearing the caller's deadline does not clear the idle timeout.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, errIdle) {
		t.Fatalf("Read after SetReadDeadline(zero) = %v, want the idle timeout", err)
	}
}

// TestIdleConnHonoursTheCallersDeadline: BinlogSyncer.Close sets a short
// read deadline to unblock its reader; it must still work.
func TestIdleConnHonoursTheCallersDeadline(t *testing.T) {
	c, _ := pipeConn(t, time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	// A deadline set while the Read waits, and one set before a Read.
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errIdle) {
			t.Fatalf("Read = %v, want the caller's deadline exceeded", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the caller's read deadline did not end a waiting Read (the idle timeout is an hour)")
	}
	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the caller's deadline = %v", err)
	}
}
