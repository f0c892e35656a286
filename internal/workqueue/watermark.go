package workqueue

import (
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
	pending map[K][]*batch[P] // key → incomplete batches naming it, oldest first
	line    []*batch[P]       // batches not yet passed by the safe position, oldest first
	open    int               // incomplete batches
	safe    P
	safeAt  time.Time
	hasSafe bool
}

// batch is one unit of arrival with a position.
type batch[P any] struct {
	seq       uint64
	remaining int
	pos       P
	at        time.Time
}

// NewWatermark returns a Watermark numbering its batches from seq.
func NewWatermark[K comparable, P any](seq *Sequence) *Watermark[K, P] {
	return &Watermark[K, P]{seq: seq, pending: map[K][]*batch[P]{}}
}

// Add records a batch naming keys (duplicates count once), with the
// position after it and its commit time, and returns its sequence number:
// the items queued for its keys must carry it. Add the batch before
// queueing its keys, or work done in between would not count for it.
func (w *Watermark[K, P]) Add(keys []K, pos P, at time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &batch[P]{seq: w.seq.Next(), pos: pos, at: at}
	for _, k := range keys {
		if p := w.pending[k]; len(p) > 0 && p[len(p)-1] == b {
			continue
		}
		b.remaining++
		w.pending[k] = append(w.pending[k], b)
	}
	if b.remaining > 0 {
		w.open++
	}
	// A complete batch behind another complete one only moves the
	// position on: merge them, so a long stall of one key does not pile
	// up a record per transaction.
	if n := len(w.line); n > 0 && b.remaining == 0 && w.line[n-1].remaining == 0 {
		w.line[n-1].pos, w.line[n-1].at = pos, at
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
	p := w.pending[k]
	completed := 0
	keep := p[:0]
	for _, b := range p {
		if b.seq > upTo {
			keep = append(keep, b)
			continue
		}
		b.remaining--
		if b.remaining == 0 {
			w.open--
			completed++
		}
	}
	if len(keep) == 0 {
		delete(w.pending, k)
	} else {
		w.pending[k] = keep
	}
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
	return w.safe, w.safeAt, w.hasSafe
}

// Oldest returns the commit time of the oldest batch not yet passed.
func (w *Watermark[K, P]) Oldest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) == 0 {
		return time.Time{}, false
	}
	return w.line[0].at, true
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
	return len(w.pending[k]) > 0
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
	clear(w.pending)
	w.line = nil
	w.open = 0
	var zero P
	w.safe, w.safeAt, w.hasSafe = zero, time.Time{}, false
	return dropped
}
