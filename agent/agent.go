// Package agent keeps a SCIM server's Users equal to a Drupal site's
// users.
//
// It is level-triggered, like a Kubernetes controller: the binlog only
// says which uids changed; a worker then reads the user's current rows and
// makes the server match them. Replays, reordering and coalescing are
// harmless by construction, and the saved binlog position only moves past
// a transaction once every uid it touched has been reconciled (or parked),
// so a crash at any instant loses nothing.
//
//	binlog.Streamer ──Notice──▶ workset (one entry per uid) ──▶ workers ──▶ Reconcile(uid) ──▶ SCIM
//	                                   │
//	                                   └── safe position ──▶ state file (once a second)
package agent

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/buildinfo"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
	"github.com/scim-agent/scim-agent/scimclient"
)

// Options configures an Agent.
type Options struct {
	// Config is the loaded configuration.
	Config *config.Config
	// Logger receives every log line; nil logs nothing.
	Logger *zap.Logger
	// DryRun logs each write request instead of sending it, and saves
	// nothing.
	DryRun bool
	// ShutdownTimeout bounds how long in-flight requests may finish after
	// Run's context is cancelled (default 10s).
	ShutdownTimeout time.Duration
	// StateLockTimeout is how long Open waits for another process to
	// release the state file (default 1s).
	StateLockTimeout time.Duration
	// ReadyWindow is how recent the last successful SCIM request must be
	// for /readyz to answer 200 (default 1m).
	ReadyWindow time.Duration
	// ApproveDeletes releases a tripped deletion guard at start.
	ApproveDeletes bool
	// ReconcileInterval, when set, replaces provisioning.reconcile_interval
	// (tests use intervals shorter than the config allows).
	ReconcileInterval time.Duration
	// MaxPendingTransactions bounds the binlog transactions read but not
	// yet fully handled; reading pauses at the bound (default 100000,
	// a few MiB).
	MaxPendingTransactions int
}

// positionKey is the state meta key of the saved binlog position.
const positionKey = "position"

// Agent is an open pipeline. Create one with Open, start it with Run, and
// Close it after Run returns.
type Agent struct {
	cfg    *config.Config
	log    *zap.Logger
	dryRun bool

	db     *sql.DB
	store  *state.Store
	client *scimclient.Client
	probe  *scimclient.Client // single attempt, for readiness probes
	mapper *mapping.Mapper
	reader *drupal.Reader
	stream *binlog.Streamer
	work   *workset
	guard  *guard
	// released are the uids approved but not yet sent when the agent
	// opened; Run queues them.
	released []uint32
	metrics  *metrics
	counts   counters
	parked   parkedSet

	shutdownTimeout time.Duration
	readyWindow     time.Duration
	driftInterval   time.Duration
	usePatch        atomic.Bool  // false when the server has no PATCH (or answered 405)
	lastSCIMOK      atomic.Int64 // unix nanoseconds
	lastSCIMFail    atomic.Int64
	// authRefused is when the SCIM server last answered a request of a
	// reconcile with 401, unless one succeeded since (unix nanoseconds).
	authRefused atomic.Int64
	heartbeat   atomic.Int64 // the saver loop's last turn, for /healthz
	running     atomic.Bool
	syncDone    atomic.Bool
	started     time.Time
	savedMu     sync.Mutex
	saved       binlog.Position
	// verify holds uids (uint32 → true) whose next reconcile compares
	// with the server's copy: set by sync and the scheduled reconcile.
	verify    sync.Map
	adminAddr atomic.Value // string: the admin listener's address while Run runs

	// overrides are scim.capabilities; caps is what the server can do,
	// resolved with them when Run or ReconcileAll starts, before any
	// reconcile (read-only after).
	overrides scimclient.Overrides
	caps      scimclient.Capabilities
}

// AdminAddr returns the address the admin listener listens on, or "".
func (a *Agent) AdminAddr() string {
	s, _ := a.adminAddr.Load().(string)
	return s
}

// Open connects to the database, the SCIM server's client and the state
// file. It does not run the start-up checks (see Check).
func Open(ctx context.Context, opts Options) (*Agent, error) {
	cfg := opts.Config
	a := &Agent{
		cfg:             cfg,
		log:             opts.Logger,
		dryRun:          opts.DryRun,
		work:            newWorkset(cmp.Or(opts.MaxPendingTransactions, 100_000)),
		shutdownTimeout: opts.ShutdownTimeout,
		readyWindow:     opts.ReadyWindow,
		driftInterval:   cfg.Provisioning.ReconcileInterval,
	}
	if opts.ReconcileInterval > 0 {
		a.driftInterval = opts.ReconcileInterval
	}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.shutdownTimeout == 0 {
		a.shutdownTimeout = 10 * time.Second
	}
	if a.readyWindow == 0 {
		a.readyWindow = time.Minute
	}
	a.usePatch.Store(true)
	var err error
	if a.mapper, err = mapping.New(cfg.Mapping); err != nil {
		return nil, err
	}
	if a.db, err = openDB(cfg.MySQL.DSN, cfg.Provisioning.Workers+4); err != nil {
		return nil, err
	}
	tables := drupal.Tables{Prefix: cfg.MySQL.TablePrefix}
	a.reader = drupal.NewReader(a.db, tables, a.mapper.Sources())
	onRetry := func(method string, status int) {
		a.metrics.observeRetry(method, status)
		if status == 0 || status >= 500 {
			a.markSCIMFail()
		}
	}
	setup, err := newSCIMSetup(cfg)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.overrides = setup.overrides
	if a.client, err = setup.client(a.log, 0, onRetry); err != nil {
		a.Close()
		return nil, err
	}
	if a.probe, err = setup.client(nil, 1, nil); err != nil {
		a.Close()
		return nil, err
	}
	if a.store, err = state.Open(cfg.State.Path, opts.StateLockTimeout); err != nil {
		a.Close()
		return nil, err
	}
	parked, err := a.store.Parked()
	if err != nil {
		a.Close()
		return nil, err
	}
	for _, p := range parked {
		a.parked.set(p.UID, true)
	}
	var guardStore *state.Store
	if !a.dryRun {
		guardStore = a.store
	}
	a.guard = newGuard(cfg.Provisioning.MaxDeletes, cfg.Provisioning.MaxDeletesWindow, guardStore, a.log)
	if opts.ApproveDeletes {
		a.guard.Approve()
	}
	a.released = a.guard.Released()
	a.metrics = newMetrics(a)
	if a.stream, err = binlog.Open(ctx, binlog.Config{
		DSN:       cfg.MySQL.DSN,
		ServerID:  cfg.MySQL.ServerID,
		Tables:    watchedTables(tables, a.mapper.Sources()),
		Heartbeat: cfg.MySQL.Heartbeat,
		Logger:    a.log,
		OnRowsEvent: func(table string) {
			a.metrics.binlogEvents.WithLabelValues(table).Inc()
		},
	}); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close releases the database pools and the state file.
func (a *Agent) Close() error {
	var errs []error
	if a.stream != nil {
		errs = append(errs, a.stream.Close())
	}
	if a.store != nil {
		errs = append(errs, a.store.Close())
	}
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	return errors.Join(errs...)
}

// openDB opens the pool the reader uses. Roles are read with
// GROUP_CONCAT, whose default limit (1 KiB) could cut a long role list.
func openDB(dsn string, maxConns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql.dsn: %w", err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["group_concat_max_len"] = "1048576"
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql.dsn: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}

// watchedTables lists the tables whose changes matter to the mapping.
// users_field_data counts only the columns the mapping reads, so logins
// (bare UPDATEs of login/access) and saves that change nothing mapped
// never reach a worker.
func watchedTables(t drupal.Tables, src drupal.Sources) []binlog.Table {
	cols := append([]string{"uid", "langcode", "default_langcode"}, src.FieldDataColumns...)
	tables := []binlog.Table{
		{Name: t.Users(), KeyColumn: "uid", Accounts: true},
		{Name: t.FieldData(), KeyColumn: "uid", Columns: cols},
	}
	if src.Roles {
		tables = append(tables, binlog.Table{Name: t.Roles(), KeyColumn: "entity_id"})
	}
	for _, f := range src.Fields {
		tables = append(tables, binlog.Table{Name: t.Field(f.Name), KeyColumn: "entity_id"})
	}
	return tables
}

// Store returns the agent's state store.
func (a *Agent) Store() *state.Store { return a.store }

// SavedPosition returns the binlog position last saved.
func (a *Agent) SavedPosition() binlog.Position {
	a.savedMu.Lock()
	defer a.savedMu.Unlock()
	return a.saved
}

// Run provisions until ctx is cancelled: on first start (no saved
// position) it notes the binlog position, provisions every user, then
// streams from the noted position. After ctx is cancelled it stops
// reading, lets in-flight reconciles finish (bounded by the shutdown
// timeout), saves the position and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.running.Store(false)
	a.started = time.Now().UTC()
	a.heartbeat.Store(time.Now().UnixNano())
	stopAdmin, err := a.startAdmin(ctx)
	if err != nil {
		return err
	}
	// The control socket and the admin listener answer until everything
	// else has stopped.
	defer stopAdmin()
	caps, _, err := a.client.Capabilities(ctx, a.overrides)
	if err != nil {
		if ctx.Err() != nil {
			a.log.Info(MsgAgentStop, zap.String("reason", "stopped before the SCIM server answered"))
			return nil // stopped while waiting for the server: nothing to save
		}
		return fmt.Errorf("read the SCIM server's ServiceProviderConfig: %w", err)
	}
	a.caps = caps
	a.usePatch.Store(caps.Patch)
	a.markSCIMOK()
	// runCtx ends with ctx, or when the stream stops for good: every loop
	// below stops with it. Ending it also closes the work queue, so a
	// binlog reader waiting for room in a full queue wakes up.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	defer context.AfterFunc(runCtx, a.work.Close)()
	var background sync.WaitGroup
	defer background.Wait()
	background.Add(1)
	go func() {
		defer background.Done()
		a.probeSCIM(runCtx)
	}()
	if a.driftInterval > 0 {
		background.Add(1)
		go func() {
			defer background.Done()
			a.runDriftRepairs(runCtx, a.driftInterval)
		}()
	}

	// Workers outlive ctx by up to the shutdown timeout, so a request in
	// flight at SIGTERM can finish and be recorded.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var workers sync.WaitGroup
	for i := 0; i < a.cfg.Provisioning.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			a.runWorker(workCtx)
		}()
	}
	for _, uid := range a.released {
		a.work.Requeue(uid, "approve-deletes")
	}
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		a.savePositions(runCtx)
	}()

	a.log.Info(MsgAgentStart, zap.String("version", buildinfo.Read().Short()), zap.Int("workers", a.cfg.Provisioning.Workers),
		zap.Bool("patch", caps.Patch), zap.Bool("dry_run", a.dryRun))
	streamErr := a.follow(runCtx)
	if streamErr != nil && ctx.Err() == nil {
		a.log.Error(MsgAgentStop, zap.String("reason", "the binlog stream stopped for good"), zap.Error(streamErr))
	}

	// Shut down: no new work, let running reconciles finish, then cut them.
	stopRun()
	a.work.Close()
	finished := make(chan struct{})
	go func() { workers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(a.shutdownTimeout):
		a.log.Warn(MsgAgentStop, zap.String("reason", "shutdown timeout: cancelling in-flight requests"))
		cancelWork()
		<-finished
	}
	<-saverDone
	if err := a.savePosition(); err != nil {
		a.log.Error(MsgAgentStop, zap.Error(err))
	}
	if streamErr != nil && ctx.Err() == nil {
		return streamErr
	}
	a.log.Info(MsgAgentStop, zap.String("position", a.SavedPosition().String()))
	return nil
}

// follow runs the binlog stream, with the full syncs of a first start and
// of a purged position, until ctx is done or a permanent error.
func (a *Agent) follow(ctx context.Context) error {
	var pos binlog.Position
	found, err := a.store.Meta(positionKey, &pos)
	if err != nil {
		return err
	}
	if found {
		a.savedMu.Lock()
		a.saved = pos
		a.savedMu.Unlock()
		a.metrics.observePosition(pos)
		a.syncDone.Store(true)
		a.requeueParked()
	} else {
		if pos, err = a.syncFromHere(ctx, "first start: no saved position"); err != nil {
			return err
		}
	}
	for {
		err := a.stream.Stream(ctx, pos, a.handleNotice)
		if ctx.Err() != nil {
			return nil
		}
		var reason string
		switch {
		case errors.Is(err, binlog.ErrPositionPurged):
			a.log.Error(MsgPositionPurged, zap.String("position", pos.String()), zap.Error(err))
			reason = "saved position purged from the server"
		case errors.Is(err, binlog.ErrUnknownColumns):
			// Events written before a schema change cannot be decoded
			// with today's column names (binlog_row_metadata is not
			// FULL): skip them and reconcile everyone instead.
			a.log.Error(MsgColumnsUnknown, zap.String("position", pos.String()), zap.Error(err))
			reason = "binlog events older than a schema change"
		case errors.Is(err, binlog.ErrResyncNeeded):
			// TRUNCATE, DROP or RENAME of a watched table, or an event
			// that will not decode: the binlog cannot name the users.
			a.log.Error(MsgResyncNeeded, zap.String("position", pos.String()), zap.Error(err))
			reason = "the binlog cannot tell which users changed"
		default:
			return err
		}
		if pos, err = a.syncFromHere(ctx, reason); err != nil {
			return err
		}
	}
}

// syncFromHere notes the current binlog position, provisions every user
// and saves the noted position: streaming from it then sees every change
// made during the sync (replays are harmless).
func (a *Agent) syncFromHere(ctx context.Context, reason string) (binlog.Position, error) {
	a.syncDone.Store(false)
	pos, err := a.stream.CurrentPosition(ctx)
	if err != nil {
		return pos, err
	}
	if err := a.FullSync(ctx, reason); err != nil {
		return pos, err
	}
	// Under savedMu, so the saver cannot write a stream position from
	// before the sync over the one noted for it.
	a.savedMu.Lock()
	defer a.savedMu.Unlock()
	a.work.Resync()
	if !a.dryRun {
		// Deletions the sync held are saved before the position that
		// will never name them again.
		if err := a.guard.Flush(); err != nil {
			return pos, err
		}
		if err := a.store.PutMeta(positionKey, pos); err != nil {
			return pos, err
		}
	}
	a.saved = pos
	a.metrics.observePosition(pos)
	a.syncDone.Store(true)
	return pos, nil
}

// handleNotice queues the uids of one committed transaction.
func (a *Agent) handleNotice(ctx context.Context, n binlog.Notice) error {
	uids := make([]uint32, 0, len(n.UIDs))
	for _, uid := range n.UIDs {
		if !a.cfg.Provisioning.Excluded(uid) {
			uids = append(uids, uid)
		}
	}
	pos := n.Pos
	a.metrics.transactions.Inc()
	a.metrics.enqueued.Add(float64(len(uids)))
	if a.work.Add(uids, &pos, n.Time, pos.String()) == nil {
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
	uids := make([]uint32, 0, len(parked))
	for _, p := range parked {
		uids = append(uids, p.UID)
	}
	if len(uids) > 0 {
		a.work.Add(uids, nil, time.Now(), "restart: parked")
	}
}

// runWorker reconciles uids until the workset closes. A reconcile that
// fails for a reason other than the user's own data (the database went
// away) is retried with backoff, holding the position.
func (a *Agent) runWorker(ctx context.Context) {
	for {
		uid, t, ok := a.work.Get()
		if !ok {
			return
		}
		handled := false
		var res Result
		for attempt := 1; ; attempt++ {
			var err error
			res, err = a.reconcile(ctx, uid, how{cause: t.cause, dry: a.dryRun, attempt: attempt})
			if err == nil {
				handled = res.Outcome != Held && res.Outcome != Waiting
				break
			}
			if ctx.Err() != nil {
				break
			}
			wait := retryDelay(attempt)
			a.log.Warn("reconcile.error", zap.Uint32("uid", uid), zap.String("binlog_pos", t.cause),
				zap.Int("attempt", attempt), zap.Int64("retry_in_ms", wait.Milliseconds()), zap.Error(err))
			a.work.Fail(uid, Result{UID: uid, Outcome: Failed, Detail: err.Error()})
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			if ctx.Err() != nil {
				break
			}
		}
		a.work.Done(uid, t, handled, res)
		if res.Outcome == Waiting {
			a.work.Retry(uid, t.cause)
		}
	}
}

// retryDelay is the backoff between attempts of a failed reconcile.
func retryDelay(attempt int) time.Duration {
	d := 500 * time.Millisecond << min(attempt-1, 7)
	return min(d, time.Minute)
}

// savePositions saves the safe position once a second until ctx is done.
func (a *Agent) savePositions(ctx context.Context) {
	every(ctx, time.Second, func() {
		a.heartbeat.Store(time.Now().UnixNano())
		if err := a.savePosition(); err != nil {
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

// savePosition saves the safe position if it moved.
func (a *Agent) savePosition() error {
	a.savedMu.Lock()
	defer a.savedMu.Unlock()
	pos, _, ok := a.work.Safe()
	// The guard's held uids first, read after the position: a position
	// saved past a held deletion finds it in the guard's state.
	if err := a.guard.Flush(); err != nil {
		return err
	}
	if !ok || a.dryRun || pos == a.saved {
		return nil
	}
	if err := a.store.PutMeta(positionKey, pos); err != nil {
		return err
	}
	a.saved = pos
	a.metrics.observePosition(pos)
	a.log.Debug(MsgPositionSaved, zap.String("binlog_pos", pos.String()), zap.String("gtid", pos.GTID))
	return nil
}

// Reader returns the agent's Drupal reader.
func (a *Agent) Reader() *drupal.Reader { return a.reader }

// OpenReader opens a Drupal reader of its own, for commands that pick
// users while a running agent does the work. Call the returned function
// to close it.
func OpenReader(cfg *config.Config) (*drupal.Reader, func() error, error) {
	m, err := mapping.New(cfg.Mapping)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDB(cfg.MySQL.DSN, 2)
	if err != nil {
		return nil, nil, err
	}
	return drupal.NewReader(db, drupal.Tables{Prefix: cfg.MySQL.TablePrefix}, m.Sources()), db.Close, nil
}

// ReconcileAll reconciles uids now, without Run (for the sync and retry
// commands when no agent is running), with the configured number of
// workers, and returns the results in the order asked. It fails only when
// the reconciles cannot run at all; a user's own failure is its Result.
func (a *Agent) ReconcileAll(ctx context.Context, uids []uint32, dryRun bool) ([]Result, error) {
	caps, _, err := a.client.Capabilities(ctx, a.overrides)
	if err != nil {
		return nil, fmt.Errorf("read the SCIM server's ServiceProviderConfig: %w", err)
	}
	a.caps = caps
	a.usePatch.Store(caps.Patch)
	results := make([]Result, len(uids))
	errs := make([]error, len(uids))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < a.cfg.Provisioning.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], errs[i] = a.reconcile(ctx, uids[i], how{cause: "manual", dry: dryRun, verify: true})
			}
		}()
	}
	seen := map[uint32]bool{}
	for i, uid := range uids {
		if seen[uid] {
			results[i] = Result{UID: uid, Outcome: Skipped, Detail: "named twice"}
			continue
		}
		seen[uid] = true
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	// A create that waited for another uid of the list to release its
	// userName (a deletion done meanwhile) is tried once more.
	for i, res := range results {
		if res.Outcome == Waiting && ctx.Err() == nil {
			results[i], errs[i] = a.reconcile(ctx, uids[i], how{cause: "manual", dry: dryRun, verify: true})
		}
	}
	// No saver runs here: what the guard held, sent or dropped is saved
	// now, or held deletions would be lost with this process.
	errs = append(errs, a.guard.Flush())
	if err := errors.Join(errs...); err != nil {
		return results, err
	}
	return results, ctx.Err()
}
