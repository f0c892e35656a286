package agent

import (
	"sync"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
)

// workset is the agent's keyed work queue and position tracker in one.
//
// Work arrives in batches: a committed binlog transaction (with the
// position after it) or a page of a full sync (without). Each uid is queued
// at most once however many batches name it, and handed to one worker at a
// time; a uid named again while a worker holds it is queued again when the
// worker is done, because that worker may have read the rows too early.
//
// A batch is complete once every uid it named has been reconciled by a
// worker that took the uid after the batch arrived. The safe position is
// that of the newest binlog batch such that it and every older binlog
// batch are complete: restarting from it loses nothing.
type workset struct {
	mu sync.Mutex
	// queued is signalled when a uid is queued, room when a batch
	// completes; both are broadcast on close. Two conditions, because the
	// waiters differ: a Signal meant for an idle worker must never be
	// taken by a reader waiting for room.
	queued *sync.Cond
	room   *sync.Cond
	closed bool

	seq     uint64
	queue   []uint32            // uids waiting for a worker, in arrival order
	waiting map[uint32]*waiting // uid → why it is queued (or re-queued once its worker is done)
	busy    map[uint32]bool     // uids held by a worker
	pending map[uint32][]*batch // uid → incomplete batches that named it, oldest first

	positioned []*batch // incomplete-or-unsafe binlog batches, oldest first
	safe       binlog.Position
	safeTime   time.Time
	hasSafe    bool

	open    int // incomplete batches
	maxOpen int // Add blocks while open >= maxOpen
	paused  int // Adds waiting for room

	retries map[uint32]*retry // uids to queue again later (see Retry)
}

// retry is a uid waiting to be queued again.
type retry struct {
	n     int // retries so far, for the backoff
	timer *time.Timer
}

// waiting records the newest batch that queued a uid.
type waiting struct {
	seq   uint64
	cause string // the position that caused the work, for logs
}

// batch is one unit of arrival.
type batch struct {
	seq       uint64
	remaining int
	pos       *binlog.Position
	time      time.Time
	done      chan struct{}
	// results, when not nil, collects the result of each uid (for
	// requests that wait for their answers, such as POST /sync).
	results map[uint32]Result
}

func newWorkset(maxOpen int) *workset {
	w := &workset{
		waiting: map[uint32]*waiting{},
		busy:    map[uint32]bool{},
		pending: map[uint32][]*batch{},
		retries: map[uint32]*retry{},
		maxOpen: maxOpen,
	}
	w.queued = sync.NewCond(&w.mu)
	w.room = sync.NewCond(&w.mu)
	return w
}

// Add queues the uids of one batch and returns a channel closed when the
// batch is complete. pos is the binlog position after the batch, or nil.
// cause names the batch in logs. Add blocks while too many batches are
// incomplete (back-pressure on the binlog reader); it returns nil once
// the workset is closed.
func (w *workset) Add(uids []uint32, pos *binlog.Position, at time.Time, cause string) <-chan struct{} {
	b := w.add(uids, pos, at, cause, false)
	if b == nil {
		return nil
	}
	return b.done
}

// AddCollect queues uids like Add and collects each uid's Result in the
// returned batch, complete once its done channel is closed. A uid held by
// the deletion guard counts as done here, with its Held result.
func (w *workset) AddCollect(uids []uint32, cause string) *batch {
	return w.add(uids, nil, time.Now(), cause, true)
}

func (w *workset) add(uids []uint32, pos *binlog.Position, at time.Time, cause string, collect bool) *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && w.maxOpen > 0 && w.open >= w.maxOpen && !collect {
		w.paused++
		w.room.Wait()
		w.paused--
	}
	if w.closed {
		return nil
	}
	w.seq++
	b := &batch{seq: w.seq, pos: pos, time: at, done: make(chan struct{})}
	if collect {
		b.results = make(map[uint32]Result, len(uids))
	}
	for _, uid := range uids {
		if p := w.pending[uid]; len(p) > 0 && p[len(p)-1] == b {
			continue // named twice in one batch
		}
		b.remaining++
		w.pending[uid] = append(w.pending[uid], b)
		if _, queued := w.waiting[uid]; !queued && !w.busy[uid] {
			w.queue = append(w.queue, uid)
			w.queued.Signal()
		}
		w.waiting[uid] = &waiting{seq: b.seq, cause: cause}
	}
	if b.remaining > 0 {
		w.open++
	}
	if pos != nil {
		// A complete batch behind another complete one only moves the
		// position on: merge them so a long stall of one uid does not pile
		// up a record per transaction.
		if n := len(w.positioned); n > 0 && b.remaining == 0 && w.positioned[n-1].remaining == 0 {
			last := w.positioned[n-1]
			last.pos, last.time = pos, at
			close(b.done)
			w.advance()
			return b
		}
		w.positioned = append(w.positioned, b)
	}
	if b.remaining == 0 {
		close(b.done)
		w.advance()
	}
	return b
}

// Get waits for a queued uid that no worker holds and hands it to the
// caller, who must call Done with the returned ticket. ok is false once the
// workset is closed.
func (w *workset) Get() (uid uint32, t ticket, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && !w.closed {
		w.queued.Wait()
	}
	if w.closed {
		return 0, ticket{}, false
	}
	uid = w.queue[0]
	w.queue = w.queue[1:]
	wt := w.waiting[uid]
	delete(w.waiting, uid)
	w.busy[uid] = true
	return uid, ticket{seq: wt.seq, cause: wt.cause}, true
}

// ticket says which batches a worker's reconcile of a uid covers.
type ticket struct {
	seq   uint64
	cause string
}

// Done releases uid. With handled true, every batch that named uid up to
// the ticket counts it as reconciled. With handled false (the reconcile
// was interrupted, or is held back by the deletion guard) binlog batches
// keep waiting, and so does the position, until Requeue hands the uid out
// again. A uid held by the guard counts as done for batches without a
// position (a sync page, a drift repair, a request): the guard keeps it,
// and a sync must not wait for an approval while streaming waits for the
// sync. A uid named again while it was held is queued again either way.
func (w *workset) Done(uid uint32, t ticket, handled bool, res Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.busy, uid)
	// Held by the guard, or waiting for another uid: done for whoever
	// only wants the answer, not for the position.
	held := res.Outcome == Held || res.Outcome == Waiting
	if handled {
		if r := w.retries[uid]; r != nil {
			r.timer.Stop()
			delete(w.retries, uid)
		}
	}
	p := w.pending[uid]
	keep := p[:0]
	for _, b := range p {
		// Unhandled, a uid still counts for a batch that only wants its
		// answer; binlog batches keep waiting (and so does the position).
		if b.seq > t.seq || !handled && b.results == nil && (b.pos != nil || !held) {
			keep = append(keep, b)
			continue
		}
		if b.results != nil {
			b.results[uid] = res
		}
		b.remaining--
		if b.remaining == 0 {
			w.open--
			close(b.done)
			w.room.Broadcast()
		}
	}
	if len(keep) == 0 {
		delete(w.pending, uid)
	} else {
		w.pending[uid] = keep
	}
	w.advance()
	if _, queued := w.waiting[uid]; queued {
		w.queue = append(w.queue, uid)
		w.queued.Signal()
	}
}

// Fail answers the batches that only want uid's result (requests such
// as POST /sync) with res, a failed attempt, while the worker keeps
// retrying for the binlog batches: an operator's request gets its answer
// instead of waiting out an outage of unknown length.
func (w *workset) Fail(uid uint32, res Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[uid]
	keep := p[:0]
	for _, b := range p {
		// A request that came after the attempt began gets the same
		// answer: the next attempt would most likely fail alike.
		if b.results == nil {
			keep = append(keep, b)
			continue
		}
		b.results[uid] = res
		b.remaining--
		if b.remaining == 0 {
			w.open--
			close(b.done)
			w.room.Broadcast()
		}
	}
	if len(keep) == 0 {
		delete(w.pending, uid)
	} else {
		w.pending[uid] = keep
	}
}

// Requeue queues uid again, covering every batch that has named it so far.
func (w *workset) Requeue(uid uint32, cause string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	_, queued := w.waiting[uid]
	w.waiting[uid] = &waiting{seq: w.seq, cause: cause}
	if !queued && !w.busy[uid] {
		w.queue = append(w.queue, uid)
		w.queued.Signal()
	}
}

// Retry queues uid again after a backoff that grows with each retry of
// the uid (500ms doubling to a minute), covering every batch that has
// named it by then: for a reconcile that waits for something else to
// happen first, without holding a worker meanwhile. A handled Done of the
// uid resets the backoff.
func (w *workset) Retry(uid uint32, cause string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	r := w.retries[uid]
	if r == nil {
		r = &retry{}
		w.retries[uid] = r
	} else {
		r.timer.Stop()
	}
	r.n++
	r.timer = time.AfterFunc(retryDelay(r.n), func() { w.Requeue(uid, cause) })
}

// Resync forgets the positions of the binlog batches read so far: a
// full sync covered them, and the position saved after it is newer than
// theirs. Their uids are still reconciled; only the safe position no
// longer waits for them, so it never moves back behind the sync's.
func (w *workset) Resync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.positioned {
		b.pos = nil
	}
	w.positioned = nil
	w.hasSafe = false
}

// advance moves the safe position past every complete binlog batch at the
// head of the line.
func (w *workset) advance() {
	for len(w.positioned) > 0 && w.positioned[0].remaining == 0 {
		b := w.positioned[0]
		w.safe, w.safeTime, w.hasSafe = *b.pos, b.time, true
		w.positioned[0] = nil
		w.positioned = w.positioned[1:]
	}
}

// Safe returns the position up to which every change has been handled,
// and the commit time of the transaction that ends there.
func (w *workset) Safe() (binlog.Position, time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.safe, w.safeTime, w.hasSafe
}

// Oldest returns the commit time of the oldest binlog batch not yet
// complete.
func (w *workset) Oldest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.positioned) == 0 {
		return time.Time{}, false
	}
	return w.positioned[0].time, true
}

// Depth returns the number of uids waiting for a worker.
func (w *workset) Depth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// PausedAdders returns the number of Add calls waiting for room: the
// binlog reader is paused by back-pressure while it is not 0.
func (w *workset) PausedAdders() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paused
}

// Idle reports whether no uid is queued, held or pending.
func (w *workset) Idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) == 0 && len(w.busy) == 0 && len(w.pending) == 0
}

// Close wakes every waiting Get and Add; they return at once from now on.
func (w *workset) Close() {
	w.mu.Lock()
	w.closed = true
	for uid, r := range w.retries {
		r.timer.Stop()
		delete(w.retries, uid)
	}
	w.mu.Unlock()
	w.queued.Broadcast()
	w.room.Broadcast()
}
