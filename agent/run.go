package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/buildinfo"
)

// life is where a Run is: whether one runs, since when, whether its loops
// still turn, and where its admin listener is. It is safe for concurrent
// use.
type life struct {
	running   atomic.Bool
	started   atomic.Int64 // unix nanoseconds
	heartbeat atomic.Int64 // the saver loop's last turn, for /healthz
	adminAddr atomic.Value // string: the admin listener's address while Run runs
}

func (l *life) beat() { l.heartbeat.Store(time.Now().UnixNano()) }

// since returns when the Run began.
func (l *life) since() time.Time {
	if n := l.started.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Time{}
}

// AdminAddr returns the address the admin listener listens on, or "".
func (a *Agent) AdminAddr() string {
	s, _ := a.life.adminAddr.Load().(string)
	return s
}

// Run provisions until ctx is cancelled: on first start (no saved
// position) it notes the binlog position, provisions every user, then
// streams from the noted position. After ctx is cancelled it stops
// reading, lets in-flight reconciles finish (bounded by the shutdown
// timeout), saves the position and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	if !a.life.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.life.running.Store(false)
	a.life.started.Store(time.Now().UnixNano())
	a.life.beat()
	stopAdmin, err := a.startAdmin(ctx)
	if err != nil {
		return err
	}
	// The control socket and the admin listener answer until everything
	// else has stopped.
	defer stopAdmin()
	if err := a.scim.connect(ctx); err != nil {
		if ctx.Err() != nil {
			a.log.Info(MsgAgentStop, zap.String("reason", "stopped before the SCIM server answered"))
			return nil // stopped while waiting for the server: nothing to save
		}
		return fmt.Errorf("read the SCIM server's ServiceProviderConfig: %w", err)
	}
	a.health.ok()
	// runCtx ends with ctx, or when the stream stops for good: every loop
	// below stops with it. Ending it also closes the work queue, so a
	// binlog reader waiting for room in a full queue wakes up.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	defer context.AfterFunc(runCtx, a.work.close)()
	stopLoops := a.startLoops(runCtx)
	defer stopLoops()
	// Workers outlive ctx by up to the shutdown timeout, so a request in
	// flight at SIGTERM can finish and be recorded.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	workersDone := a.startWorkers(workCtx)
	for _, k := range a.guard.Released() {
		// Approved but not yet sent: a sync or drift repair held some of
		// them, and the binlog will not name those again.
		a.work.requeue(k, "approve-deletes")
	}
	a.log.Info(MsgAgentStart, zap.String("version", buildinfo.Read().Short()), zap.Int("workers", a.cfg.Provisioning.Workers),
		zap.Bool("patch", a.scim.caps.Patch), zap.Bool("dry_run", a.opts.DryRun))
	streamErr := a.follow(runCtx)
	if streamErr != nil && ctx.Err() == nil {
		a.log.Error(MsgAgentStop, zap.String("reason", "the binlog stream stopped for good"), zap.Error(streamErr))
	}
	stopRun()
	a.stopWorkers(workersDone, cancelWork)
	stopLoops()
	if err := a.saved.advance(a.safe); err != nil {
		a.log.Error(MsgAgentStop, zap.Error(err))
	}
	if streamErr != nil && ctx.Err() == nil {
		return streamErr
	}
	a.log.Info(MsgAgentStop, zap.String("position", a.SavedPosition().String()))
	return nil
}

// startLoops starts what runs beside the stream until ctx ends: the
// position saver, the readiness probe and the scheduled drift repair.
// stop waits for them (and may be called twice).
func (a *Agent) startLoops(ctx context.Context) (stop func()) {
	var wg sync.WaitGroup
	loops := []func(context.Context){a.savePositions, func(ctx context.Context) { a.health.probe(ctx, a.scim.ask) }}
	if a.opts.ReconcileInterval > 0 {
		loops = append(loops, a.runDriftRepairs)
	}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	return wg.Wait
}

// startWorkers starts the configured number of workers; done is closed
// once they all returned (after the queue closes).
func (a *Agent) startWorkers(ctx context.Context) (done <-chan struct{}) {
	p := &pool{work: a.work, reconcile: a.reconcile, log: a.log,
		load: newLoader(a.work.queue, a.kinds.users, a.opts.DryRun)}
	wait := p.start(ctx, a.cfg.Provisioning.Workers)
	ch := make(chan struct{})
	go func() {
		wait()
		close(ch)
	}()
	return ch
}

// stopWorkers closes the queue (no new work) and lets running reconciles
// finish, cutting them after the shutdown timeout.
func (a *Agent) stopWorkers(done <-chan struct{}, cut context.CancelFunc) {
	a.work.close()
	select {
	case <-done:
	case <-time.After(a.opts.ShutdownTimeout):
		a.log.Warn(MsgAgentStop, zap.String("reason", "shutdown timeout: cancelling in-flight requests"))
		cut()
		<-done
	}
}

// follow runs the binlog stream, with the full syncs of a first start and
// of a purged position, until ctx is done or a permanent error.
func (a *Agent) follow(ctx context.Context) error {
	pos, found, err := a.saved.load()
	if err != nil {
		return err
	}
	if found {
		a.requeueParked()
	} else if pos, err = a.syncFromHere(ctx, "first start: no saved position"); err != nil {
		return err
	}
	for {
		err := a.stream.Stream(ctx, pos, a.handleNotice)
		if ctx.Err() != nil {
			return nil
		}
		reason, resync := a.resyncReason(pos, err)
		if !resync {
			return err
		}
		if pos, err = a.syncFromHere(ctx, reason); err != nil {
			return err
		}
	}
}

// resyncReason says why a stream that stopped at pos with err needs a
// full sync, and logs it; resync is false for an error a sync cannot
// cure.
func (a *Agent) resyncReason(pos binlog.Position, err error) (reason string, resync bool) {
	switch {
	case errors.Is(err, binlog.ErrPositionPurged):
		a.log.Error(MsgPositionPurged, zap.String("position", pos.String()), zap.Error(err))
		return "saved position purged from the server", true
	case errors.Is(err, binlog.ErrUnknownColumns):
		// Events written before a schema change cannot be decoded with
		// today's column names (binlog_row_metadata is not FULL): skip
		// them and reconcile everyone instead.
		a.log.Error(MsgColumnsUnknown, zap.String("position", pos.String()), zap.Error(err))
		return "binlog events older than a schema change", true
	case errors.Is(err, binlog.ErrResyncNeeded):
		// TRUNCATE, DROP or RENAME of a watched table, a statement-format
		// write to one, or an event that will not decode: the binlog
		// cannot name the users.
		a.log.Error(MsgResyncNeeded, zap.String("position", pos.String()), zap.Error(err))
		return "the binlog cannot tell which users changed", true
	}
	return "", false
}

// syncFromHere notes the current binlog position, provisions every user
// and saves the noted position: streaming from it then sees every change
// made during the sync (replays are harmless).
func (a *Agent) syncFromHere(ctx context.Context, reason string) (binlog.Position, error) {
	a.saved.syncing()
	pos, err := a.stream.CurrentPosition(ctx)
	if err != nil {
		return pos, err
	}
	if err := a.FullSync(ctx, reason); err != nil {
		return pos, err
	}
	// Deletions the sync held are saved (by the checkpoint, first) before
	// the position that will never name them again.
	return pos, a.saved.resynced(pos, a.work.resynced)
}

// handleNotice queues the uids and roles of one committed transaction.
func (a *Agent) handleNotice(ctx context.Context, n binlog.Notice) error {
	keys := make([]key, 0, len(n.UIDs)+len(n.Roles))
	for _, uid := range n.UIDs {
		if !a.cfg.Provisioning.Excluded(uid) {
			keys = append(keys, userKey(uid))
		}
	}
	for _, role := range n.Roles {
		if a.cfg.Groups.Selects(role) {
			keys = append(keys, roleKey(role))
		}
	}
	a.metrics.observeTransaction(len(keys))
	if !a.work.transaction(keys, n.Pos, n.Time) {
		return ctx.Err()
	}
	return nil
}

// requeueParked tries every parked uid again, as promised at restart.
func (a *Agent) requeueParked() {
	parked, err := a.store.Parked()
	if err != nil {
		a.log.Error(MsgReconcileParked, zap.Error(err))
		return
	}
	for _, p := range parked {
		a.work.requeue(userKey(p.UID), "restart: parked")
	}
}

// safe returns the position up to which every change is handled.
func (a *Agent) safe() (binlog.Position, bool) {
	pos, _, ok := a.work.marks.Safe()
	return pos, ok
}

// savePositions saves the safe position once a second until ctx is done.
func (a *Agent) savePositions(ctx context.Context) {
	every(ctx, time.Second, func() {
		a.life.beat()
		if err := a.saved.advance(a.safe); err != nil {
			a.log.Error(MsgPositionSaved, zap.Error(err))
		}
	})
}

// every calls fn every d until ctx is done; the caller's goroutine runs
// fn, so runs never overlap.
func every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}
