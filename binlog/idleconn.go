package binlog

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// idleConn is the stream's connection to the server: a read fails only
// after timeout of silence. Each Read may wait timeout for its first byte,
// and the deadline starts again with the next Read, so a link that keeps
// delivering bytes, however slowly (a big transaction on a slow link), is
// alive, while one that delivers nothing, not even a heartbeat, for
// timeout is dead.
//
// go-mysql's own ReadTimeout is off for this connection: it sets one
// deadline for each 16 KiB it reads and for each packet, which a slow link
// can miss while bytes are still arriving, and a reconnect restarts the
// same transaction, for ever. The library's only other read deadline,
// the short one BinlogSyncer.Close sets to unblock its reader, still
// applies: a deadline set through SetReadDeadline or SetDeadline holds
// when it is earlier than the idle one.
type idleConn struct {
	net.Conn
	timeout time.Duration

	mu sync.Mutex // orders the deadline a Read sets with the caller's
	// deadline is the caller's read deadline; zero for none.
	deadline time.Time
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, timeout: timeout}
}

// errIdle is wrapped by the error of a read that timed out for silence.
var errIdle = errors.New("the link is silent")

// idleError is the error of a read that got no byte for timeout. It is a
// net.Error whose Timeout is true, like the deadline error it replaces.
type idleError struct{ timeout time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("no byte from the server for %s (not even a heartbeat): %s", e.timeout, errIdle)
}
func (e *idleError) Unwrap() error   { return errIdle }
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }

// Read reads from the connection, waiting at most timeout (or until the
// caller's earlier deadline) for data.
func (c *idleConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	idle := time.Now().Add(c.timeout)
	d := idle
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		d = c.deadline
	}
	err := c.Conn.SetReadDeadline(d)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if err != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		callers := !c.deadline.IsZero() && !c.deadline.After(time.Now())
		c.mu.Unlock()
		if !callers {
			return 0, &idleError{c.timeout}
		}
	}
	return n, err
}

// SetReadDeadline sets the caller's read deadline; a Read waiting now is
// bound by it at once when it is earlier than the idle deadline.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	d := time.Now().Add(c.timeout)
	if !t.IsZero() && t.Before(d) {
		d = t
	}
	return c.Conn.SetReadDeadline(d)
}

// SetDeadline sets the caller's read and write deadlines.
func (c *idleConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}
