package agent

import (
	"cmp"
	"context"
	"errors"
	"iter"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/workqueue"
)

// kind is what a key names.
type kind uint8

// Kinds of keys.
const (
	kindUser kind = iota // a Drupal user, by uid
	kindRole             // a Drupal role (its SCIM Group), by machine name
)

// key names one thing the agent reconciles: a user (uid) or a role
// (role). dry marks a one-off dry run (sync --dry-run on a live agent):
// it sends and saves nothing, beside the real reconciles of the same key.
type key struct {
	kind kind
	uid  uint32
	role string
	dry  bool
}

func userKey(uid uint32) key  { return key{kind: kindUser, uid: uid} }
func roleKey(role string) key { return key{kind: kindRole, role: role} }

// String names the key in logs and errors: "uid 12", "role editor".
func (k key) String() string {
	if k.kind == kindRole {
		return "role " + k.role
	}
	return "uid " + strconv.FormatUint(uint64(k.uid), 10)
}

// sortedKeys returns keys sorted: users by uid, then roles by name.
func sortedKeys(keys iter.Seq[key]) []key {
	return slices.SortedFunc(keys, func(a, b key) int {
		if a.kind != b.kind {
			return cmp.Compare(a.kind, b.kind)
		}
		return cmp.Or(cmp.Compare(a.uid, b.uid), cmp.Compare(a.role, b.role))
	})
}

// item is what a queued key's reconcile needs, merged per key.
type item struct {
	// cause is the newest cause (a command), for logs; "" for a binlog
	// transaction, whose position (causeOf) is not kept per item: a
	// backlog holds one item per transaction.
	cause  string
	verify bool // compare with the server's copy, not only the fingerprints
	// explain: record the reconcile step by step in its Result (sync
	// --explain).
	explain bool
	seq     uint64 // the newest batch or request the reconcile covers
	// pre is what the loader read once the key was held; never queued
	// (a merge drops it, and so does a retry: each read is for one
	// attempt).
	pre *preload
}

// Merge combines the item a key waits with and a newer one.
func (a item) Merge(b item) item {
	return item{cause: b.cause, verify: a.verify || b.verify, explain: a.explain || b.explain, seq: max(a.seq, b.seq)}
}

// errShuttingDown answers a request made while the queue closes.
var errShuttingDown = errors.New("the agent is shutting down")

// request is a caller's wait for the results of its keys.
type request = workqueue.Request[key, Result]

// work is the agent's work queue: the workqueue layers, wired so that a
// batch is recorded before its keys are queued and each reconcile's end
// reaches every layer that waits for it.
type work struct {
	seq     *workqueue.Sequence
	queue   *workqueue.Queue[key, item]
	retry   *workqueue.Retrier[key, item]
	marks   *workqueue.Watermark[key, binlog.Position]
	gate    *workqueue.Gate
	answers *workqueue.Answers[key, Result]
}

// newWork returns an empty queue letting maxOpen binlog transactions be
// incomplete at once (0: any number).
func newWork(maxOpen int) *work {
	seq := &workqueue.Sequence{}
	q := workqueue.NewQueue[key, item]()
	return &work{
		seq:     seq,
		queue:   q,
		retry:   workqueue.NewRetrier(q, 500*time.Millisecond, time.Minute),
		marks:   workqueue.NewWatermark[key, binlog.Position](seq),
		gate:    workqueue.NewGate(maxOpen),
		answers: workqueue.NewAnswers[key, Result](),
	}
}

// transaction queues the keys of one committed binlog transaction, which
// ends at pos; the safe position passes it once every key is handled. It
// waits while too many transactions are incomplete (back-pressure) and
// reports false once the queue is closed.
func (w *work) transaction(keys []key, pos binlog.Position, at time.Time) bool {
	if len(keys) > 0 && !w.gate.Enter() {
		return false
	}
	seq := w.marks.Add(keys, pos, at)
	for _, k := range keys {
		w.queue.Add(k, item{seq: seq})
	}
	return true
}

// causeOf is the cause of an item's reconcile, for its logs: the command,
// or the position of the binlog transaction (the newest it covers).
func (w *work) causeOf(it item) string {
	if it.cause != "" {
		return it.cause
	}
	if pos, ok := w.marks.Position(it.seq); ok {
		return pos.String()
	}
	return "binlog" // a full sync has covered the transaction since
}

// ask queues keys for a caller who waits for their results: a page of a
// full sync or a drift repair (final results only), or an operator's
// request (anyAnswer: a failed attempt answers too). It returns nil once
// the queue is closed (nobody would answer).
func (w *work) ask(keys []key, cause string, verify, anyAnswer bool) *request {
	return w.askItem(keys, item{cause: cause, verify: verify}, anyAnswer)
}

// askItem is ask for keys whose reconciles need it (its seq is set
// here).
func (w *work) askItem(keys []key, it item, anyAnswer bool) *request {
	if w.queue.Closed() {
		return nil
	}
	it.seq = w.seq.Next()
	req := w.answers.Ask(keys, it.seq, anyAnswer)
	for _, k := range keys {
		w.queue.Add(k, it)
	}
	return req
}

// wait waits for req's answers, or for ctx.
func (w *work) wait(ctx context.Context, req *request) error {
	if req == nil {
		return errShuttingDown
	}
	select {
	case <-req.Done():
		return nil
	case <-ctx.Done():
		w.answers.Cancel(req)
		return ctx.Err()
	}
}

// requeue queues k again, covering every batch so far (after an
// approval, or for a create that waits for k).
func (w *work) requeue(k key, cause string) {
	w.queue.Add(k, item{cause: cause, seq: w.seq.Now()})
}

// finished records the end of k's reconcile that started with it. A held
// key waits for an approval (which queues it again), a waiting one is
// retried with backoff; both stay pending for the position.
func (w *work) finished(k key, it item, res Result) {
	w.answers.Answer(k, it.seq, res, true)
	switch res.Outcome {
	case Held:
	case Waiting:
		w.retry.Retry(k, it)
	default:
		w.retry.Forget(k)
		w.gate.Leave(w.marks.Done(k, it.seq))
	}
}

// failed records a failed attempt of k's reconcile, to be tried again
// after the returned backoff; its batches keep waiting.
func (w *work) failed(k key, it item, res Result) time.Duration {
	w.answers.Answer(k, it.seq, res, false)
	return w.retry.Retry(k, it)
}

// resynced forgets the positions of the transactions read so far: a full
// sync covered them.
func (w *work) resynced() { w.gate.Leave(w.marks.Forget()) }

// depth is the number of keys waiting for a worker.
func (w *work) depth() int { return w.queue.Len() }

// idle reports whether nothing is queued, held, waiting for a retry, or
// incomplete.
func (w *work) idle() bool {
	return w.queue.Idle() && w.retry.Waiting() == 0 && w.marks.Open() == 0
}

// close stops the queue: workers return, the reader waiting for room
// wakes up, retries are dropped (the position keeps their changes).
func (w *work) close() {
	w.queue.Close()
	w.gate.Close()
	w.retry.Close()
}

// pool runs the workers: each takes a key, reconciles it and reports how
// it ended. One key is reconciled by one worker at a time.
type pool struct {
	work      *work
	reconcile func(ctx context.Context, k key, it item, attempt int) (Result, error)
	log       *zap.Logger
	// load, when set, reads the users of queued keys in batches ahead of
	// the workers (preload.go); else each worker takes one key.
	load *loader
}

// start starts n workers (and the loader), which stop when the queue
// closes; wait waits for them. ctx bounds the reconciles in flight.
func (p *pool) start(ctx context.Context, n int) (wait func()) {
	var wg sync.WaitGroup
	next := p.work.queue.Get
	if p.load != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.load.run(ctx)
		}()
		next = p.load.next
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, it, ok := next()
				if !ok {
					return
				}
				p.handle(ctx, k, it)
				p.work.queue.Done(k)
			}
		}()
	}
	return wg.Wait
}

// handle reconciles one key. A failure that is not the user's own (the
// database went away, the server is down) is retried with backoff,
// holding the position; the worker is free meanwhile.
func (p *pool) handle(ctx context.Context, k key, it item) {
	attempt := p.work.retry.Attempts(k) + 1
	res, err := p.reconcile(ctx, k, it, attempt)
	it.pre = nil
	if err == nil {
		p.work.finished(k, it, res)
		return
	}
	if ctx.Err() != nil {
		return // stopping: the position keeps the change
	}
	wait := p.work.failed(k, it, Result{UID: k.uid, Role: k.role, Outcome: Failed, Detail: err.Error(), Explain: res.Explain})
	who := zap.Uint32("uid", k.uid)
	if k.kind == kindRole {
		who = zap.String("role", k.role)
	}
	p.log.Warn(MsgReconcileError, who, zap.String("binlog_pos", p.work.causeOf(it)),
		zap.Int("attempt", attempt), zap.Int64("retry_in_ms", wait.Milliseconds()), zap.Error(err))
}
