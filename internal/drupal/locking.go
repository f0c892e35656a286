package drupal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrWriteInFlight is returned by a read of a Reader with a lock
// patience (WithLockPatience) when a Drupal write still held the rows it
// needs once that patience ran out (an XA transaction prepared and not
// yet committed, say).
var ErrWriteInFlight = errors.New("a write in flight still holds the rows")

// Locking reads and why they never wait.
//
// A change can reach the binlog a moment before InnoDB makes it visible
// (the engine commits after the binlog write; an XA transaction is
// written at its PREPARE, long before its COMMIT). So the reads that
// follow a notice, and the listings of a full sync, are locking reads:
// they see the change once the rows' locks are free.
//
// Such a read must never wait for one row lock while it holds others: a
// Drupal write can then wait for a row the read already holds while the
// read waits for one the write holds, and InnoDB breaks that cycle by
// rolling one of them back, as likely Drupal's save as the agent's read
// (it picks the smaller transaction; seen as "Error 1213: Deadlock
// found" on Drupal's INSERT into users_field_data while the agent read a
// batch). So every locking read is NOWAIT: a lock a write holds fails the
// statement at once, which frees what it had locked, and the read is
// tried again after a short pause, doubling up to maxConflictPause,
// until the write has committed. The agent never waits inside InnoDB;
// a Drupal write waits at most for one of its statements to end.
//
// MySQL 5.7 has no NOWAIT: there the reads wait in InnoDB as before.

// Pauses between the tries of a locking read that found a write in
// flight: a Drupal save holds its locks for milliseconds.
const (
	firstConflictPause = 250 * time.Microsecond
	maxConflictPause   = 50 * time.Millisecond
)

// Error numbers of a lock a NOWAIT read could not take.
const (
	erLockWaitTimeout = 1205 // MariaDB's NOWAIT, and any lock wait timeout
	erLockDeadlock    = 1213
	erLockNoWait      = 3572 // MySQL 8's NOWAIT
)

func isLockConflict(err error) bool {
	return isMySQLError(err, erLockWaitTimeout) || isMySQLError(err, erLockDeadlock) || isMySQLError(err, erLockNoWait)
}

// serverClause is the clause that makes a SELECT a shared NOWAIT read on
// the reader's server, learnt at the first locking read and shared by
// the reader's copies.
type serverClause struct {
	mu     sync.Mutex
	clause atomic.Pointer[string]
}

// get returns the clause for the server of db: LOCK IN SHARE MODE
// NOWAIT on MariaDB, FOR SHARE NOWAIT on MySQL 8, a plain LOCK IN SHARE
// MODE on MySQL 5.7. It asks the server's version once (again only
// after a failure).
func (c *serverClause) get(ctx context.Context, db *sql.DB) (string, error) {
	if s := c.clause.Load(); s != nil {
		return *s, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.clause.Load(); s != nil {
		return *s, nil
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("read the server's version: %w", err)
	}
	s := shareClause(version)
	c.clause.Store(&s)
	return s, nil
}

// shareClause is the shared NOWAIT locking clause for a server that
// reports version.
func shareClause(version string) string {
	var major int
	fmt.Sscanf(version, "%d.", &major)
	switch {
	case strings.Contains(version, "MariaDB"):
		return " LOCK IN SHARE MODE NOWAIT"
	case major >= 8:
		return " FOR SHARE NOWAIT"
	default:
		return " LOCK IN SHARE MODE"
	}
}

// Conflicts counts the locking reads that found a write in flight and
// were tried again.
func (r *Reader) Conflicts() uint64 { return r.conflicts.Load() }

// WithLockPatience returns a reader of the same tables and sources whose
// locking reads give up with ErrWriteInFlight once a write has held
// their rows for d. It counts its conflicts apart from r's.
func (r *Reader) WithLockPatience(d time.Duration) *Reader {
	c := *r
	c.patience = d
	c.conflicts = new(atomic.Uint64)
	return &c
}

// locked runs read, a locking read built with the server's shared
// NOWAIT clause, until no write in flight holds its rows: see above.
func (r *Reader) locked(ctx context.Context, read func(share string) error) error {
	share, err := r.share.get(ctx, r.db)
	if err != nil {
		return err
	}
	var giveUp time.Time
	if r.patience > 0 {
		giveUp = time.Now().Add(r.patience)
	}
	pause := firstConflictPause
	for {
		err := read(share)
		if !isLockConflict(err) {
			return err
		}
		r.conflicts.Add(1)
		if !giveUp.IsZero() && time.Now().After(giveUp) {
			return fmt.Errorf("%w after %s", ErrWriteInFlight, r.patience)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, maxConflictPause)
	}
}
