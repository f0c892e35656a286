package agent

import (
	"context"
	"sync"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/internal/workqueue"
)

// loadBatch is how many queued users the loader reads at once: a full
// sync queues 500 at a time and a backlog thousands, so its reads cost
// 2 round trips for loadBatch users, not 2 per user; one key waiting
// alone is read alone, at once.
const loadBatch = 250

// pageLockWait is how long the loader's read of a batch waits for a
// write in flight. A transaction that holds a user's rows longer (an XA
// transaction prepared and not yet committed) would hold the whole
// batch: after this long the batch is handed to the workers unread, and
// each reconcile reads (and waits for) its own user, as without the
// loader.
const pageLockWait = time.Second

// preload is what the loader read for a key's reconcile while the key
// was already held (no other reconcile of the user can run until the
// worker's Done): the user's rows, or that it has none, read after the
// barrier of every transaction queued for it so far.
type preload struct {
	acct   drupal.Account
	exists bool
	// rec is the user's record (known: it has one), read with the batch
	// (haveRec) while the key was held: only the key's reconcile writes
	// it.
	rec     state.Account
	known   bool
	haveRec bool
	// marked is set when the loader saved, durably, the Creating record
	// (rec) that the user's create saves before its POST: the reconcile
	// starts with that POST (none was sent since) without saving it again.
	marked bool
}

// loader reads, for the workers, the data of many queued users at once:
// it takes up to loadBatch queued keys (each held until its worker's
// Done, as a Get would hold it), reads their Drupal rows with one barrier
// and one query (drupal.Reader.LoadPage) and their records with one
// read, saves in one commit the Creating records of those whose
// reconcile begins with a POST, and hands the keys to the workers with
// what it read. Reading the batch only after taking its keys keeps the
// level-triggered rule: a change queued for a key after the read hands
// the key out again after Done, and reads it afresh.
type loader struct {
	queue  *workqueue.Queue[key, item]
	users  *users
	dryRun bool // save nothing (the agent's --dry-run)

	ready    chan task
	quit     chan struct{}
	quitOnce sync.Once
}

// task is a key handed to a worker, with its item.
type task struct {
	k  key
	it item
}

func newLoader(q *workqueue.Queue[key, item], u *users, dryRun bool) *loader {
	return &loader{queue: q, users: u, dryRun: dryRun, ready: make(chan task, loadBatch), quit: make(chan struct{})}
}

// run takes batches from the queue until it closes; ctx bounds the
// reads. Its caller owns the goroutine (the worker pool).
func (l *loader) run(ctx context.Context) {
	defer close(l.ready)
	for {
		keys, items, ok := l.queue.GetBatch(loadBatch)
		if !ok {
			return
		}
		l.load(ctx, keys, items)
		for i := range keys {
			select {
			case l.ready <- task{keys[i], items[i]}:
			case <-l.quit:
				return // the queue closed: its held keys no longer matter
			}
		}
	}
}

// next hands a worker its next key; ok is false once the queue is closed
// (what is still read ahead is dropped, like what is still queued).
func (l *loader) next() (k key, it item, ok bool) {
	t, ok := <-l.ready
	if !ok || l.queue.Closed() {
		l.quitOnce.Do(func() { close(l.quit) })
		return k, it, false
	}
	return t.k, t.it, true
}

// load reads the data of a batch's users into their items. On any
// failure the items get nothing (or no marks) and each reconcile reads
// and saves for itself, reporting what fails as it always did.
func (l *loader) load(ctx context.Context, keys []key, items []item) {
	uids := make([]uint32, 0, len(keys))
	seen := make(map[uint32]bool, len(keys))
	for _, k := range keys {
		if k.kind == kindUser && !l.users.prov.Excluded(k.uid) && !seen[k.uid] {
			seen[k.uid] = true
			uids = append(uids, k.uid)
		}
	}
	if len(uids) == 0 {
		return
	}
	accts, err := l.users.pages.LoadPage(ctx, uids)
	if err != nil {
		return
	}
	recs, recErr := l.users.store.Accounts(uids)
	var marks []state.Account
	for i, k := range keys {
		if !seen[k.uid] || k.kind != kindUser {
			continue
		}
		acct, exists := accts[k.uid]
		pre := &preload{acct: acct, exists: exists}
		items[i].pre = pre
		if recErr != nil {
			continue
		}
		pre.rec, pre.known = recs[k.uid]
		pre.haveRec = true
		if k.dry || l.dryRun || items[i].explain {
			// An explanation shows the record as the reconcile found
			// it: its create saves the mark itself.
			continue
		}
		if mark, ok := l.users.startsWithPOST(pre.rec, pre.known, acct, exists); ok {
			marks = append(marks, mark)
			pre.rec, pre.known, pre.marked = mark, true, true
		}
	}
	if err := l.users.store.PutAccounts(marks); err != nil {
		// Not known to be on disk: each reconcile reads its record, and
		// its create saves its own.
		for i := range items {
			if items[i].pre != nil {
				items[i].pre.haveRec, items[i].pre.marked = false, false
			}
		}
	}
}
