// Package workqueue is the agent's work queue, in layers after client-go's
// util/workqueue, each type doing one job:
//
//   - Queue hands out keys (a user, a role) to workers: each key is
//     queued at most once however often it is added, and held by one
//     worker at a time; a key added while a worker holds it is handed out
//     again after Done, because that worker may have read too early. What
//     a key's work needs travels with it as an item, merged per key.
//   - Retrier adds a key again after a per-key exponential backoff, so a
//     failed or waiting key holds no worker while it waits.
//   - Watermark turns completed batches (binlog transactions) into the
//     position up to which everything is handled.
//   - Gate bounds the batches read but not complete (back-pressure on the
//     binlog reader).
//   - Answers collects the results of chosen keys for a caller who waits
//     for them (a sync page, a `scim-agent sync` request).
//
// None of them knows what a key means or what a worker does with it.
package workqueue

import "sync"

// Item is what a queued key carries. Merge combines the item of a key
// already waiting with a newer one.
type Item[I any] interface {
	Merge(newer I) I
}

// Queue is a keyed FIFO with a processing set. The zero value is not
// usable; make one with NewQueue.
type Queue[K comparable, I Item[I]] struct {
	mu     sync.Mutex
	cond   *sync.Cond // signalled when a key is queued; broadcast on Close
	order  []K        // queued keys, in arrival order
	dirty  map[K]I    // queued keys, and busy keys to queue again after Done
	busy   map[K]bool // keys held by a worker
	closed bool
}

// NewQueue returns an empty queue.
func NewQueue[K comparable, I Item[I]]() *Queue[K, I] {
	q := &Queue[K, I]{dirty: map[K]I{}, busy: map[K]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues k with it, merged into the item k already waits with. A key
// a worker holds is queued again when the worker calls Done. Add does
// nothing once the queue is closed.
func (q *Queue[K, I]) Add(k K, it I) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if old, waiting := q.dirty[k]; waiting {
		q.dirty[k] = old.Merge(it)
		return
	}
	q.dirty[k] = it
	if !q.busy[k] {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// Get waits for a queued key no worker holds and hands it, with its
// merged item, to the caller, who must call Done(k) when finished. ok is
// false once the queue is closed.
func (q *Queue[K, I]) Get() (k K, it I, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return k, it, false
	}
	k = q.order[0]
	var zero K
	q.order[0] = zero
	q.order = q.order[1:]
	it = q.dirty[k]
	delete(q.dirty, k)
	q.busy[k] = true
	return k, it, true
}

// GetBatch is Get for a caller that reads the data of many keys at once:
// it waits for one queued key, then takes up to max of those queued, in
// order, each held until its Done. ok is false once the queue is closed.
func (q *Queue[K, I]) GetBatch(max int) (keys []K, items []I, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, nil, false
	}
	n := min(max, len(q.order))
	keys, items = make([]K, n), make([]I, n)
	var zero K
	for i := range n {
		k := q.order[i]
		q.order[i] = zero
		keys[i], items[i] = k, q.dirty[k]
		delete(q.dirty, k)
		q.busy[k] = true
	}
	q.order = q.order[n:]
	return keys, items, true
}

// Done releases k. When k was added while held, it is queued again.
func (q *Queue[K, I]) Done(k K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.busy, k)
	if _, again := q.dirty[k]; again && !q.closed {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// Len returns the number of keys waiting for a worker.
func (q *Queue[K, I]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// Idle reports whether no key is queued or held.
func (q *Queue[K, I]) Idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order) == 0 && len(q.busy) == 0
}

// Closed reports whether Close was called.
func (q *Queue[K, I]) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Close wakes every waiting Get; Get returns ok false from now on, and
// Add does nothing.
func (q *Queue[K, I]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
