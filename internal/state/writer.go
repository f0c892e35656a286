package state

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tuning of the write-behind: a commit of later writes alone waits for
// laterBatch of them or for laterDelay, whichever comes first; a writer
// waits once maxStaged are staged. A durable write (or Flush) commits at
// once, with everything staged before it.
const (
	laterBatch = 512
	laterDelay = 200 * time.Millisecond
	maxStaged  = 8192
)

// errClosed is returned by writes after Close.
var errClosed = errors.New("state file closed")

// writer groups the store's writes into transactions: one goroutine
// commits everything staged so far in one bbolt transaction (one fsync),
// so writers that wait at the same moment share a commit, and later
// writes ride along with the next one. Writes are applied in the order
// they were staged; a read sees the newest staged value of its key.
type writer struct {
	db *bolt.DB
	// batch (laterBatch), delay (laterDelay) and beforeEach (tests: runs
	// before each commit; an error fails it) are read under mu.
	batch      int
	delay      time.Duration
	beforeEach func() error

	mu         sync.Mutex
	cond       *sync.Cond         // broadcast when a commit ends, and on close
	staged     map[uint32]pending // account writes no commit has taken yet, the newest per uid
	stagedMeta map[string][]byte  // meta writes not yet taken (nil: delete)
	flight     map[uint32]pending // account writes of the commit running now
	flightMeta map[string][]byte  // its meta writes
	oldest     time.Time          // when the oldest staged write arrived
	seq        uint64             // writes staged so far: the number of the newest
	durable    uint64             // every write up to this one is committed
	waiting    int                // writers waiting for a commit
	attempt    uint64             // commits begun
	finished   uint64             // the number of the last commit that ended,
	tried      uint64             // the newest write it covered,
	err        error              // and its error (nil when it succeeded)
	commits    uint64             // commits that changed the file
	ids        map[string]uint32  // SCIM id → uid, nil until built (Store.UIDBySCIMID)
	closed     bool               // no more writes: the committer commits what is staged and returns
	exited     bool               // the committer has returned
	kick       chan struct{}      // wakes the committer
	done       chan struct{}      // closed when the committer has returned
}

// pending is a staged account write: the record (and its encoding), or
// its deletion.
type pending struct {
	acct    Account
	raw     []byte
	deleted bool
}

func newWriter(db *bolt.DB) *writer {
	w := &writer{db: db, batch: laterBatch, delay: laterDelay, staged: map[uint32]pending{}, stagedMeta: map[string][]byte{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// stage queues account writes (and meta writes) and returns the number
// of the newest; wait for it to make it durable. It waits while too many
// writes are staged.
func (w *writer) stage(accts []pending, meta map[string][]byte) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && len(w.staged) >= maxStaged {
		w.cond.Wait()
	}
	if w.closed {
		return 0, errClosed
	}
	first := len(w.staged) == 0 && len(w.stagedMeta) == 0
	if first {
		w.oldest = time.Now()
	}
	for _, p := range accts {
		w.staged[p.acct.UID] = p
		if w.ids != nil && !p.deleted && p.acct.SCIMID != "" {
			w.ids[p.acct.SCIMID] = p.acct.UID
		}
	}
	maps.Copy(w.stagedMeta, meta)
	w.seq++
	if first || len(w.staged) >= w.batch {
		// A first later write arms the committer's timer.
		w.wake()
	}
	return w.seq, nil
}

// wake makes the committer look at the staged writes.
func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// wait waits until the writes up to n are durable, or a commit that
// began after the wait and covered them failed.
func (w *writer) wait(n uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	from := w.attempt
	w.waiting++
	defer func() { w.waiting-- }()
	w.wake()
	for w.durable < n && !(w.finished > from && w.tried >= n && w.err != nil) && !w.exited {
		w.cond.Wait()
	}
	switch {
	case w.durable >= n:
		return nil
	case w.finished > from && w.tried >= n && w.err != nil:
		return w.err
	}
	return errClosed
}

// flush makes every write staged so far durable.
func (w *writer) flush() error {
	w.mu.Lock()
	n := w.seq
	w.mu.Unlock()
	return w.wait(n)
}

// account returns the newest staged or committing write of uid; found is
// false when there is none (the file has the newest).
func (w *writer) account(uid uint32) (a Account, ok, found bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, found := w.staged[uid]
	if !found {
		p, found = w.flight[uid]
	}
	if !found || p.deleted {
		return Account{}, false, found
	}
	return p.acct.clone(), true, true
}

// meta returns the newest staged or committing write of a meta key.
func (w *writer) meta(key string) (v []byte, found bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, found = w.stagedMeta[key]; !found {
		v, found = w.flightMeta[key]
	}
	return v, found
}

// run is the committer: it commits what is staged while a writer waits,
// once batch writes are staged or the oldest is delay old, and at close.
// After a failed commit the writes wait for the next writer, or delay.
func (w *writer) run() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	w.mu.Lock()
	defer func() {
		w.exited = true
		w.cond.Broadcast()
		w.mu.Unlock()
		close(w.done)
	}()
	for {
		idle := len(w.staged) == 0 && len(w.stagedMeta) == 0
		if idle && w.closed {
			return
		}
		age := time.Since(w.oldest)
		if idle || !w.closed && w.waiting == 0 && len(w.staged) < w.batch && age < w.delay {
			if !idle {
				timer.Reset(w.delay - age)
			}
			w.mu.Unlock()
			select {
			case <-w.kick:
			case <-timer.C:
			}
			w.mu.Lock()
			continue
		}
		accts, meta, upTo, hook := w.staged, w.stagedMeta, w.seq, w.beforeEach
		w.flight, w.flightMeta = accts, meta
		w.staged, w.stagedMeta = map[uint32]pending{}, map[string][]byte{}
		w.attempt++
		attempt := w.attempt
		w.cond.Broadcast() // room for writers waiting on maxStaged
		w.mu.Unlock()

		var err error
		if hook != nil {
			err = hook()
		}
		if err == nil {
			err = w.db.Update(func(tx *bolt.Tx) error { return apply(tx, accts, meta) })
		}

		w.mu.Lock()
		w.flight, w.flightMeta = nil, nil
		w.finished, w.tried, w.err = attempt, upTo, err
		switch {
		case err == nil:
			w.durable = upTo
			w.commits++
		case w.closed:
			// Nobody will try again: the writers of the last commit
			// have its error.
		default:
			// Kept for the next commit, unless a newer write replaced it.
			for uid, p := range accts {
				if _, newer := w.staged[uid]; !newer {
					w.staged[uid] = p
				}
			}
			for k, v := range meta {
				if _, newer := w.stagedMeta[k]; !newer {
					w.stagedMeta[k] = v
				}
			}
			w.oldest = time.Now()
		}
		w.cond.Broadcast()
	}
}

// apply writes staged account and meta writes in one transaction, in uid
// order (bbolt's pages are then touched once each), keeping the indexes
// (parked uids, the count) in step.
func apply(tx *bolt.Tx, accts map[uint32]pending, meta map[string][]byte) error {
	accounts, parked, counts := tx.Bucket(bucketAccounts), tx.Bucket(bucketParked), tx.Bucket(bucketCounts)
	// uids are mostly appended in order: fill pages, do not half-split them.
	accounts.FillPercent = 0.9
	count := int64(binary.BigEndian.Uint64(counts.Get(countAccounts)))
	for _, uid := range slices.Sorted(maps.Keys(accts)) {
		p, key := accts[uid], uidKey(uid)
		if accounts.Get(key) != nil {
			count--
		}
		if p.deleted {
			if err := accounts.Delete(key); err != nil {
				return err
			}
			if err := parked.Delete(key); err != nil {
				return err
			}
			continue
		}
		count++
		var err error
		if p.acct.Parked != nil {
			err = parked.Put(key, nil)
		} else {
			err = parked.Delete(key)
		}
		if err != nil {
			return err
		}
		if err := accounts.Put(key, p.raw); err != nil {
			return err
		}
	}
	if err := counts.Put(countAccounts, binary.BigEndian.AppendUint64(nil, uint64(count))); err != nil {
		return err
	}
	for k, v := range meta {
		var err error
		if v == nil {
			err = tx.Bucket(bucketMeta).Delete([]byte(k))
		} else {
			err = tx.Bucket(bucketMeta).Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// close commits what is staged and stops the committer.
func (w *writer) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	n := w.seq
	w.mu.Unlock()
	w.wake()
	err := w.wait(n)
	<-w.done
	return err
}

// clone returns a copy of a that shares nothing with it.
func (a Account) clone() Account {
	a.Pushed = maps.Clone(a.Pushed)
	if a.Parked != nil {
		p := *a.Parked
		a.Parked = &p
	}
	return a
}
