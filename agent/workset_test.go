package agent

import (
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/binlog"
)

func pos(n uint32) *binlog.Position { return &binlog.Position{File: "bin.000001", Offset: n} }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func mustGet(t *testing.T, w *workset, want uint32) ticket {
	t.Helper()
	uid, tk, ok := w.Get()
	if !ok || uid != want {
		t.Fatalf("Get() = %d, %v; want uid %d", uid, ok, want)
	}
	return tk
}

func TestWorksetCoalescesAndOrdersPositions(t *testing.T) {
	w := newWorkset(0)
	now := time.Now()
	b1 := w.Add([]uint32{1, 2, 1}, pos(100), now, "p100")
	b2 := w.Add([]uint32{2}, pos(200), now, "p200")
	b3 := w.Add(nil, pos(300), now, "p300") // a transaction touching no user
	if !isClosed(b3) {
		t.Fatal("an empty batch must complete at once")
	}
	if _, _, ok := w.Safe(); ok {
		t.Fatal("safe position before any work was done")
	}
	if d := w.Depth(); d != 2 {
		t.Fatalf("Depth = %d, want 2 (uid 2 queued once for two batches)", d)
	}
	t1 := mustGet(t, w, 1)
	t2 := mustGet(t, w, 2)
	w.Done(2, t2, true, Result{})
	if !isClosed(b2) || isClosed(b1) {
		t.Fatal("b2 complete, b1 still waiting for uid 1")
	}
	if _, _, ok := w.Safe(); ok {
		t.Fatal("position advanced past b1 while uid 1 is outstanding")
	}
	w.Done(1, t1, true, Result{})
	if !isClosed(b1) {
		t.Fatal("b1 not complete")
	}
	if p, _, ok := w.Safe(); !ok || p.Offset != 300 {
		t.Fatalf("Safe = %v %v, want 300", p, ok)
	}
	if !w.Idle() {
		t.Fatal("not idle")
	}
}

func TestWorksetRequeuesUIDDirtiedWhileBusy(t *testing.T) {
	w := newWorkset(0)
	b1 := w.Add([]uint32{7}, pos(1), time.Now(), "p1")
	tk := mustGet(t, w, 7)
	// A second change arrives while the worker holds uid 7: the worker may
	// have read the rows before it, so it must not count for b2.
	b2 := w.Add([]uint32{7}, pos(2), time.Now(), "p2")
	if d := w.Depth(); d != 0 {
		t.Fatalf("Depth = %d while the uid is busy, want 0 (one worker per uid)", d)
	}
	w.Done(7, tk, true, Result{})
	if !isClosed(b1) || isClosed(b2) {
		t.Fatal("the first reconcile must complete b1 only")
	}
	if p, _, _ := w.Safe(); p.Offset != 1 {
		t.Fatalf("Safe = %v, want 1", p)
	}
	tk = mustGet(t, w, 7)
	if tk.cause != "p2" {
		t.Fatalf("cause = %q, want p2", tk.cause)
	}
	w.Done(7, tk, true, Result{})
	if !isClosed(b2) {
		t.Fatal("b2 not complete")
	}
}

func TestWorksetHeldUIDKeepsPositionUntilRequeued(t *testing.T) {
	w := newWorkset(0)
	b1 := w.Add([]uint32{5}, pos(10), time.Now(), "p10")
	b2 := w.Add([]uint32{6}, pos(20), time.Now(), "p20")
	tk5 := mustGet(t, w, 5)
	tk6 := mustGet(t, w, 6)
	w.Done(5, tk5, false, Result{Outcome: Held}) // held by the deletion guard
	w.Done(6, tk6, true, Result{})               // other work keeps flowing
	if isClosed(b1) || !isClosed(b2) {
		t.Fatal("held uid must keep b1 open while b2 completes")
	}
	if _, _, ok := w.Safe(); ok {
		t.Fatal("position passed a held uid")
	}
	if d := w.Depth(); d != 0 {
		t.Fatalf("held uid queued again on its own: depth %d", d)
	}
	w.Requeue(5, "approved")
	tk5 = mustGet(t, w, 5)
	w.Done(5, tk5, true, Result{})
	if p, _, _ := w.Safe(); p.Offset != 20 {
		t.Fatalf("Safe = %v, want 20", p)
	}
}

func TestWorksetHeldUIDCompletesABatchWithoutPosition(t *testing.T) {
	w := newWorkset(0)
	page := w.Add([]uint32{5, 6}, nil, time.Now(), "sync")
	tk5 := mustGet(t, w, 5)
	tk6 := mustGet(t, w, 6)
	w.Done(5, tk5, false, Result{Outcome: Held}) // the guard keeps it
	w.Done(6, tk6, false, Result{})              // interrupted: must run again
	if isClosed(page) {
		t.Fatal("an interrupted uid completed the sync page")
	}
	w.Requeue(6, "retry")
	tk6 = mustGet(t, w, 6)
	w.Done(6, tk6, true, Result{})
	if !isClosed(page) {
		t.Fatal("a uid held by the guard keeps a sync page open: the sync would wait for an approval")
	}
	if !w.Idle() {
		t.Fatal("workset not idle")
	}
}

func TestWorksetFailAnswersRequestsOnly(t *testing.T) {
	w := newWorkset(0)
	stream := w.Add([]uint32{5}, pos(10), time.Now(), "p10")
	tk := mustGet(t, w, 5)
	req := w.AddCollect([]uint32{5}, "sync") // arrives while the attempt runs
	w.Fail(5, Result{UID: 5, Outcome: Failed, Detail: "refused"})
	if !isClosed(req.done) || req.results[5].Detail != "refused" {
		t.Fatalf("the request got no answer from a failed attempt: %+v", req.results)
	}
	if isClosed(stream) {
		t.Fatal("a failed attempt completed a binlog batch")
	}
	w.Done(5, tk, true, Result{})
	if !isClosed(stream) {
		t.Fatal("binlog batch not complete after the retry succeeded")
	}
}

func TestWorksetResyncNeverMovesThePositionBack(t *testing.T) {
	w := newWorkset(0)
	w.Add([]uint32{5}, pos(10), time.Now(), "p10") // read before the resync
	tk := mustGet(t, w, 5)
	w.Resync() // a full sync covered it; the agent saved a newer position
	w.Done(5, tk, true, Result{})
	if p, _, ok := w.Safe(); ok {
		t.Fatalf("Safe = %v after a resync: an old batch would move the saved position back", p)
	}
	w.Add([]uint32{6}, pos(30), time.Now(), "p30")
	tk = mustGet(t, w, 6)
	w.Done(6, tk, true, Result{})
	if p, _, ok := w.Safe(); !ok || p.Offset != 30 {
		t.Fatalf("Safe = %v, %v; want 30", p, ok)
	}
}

func TestWorksetMergesCompleteBatchesBehindAStall(t *testing.T) {
	w := newWorkset(0)
	w.Add([]uint32{1}, pos(1), time.Now(), "p1")
	for i := uint32(2); i < 10000; i++ {
		w.Add(nil, pos(i), time.Now(), "")
	}
	if n := len(w.positioned); n != 2 {
		t.Fatalf("%d position records behind a stalled uid, want 2", n)
	}
	tk := mustGet(t, w, 1)
	w.Done(1, tk, true, Result{})
	if p, _, _ := w.Safe(); p.Offset != 9999 {
		t.Fatalf("Safe = %v, want 9999", p)
	}
}

func TestWorksetBackPressureAndClose(t *testing.T) {
	w := newWorkset(1)
	w.Add([]uint32{1}, pos(1), time.Now(), "p1")
	added := make(chan (<-chan struct{}))
	go func() { added <- w.Add([]uint32{2}, pos(2), time.Now(), "p2") }()
	tk := mustGet(t, w, 1)
	select {
	case <-added:
		t.Fatal("Add did not wait for room")
	default:
	}
	w.Done(1, tk, true, Result{})
	if ch := <-added; ch == nil {
		t.Fatal("Add returned nil before close")
	}
	w.Close()
	if _, _, ok := w.Get(); ok {
		t.Fatal("Get after Close")
	}
	if ch := w.Add([]uint32{3}, pos(3), time.Now(), ""); ch != nil {
		t.Fatal("Add after Close")
	}
}
