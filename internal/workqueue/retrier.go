package workqueue

import (
	"sync"
	"time"
)

// Retrier adds keys to a Queue again after a per-key exponential backoff
// (client-go's AddRateLimited with an item exponential failure rate
// limiter): Base for a key's first retry, doubling up to Max, until
// Forget. Waiting keys hold no worker and no goroutine, only a timer.
type Retrier[K comparable, I Item[I]] struct {
	q         *Queue[K, I]
	base, max time.Duration

	mu       sync.Mutex
	failures map[K]int
	timers   map[K]*time.Timer
	closed   bool
}

// NewRetrier returns a Retrier adding to q.
func NewRetrier[K comparable, I Item[I]](q *Queue[K, I], base, max time.Duration) *Retrier[K, I] {
	return &Retrier[K, I]{q: q, base: base, max: max, failures: map[K]int{}, timers: map[K]*time.Timer{}}
}

// Retry adds k with it to the queue once its backoff has passed and
// returns that backoff. A retry of k already waiting is replaced.
func (r *Retrier[K, I]) Retry(k K, it I) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	n := r.failures[k]
	r.failures[k] = n + 1
	wait := r.base << min(n, 30)
	if wait > r.max || wait <= 0 {
		wait = r.max
	}
	if t := r.timers[k]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		r.mu.Lock()
		if r.timers[k] == t {
			delete(r.timers, k)
		}
		r.mu.Unlock()
		r.q.Add(k, it)
	})
	r.timers[k] = t
	return wait
}

// Attempts returns how many times k has been retried since it was last
// forgotten.
func (r *Retrier[K, I]) Attempts(k K) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures[k]
}

// Forget resets k's backoff and drops a retry of it still waiting (its
// work succeeded meanwhile).
func (r *Retrier[K, I]) Forget(k K) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, k)
	if t := r.timers[k]; t != nil {
		t.Stop()
		delete(r.timers, k)
	}
}

// Waiting returns the number of keys waiting for their retry.
func (r *Retrier[K, I]) Waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.timers)
}

// Close stops every waiting retry; Retry does nothing from now on.
func (r *Retrier[K, I]) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, t := range r.timers {
		t.Stop()
		delete(r.timers, k)
	}
}
