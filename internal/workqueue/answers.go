package workqueue

import "sync"

// Answers collects, for callers that wait (a page of a full sync, an
// operator's `scim-agent sync`), the result of each key they asked
// about. The zero value is not usable; make one with NewAnswers.
type Answers[K comparable, R any] struct {
	mu    sync.Mutex
	byKey map[K][]*Request[K, R]
}

// Request is one caller's wait for the results of its keys.
type Request[K comparable, R any] struct {
	seq uint64
	// anyAnswer takes a failed attempt's result as the answer: an
	// operator gets one instead of waiting out an outage of unknown
	// length. Without it only final results count.
	anyAnswer bool
	keys      []K
	remaining int
	results   map[K]R
	done      chan struct{}
}

// NewAnswers returns an empty collection.
func NewAnswers[K comparable, R any]() *Answers[K, R] {
	return &Answers[K, R]{byKey: map[K][]*Request[K, R]{}}
}

// Ask registers a wait for the results of keys (duplicates count once)
// from work handed out with sequence number seq or later: ask with the
// number the keys' items carry. anyAnswer makes a failed attempt's
// result an answer too.
func (a *Answers[K, R]) Ask(keys []K, seq uint64, anyAnswer bool) *Request[K, R] {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := &Request[K, R]{seq: seq, anyAnswer: anyAnswer, results: make(map[K]R, len(keys)), done: make(chan struct{})}
	seen := make(map[K]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		r.keys = append(r.keys, k)
		r.remaining++
		a.byKey[k] = append(a.byKey[k], r)
	}
	if r.remaining == 0 {
		close(r.done)
	}
	return r
}

// Answer gives the result of k's work handed out with sequence number
// upTo. A final result answers the requests the work covers (asked at or
// before upTo); a failed attempt's answers every request that takes any
// answer, including those asked after the attempt began: the next
// attempt would most likely fail alike.
func (a *Answers[K, R]) Answer(k K, upTo uint64, res R, final bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	reqs := a.byKey[k]
	keep := reqs[:0]
	for _, r := range reqs {
		if final && r.seq > upTo || !final && !r.anyAnswer {
			keep = append(keep, r)
			continue
		}
		r.results[k] = res
		r.remaining--
		if r.remaining == 0 {
			close(r.done)
		}
	}
	if len(keep) == 0 {
		delete(a.byKey, k)
	} else {
		a.byKey[k] = keep
	}
}

// Cancel drops a request whose caller stopped waiting.
func (a *Answers[K, R]) Cancel(r *Request[K, R]) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range r.keys {
		reqs := a.byKey[k]
		keep := reqs[:0]
		for _, q := range reqs {
			if q != r {
				keep = append(keep, q)
			}
		}
		if len(keep) == 0 {
			delete(a.byKey, k)
		} else {
			a.byKey[k] = keep
		}
	}
}

// Done is closed once every key of the request has its answer.
func (r *Request[K, R]) Done() <-chan struct{} { return r.done }

// Result returns k's answer; ok is false before it came (or for a key
// not asked about). Call it after Done is closed.
func (r *Request[K, R]) Result(k K) (res R, ok bool) {
	select {
	case <-r.done:
		res, ok = r.results[k]
	default:
	}
	return res, ok
}
