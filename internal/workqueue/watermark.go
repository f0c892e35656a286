package workqueue

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sequence numbers the batches and requests of all layers, so that an
// item, which carries the newest number of the adds merged into it, tells
// which of them the work it starts covers.
type Sequence struct{ n atomic.Uint64 }

// Next returns a new number, greater than every number before.
func (s *Sequence) Next() uint64 { return s.n.Add(1) }

// Now returns the newest number handed out: an item carrying it covers
// every batch and request so far.
func (s *Sequence) Now() uint64 { return s.n.Load() }

// Watermark turns completed batches into a safe position. A batch (a
// committed binlog transaction) names keys and carries the position after
// it; it is complete once every key it named has been handled by work
// handed out after the batch arrived (an item whose sequence number is at
// least the batch's). The safe position is that of the newest batch such
// that it and every older one are complete: restarting from it loses
// nothing. The zero value is not usable; make one with NewWatermark.
type Watermark[K comparable, P any] struct {
	seq *Sequence

	mu      sync.Mutex
	pending waiting[K, P] // key → incomplete batches naming it, oldest first
	line    []*batch[P]   // batches not yet passed by the safe position, oldest first
	open    int           // incomplete batches
	safe    P
	safeAt  int64 // unix nanoseconds (see nanos)
	hasSafe bool
}

// batch is one unit of arrival with a position. A binlog backlog holds
// one per transaction, so it is kept small: its time is unix nanoseconds.
type batch[P any] struct {
	seq       uint64
	remaining int
	pos       P
	at        int64
}

// nanos and fromNanos convert a batch's time, the zero time to 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// NewWatermark returns a Watermark numbering its batches from seq.
func NewWatermark[K comparable, P any](seq *Sequence) *Watermark[K, P] {
	return &Watermark[K, P]{seq: seq, pending: waiting[K, P]{first: map[K]*batch[P]{}, more: map[K][]*batch[P]{}}}
}

// Add records a batch naming keys (duplicates count once), with the
// position after it and its commit time, and returns its sequence number:
// the items queued for its keys must carry it. Add the batch before
// queueing its keys, or work done in between would not count for it.
func (w *Watermark[K, P]) Add(keys []K, pos P, at time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &batch[P]{seq: w.seq.Next(), pos: pos, at: nanos(at)}
	for _, k := range keys {
		if w.pending.add(k, b) {
			b.remaining++
		}
	}
	if b.remaining > 0 {
		w.open++
	}
	// A complete batch behind another complete one only moves the
	// position on: merge them, so a long stall of one key does not pile
	// up a record per transaction.
	if n := len(w.line); n > 0 && b.remaining == 0 && w.line[n-1].remaining == 0 {
		w.line[n-1].pos, w.line[n-1].at = pos, nanos(at)
	} else {
		w.line = append(w.line, b)
	}
	w.advance()
	return b.seq
}

// Done records that k's work handed out with sequence number upTo is
// complete: no batch up to upTo waits for k any more. It returns how many
// batches that completed.
func (w *Watermark[K, P]) Done(k K, upTo uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	completed := 0
	w.pending.done(k, upTo, func(b *batch[P]) {
		b.remaining--
		if b.remaining == 0 {
			w.open--
			completed++
		}
	})
	w.advance()
	return completed
}

// advance moves the safe position past every complete batch at the head
// of the line.
func (w *Watermark[K, P]) advance() {
	for len(w.line) > 0 && w.line[0].remaining == 0 {
		b := w.line[0]
		w.safe, w.safeAt, w.hasSafe = b.pos, b.at, true
		w.line[0] = nil
		w.line = w.line[1:]
	}
}

// Safe returns the position up to which every batch is complete, and the
// commit time of the batch that ends there; ok is false when none is.
func (w *Watermark[K, P]) Safe() (pos P, at time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.safe, fromNanos(w.safeAt), w.hasSafe
}

// Position returns the position of the incomplete batch numbered seq;
// ok is false when no such batch waits (it is complete, forgotten, or
// seq numbers a request).
func (w *Watermark[K, P]) Position(seq uint64) (pos P, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, found := slices.BinarySearchFunc(w.line, seq, func(b *batch[P], seq uint64) int { return cmp.Compare(b.seq, seq) })
	if !found || w.line[i].remaining == 0 {
		return pos, false
	}
	return w.line[i].pos, true
}

// Oldest returns the commit time of the oldest batch not yet passed.
func (w *Watermark[K, P]) Oldest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) == 0 {
		return time.Time{}, false
	}
	return fromNanos(w.line[0].at), true
}

// Open returns the number of incomplete batches.
func (w *Watermark[K, P]) Open() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open
}

// Waits reports whether some batch waits for k.
func (w *Watermark[K, P]) Waits(k K) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending.first[k] != nil
}

// Forget drops the positions of the batches recorded so far: a full
// resynchronisation covered them, and the position saved after it is
// newer. Their keys still count as pending (their work still runs); only
// the safe position no longer waits for them, so it never moves back. It
// returns how many incomplete batches it dropped.
func (w *Watermark[K, P]) Forget() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	dropped := w.open
	clear(w.pending.first)
	clear(w.pending.more)
	w.line = nil
	w.open = 0
	var zero P
	w.safe, w.safeAt, w.hasSafe = zero, 0, false
	return dropped
}

// waiting maps each key to the incomplete batches naming it, oldest
// first: the oldest alone in first (most keys of a backlog wait for one
// transaction: a pointer, not a slice, each), the others in more.
type waiting[K comparable, P any] struct {
	first map[K]*batch[P]
	more  map[K][]*batch[P]
}

// add records that b names k; false when it already did (a key named
// twice in one batch).
func (w waiting[K, P]) add(k K, b *batch[P]) bool {
	first := w.first[k]
	switch more := w.more[k]; {
	case first == nil:
		w.first[k] = b
	case first == b || len(more) > 0 && more[len(more)-1] == b:
		return false
	default:
		w.more[k] = append(more, b)
	}
	return true
}

// done drops the batches naming k up to upTo, calling fn for each.
func (w waiting[K, P]) done(k K, upTo uint64, fn func(*batch[P])) {
	first := w.first[k]
	if first == nil {
		return
	}
	more := w.more[k]
	if len(more) == 0 {
		if first.seq <= upTo {
			fn(first)
			delete(w.first, k)
		}
		return
	}
	all := append([]*batch[P]{first}, more...)
	keep := all[:0]
	for _, b := range all {
		if b.seq > upTo {
			keep = append(keep, b)
			continue
		}
		fn(b)
	}
	switch {
	case len(keep) == 0:
		delete(w.first, k)
		delete(w.more, k)
	case len(keep) == 1:
		w.first[k] = keep[0]
		delete(w.more, k)
	default:
		w.first[k] = keep[0]
		w.more[k] = append([]*batch[P](nil), keep[1:]...)
	}
}
