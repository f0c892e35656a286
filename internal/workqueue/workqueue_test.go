package workqueue

import (
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
)

// item is a test item: the newest cause and sequence number, and
// whether any add asked to verify.
type item struct {
	cause  string
	seq    uint64
	verify bool
}

func (a item) Merge(b item) item {
	return item{cause: b.cause, seq: max(a.seq, b.seq), verify: a.verify || b.verify}
}

func mustGet(t *testing.T, q *Queue[int, item], want int) item {
	t.Helper()
	k, it, ok := q.Get()
	if !ok || k != want {
		t.Fatalf("Get() = %d, %v; want key %d", k, ok, want)
	}
	return it
}

func TestQueueCoalescesAndMergesItems(t *testing.T) {
	q := NewQueue[int, item]()
	q.Add(1, item{cause: "a", seq: 1})
	q.Add(2, item{cause: "b", seq: 2})
	q.Add(1, item{cause: "c", seq: 3, verify: true})
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2 (key 1 queued once)", n)
	}
	if it := mustGet(t, q, 1); it != (item{cause: "c", seq: 3, verify: true}) {
		t.Fatalf("key 1's item = %+v, want the adds merged", it)
	}
	mustGet(t, q, 2)
	if q.Idle() {
		t.Fatal("idle while two keys are held")
	}
	q.Done(1)
	q.Done(2)
	if !q.Idle() {
		t.Fatal("not idle")
	}
}

func TestQueueHandsOutAKeyAddedWhileHeldAgainAfterDone(t *testing.T) {
	q := NewQueue[int, item]()
	q.Add(7, item{seq: 1})
	mustGet(t, q, 7)
	// A second change arrives while a worker holds key 7: that worker may
	// have read too early, so 7 must be handed out again, but only once
	// the worker is done (one worker per key).
	q.Add(7, item{seq: 2})
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d while the key is held, want 0", n)
	}
	q.Done(7)
	if it := mustGet(t, q, 7); it.seq != 2 {
		t.Fatalf("handed out again with %+v, want seq 2", it)
	}
}

func TestQueueCloseWakesGet(t *testing.T) {
	q := NewQueue[int, item]()
	got := make(chan bool)
	go func() {
		_, _, ok := q.Get()
		got <- ok
	}()
	q.Close()
	if <-got {
		t.Fatal("Get after Close returned a key")
	}
	q.Add(1, item{})
	if q.Len() != 0 {
		t.Fatal("Add after Close queued")
	}
}

func TestRetrierBacksOffPerKeyAndForgets(t *testing.T) {
	q := NewQueue[int, item]()
	r := NewRetrier(q, time.Millisecond, 4*time.Millisecond)
	var waits []time.Duration
	for i := 0; i < 4; i++ {
		waits = append(waits, r.Retry(1, item{seq: uint64(i)}))
		mustGet(t, q, 1) // handed out once its backoff passed
		q.Done(1)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("backoffs = %v, want %v", waits, want)
		}
	}
	if n := r.Attempts(1); n != 4 {
		t.Fatalf("Attempts = %d, want 4", n)
	}
	if w := r.Retry(2, item{}); w != time.Millisecond {
		t.Fatalf("another key's first backoff = %v, want the base", w)
	}
	r.Forget(2)
	if r.Waiting() != 0 || r.Attempts(2) != 0 {
		t.Fatal("Forget left a retry waiting")
	}
	r.Forget(1)
	if w := r.Retry(1, item{}); w != time.Millisecond {
		t.Fatalf("backoff after Forget = %v, want the base", w)
	}
	r.Close()
	if r.Waiting() != 0 {
		t.Fatal("Close left a retry waiting")
	}
}

func TestWatermarkOrdersPositions(t *testing.T) {
	seq := &Sequence{}
	w := NewWatermark[int, int](seq)
	now := time.Now()
	s1 := w.Add([]int{1, 2, 1}, 100, now)
	s2 := w.Add([]int{2}, 200, now)
	w.Add(nil, 300, now) // a transaction touching no key
	if _, _, ok := w.Safe(); ok {
		t.Fatal("safe position before any work was done")
	}
	if n := w.Open(); n != 2 {
		t.Fatalf("Open = %d, want 2", n)
	}
	// Key 2's work handed out after both batches completes b2 only:
	// b1 still waits for key 1.
	if n := w.Done(2, s2); n != 1 {
		t.Fatalf("Done(2) completed %d batches, want 1", n)
	}
	if _, _, ok := w.Safe(); ok {
		t.Fatal("position advanced past b1 while key 1 is outstanding")
	}
	if n := w.Done(1, s1); n != 1 {
		t.Fatalf("Done(1) completed %d batches, want 1", n)
	}
	if p, _, ok := w.Safe(); !ok || p != 300 {
		t.Fatalf("Safe = %v %v, want 300", p, ok)
	}
	if w.Open() != 0 || w.Waits(1) || w.Waits(2) {
		t.Fatal("batches still open")
	}
}

func TestWatermarkWorkHandedOutBeforeABatchDoesNotCountForIt(t *testing.T) {
	w := NewWatermark[int, int](&Sequence{})
	s1 := w.Add([]int{7}, 1, time.Now())
	s2 := w.Add([]int{7}, 2, time.Now())
	// Work handed out between the two batches (with s1) covers b1 only.
	w.Done(7, s1)
	if p, _, _ := w.Safe(); p != 1 || !w.Waits(7) {
		t.Fatalf("Safe = %d, want 1 with b2 still waiting for key 7", p)
	}
	w.Done(7, s2)
	if p, _, _ := w.Safe(); p != 2 {
		t.Fatalf("Safe = %d, want 2", p)
	}
}

func TestWatermarkMergesCompleteBatchesBehindAStall(t *testing.T) {
	w := NewWatermark[int, int](&Sequence{})
	w.Add([]int{1}, 1, time.Now()) // stalls
	for i := 2; i <= 1000; i++ {
		w.Add(nil, i, time.Now())
	}
	if n := len(w.line); n != 2 {
		t.Fatalf("%d batches kept behind a stall, want 2 (the stalled one and the merged rest)", n)
	}
	w.Done(1, w.seq.Now())
	if p, _, _ := w.Safe(); p != 1000 {
		t.Fatalf("Safe = %d, want 1000", p)
	}
}

func TestWatermarkForgetNeverMovesThePositionBack(t *testing.T) {
	seq := &Sequence{}
	w := NewWatermark[int, int](seq)
	w.Add([]int{1}, 10, time.Now())
	w.Add(nil, 20, time.Now())
	if n := w.Forget(); n != 1 {
		t.Fatalf("Forget dropped %d open batches, want 1", n)
	}
	// The stalled key's work ends after the resync: no old position
	// may come back.
	w.Done(1, seq.Now())
	if _, _, ok := w.Safe(); ok {
		t.Fatal("a position from before the resync came back")
	}
	w.Add(nil, 30, time.Now())
	if p, _, _ := w.Safe(); p != 30 {
		t.Fatalf("Safe = %d, want 30", p)
	}
}

func TestGateBoundsAndCloses(t *testing.T) {
	g := NewGate(2)
	if !g.Enter() || !g.Enter() {
		t.Fatal("Enter refused below the bound")
	}
	entered := make(chan bool)
	go func() { entered <- g.Enter() }()
	agenttest.Eventually(t, "Enter at the bound to wait", func() bool { return g.Paused() == 1 })
	g.Leave(1)
	if !<-entered {
		t.Fatal("Enter did not get the room given back")
	}
	go func() { entered <- g.Enter() }()
	agenttest.Eventually(t, "Enter to wait again", func() bool { return g.Paused() == 1 })
	g.Close()
	if <-entered {
		t.Fatal("Enter after Close succeeded")
	}
}

func TestAnswers(t *testing.T) {
	a := NewAnswers[int, string]()
	page := a.Ask([]int{1, 2, 2}, 5, false) // a sync page: final results only
	request := a.Ask([]int{1}, 5, true)     // an operator's request: any answer
	a.Answer(1, 5, "failed attempt", false) // an attempt failed
	if res, ok := request.Result(1); !ok || res != "failed attempt" {
		t.Fatalf("request got %q %v, want the failed attempt's answer", res, ok)
	}
	if _, ok := page.Result(1); ok {
		t.Fatal("a page took a failed attempt as its answer")
	}
	a.Answer(1, 4, "too early", true) // work handed out before the page asked
	a.Answer(2, 9, "done", true)
	select {
	case <-page.Done():
		t.Fatal("page complete although key 1's work started before it asked")
	default:
	}
	a.Answer(1, 6, "done", true)
	<-page.Done()
	if res, _ := page.Result(1); res != "done" {
		t.Fatalf("page's key 1 = %q", res)
	}
	empty := a.Ask(nil, 1, false)
	<-empty.Done()
	gone := a.Ask([]int{3}, 1, false)
	a.Cancel(gone)
	if len(a.byKey) != 0 {
		t.Fatalf("answers still waited for: %v", a.byKey)
	}
}

// TestQueueGetBatchHoldsEachKey: a batch takes the queued keys in order,
// each held like a Get's until its Done.
func TestQueueGetBatchHoldsEachKey(t *testing.T) {
	q := NewQueue[int, item]()
	for k := 1; k <= 5; k++ {
		q.Add(k, item{seq: uint64(k)})
	}
	keys, items, ok := q.GetBatch(3)
	if !ok || len(keys) != 3 || keys[0] != 1 || keys[2] != 3 || items[1].seq != 2 {
		t.Fatalf("GetBatch(3) = %v, %v, %v; want keys 1-3 with their items", keys, items, ok)
	}
	q.Add(2, item{seq: 9}) // held: queued again after its Done only
	if keys, _, _ := q.GetBatch(10); len(keys) != 2 || keys[0] != 4 || keys[1] != 5 {
		t.Fatalf("second GetBatch = %v, want the rest, 4 and 5", keys)
	}
	q.Done(2)
	if keys, items, _ := q.GetBatch(10); len(keys) != 1 || keys[0] != 2 || items[0].seq != 9 {
		t.Fatalf("after Done(2): %v %v, want 2 again with seq 9", keys, items)
	}
	for _, k := range []int{1, 2, 3, 4, 5} {
		q.Done(k)
	}
	if !q.Idle() {
		t.Fatal("not idle after every Done")
	}
	done := make(chan bool)
	go func() {
		_, _, ok := q.GetBatch(1)
		done <- ok
	}()
	q.Close()
	if <-done {
		t.Fatal("GetBatch after Close returned keys")
	}
}

// TestWatermarkPositionOfAWaitingBatch: the position of a batch is known
// while it waits, and no longer once it is complete.
func TestWatermarkPositionOfAWaitingBatch(t *testing.T) {
	seq := &Sequence{}
	w := NewWatermark[int, string](seq)
	a := w.Add([]int{1}, "pos-a", time.Now())
	b := w.Add([]int{2}, "pos-b", time.Now())
	request := seq.Next()
	for _, tc := range []struct {
		seq  uint64
		want string
	}{{a, "pos-a"}, {b, "pos-b"}, {request, ""}, {b + 100, ""}} {
		if got, ok := w.Position(tc.seq); ok != (tc.want != "") || got != tc.want {
			t.Errorf("Position(%d) = %q, %v; want %q", tc.seq, got, ok, tc.want)
		}
	}
	w.Done(1, a)
	if _, ok := w.Position(a); ok {
		t.Error("a complete batch still has a position")
	}
	if got, ok := w.Position(b); !ok || got != "pos-b" {
		t.Errorf("Position(b) = %q, %v after a's completion", got, ok)
	}
}
