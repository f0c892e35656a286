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
//	binlog.Streamer ──Notice──▶ work (keyed queue, one key per uid) ──▶ pool of workers ──▶ users.reconcile ──▶ SCIM
//	                                 │ watermark: transactions done                         ▲
//	                                 └── safe position ──▶ checkpoint (once a second)       │
//	full sync, drift repair, sync/retry requests ──▶ work.ask (the same queue) ────────────┘
//
// One file per concept: agent.go wires the parts and run.go is their
// lifecycle; work.go is the queue (on internal/workqueue) and its worker
// pool; user*.go reconcile one user; checkpoint.go, health.go, guard.go,
// metrics.go and status.go own what their names say; sync.go and drift.go
// walk everyone; admin.go and control.go serve the endpoints.
package agent

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
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

// withDefaults fills what o leaves out.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.ShutdownTimeout = cmp.Or(o.ShutdownTimeout, 10*time.Second)
	o.ReadyWindow = cmp.Or(o.ReadyWindow, time.Minute)
	o.ReconcileInterval = cmp.Or(o.ReconcileInterval, o.Config.Provisioning.ReconcileInterval)
	o.MaxPendingTransactions = cmp.Or(o.MaxPendingTransactions, 100_000)
	return o
}

// Agent is an open pipeline: the parts below, wired. Create one with
// Open, start it with Run (or use ReconcileAll without it), and Close it
// after.
type Agent struct {
	cfg     *config.Config
	opts    Options
	log     *zap.Logger
	db      *sql.DB
	store   *state.Store
	stream  *binlog.Streamer
	scim    *scimServer
	kinds   reconcilers
	work    *work
	guard   *guard
	health  *scimHealth
	saved   *checkpoint
	metrics *metrics
	tally   *tally
	life    life
}

// Open connects to the database, the SCIM server's client and the state
// file. It does not run the start-up checks (see Check).
func Open(ctx context.Context, opts Options) (_ *Agent, err error) {
	opts = opts.withDefaults()
	cfg := opts.Config
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger, work: newWork(opts.MaxPendingTransactions),
		health: newSCIMHealth(opts.ReadyWindow), tally: &tally{}}
	a.metrics = newMetrics(a)
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	mapper, scope, sources, err := readSources(cfg)
	if err != nil {
		return nil, err
	}
	if a.db, err = openDB(cfg.MySQL.DSN, cfg.Provisioning.Workers+4); err != nil {
		return nil, err
	}
	if a.scim, err = openSCIM(cfg, a.log, a.metrics, a.health); err != nil {
		return nil, err
	}
	if a.store, err = state.Open(cfg.State.Path, opts.StateLockTimeout); err != nil {
		return nil, err
	}
	if err := a.tally.loadParked(a.store); err != nil {
		return nil, err
	}
	a.guard = openGuard(cfg.Provisioning, a.store, opts, a.log)
	a.saved = &checkpoint{store: a.store, dryRun: opts.DryRun, before: a.guard.Flush, observe: a.metrics.observePosition, log: a.log}
	tables := drupal.Tables{Prefix: cfg.MySQL.TablePrefix}
	reader := drupal.NewReader(a.db, tables, sources)
	a.kinds.users = &users{prov: cfg.Provisioning, log: a.log, mapper: mapper, scope: scope, reader: reader,
		pages: reader.WithLockPatience(pageLockWait), store: a.store, scim: a.scim, guard: a.guard, parked: &a.tally.parked, noteCall: a.noteCall,
		requeue:    func(uid uint32, cause string) { a.work.requeue(userKey(uid), cause) },
		membership: a.queueRolesOf}
	a.kinds.groups = &groups{cfg: cfg.Groups, prov: cfg.Provisioning, scope: scope, log: a.log, reader: reader, store: a.store,
		scim: a.scim, guard: a.guard, parked: &a.tally.parked, noteCall: a.noteCall}
	a.stream, err = binlog.Open(ctx, binlog.Config{
		DSN:         cfg.MySQL.DSN,
		ServerID:    cfg.MySQL.ServerID,
		Tables:      watchedTables(tables, sources, cfg.Groups.Enabled),
		Heartbeat:   cfg.MySQL.Heartbeat,
		Logger:      a.log,
		OnRowsEvent: a.metrics.observeRowsEvent,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// openSCIM builds the SCIM server's clients: one that retries for as
// long as it takes, its retries counted and its failures noted, and one of
// a single attempt for readiness probes.
func openSCIM(cfg *config.Config, log *zap.Logger, m *metrics, h *scimHealth) (*scimServer, error) {
	setup, err := newSCIMSetup(cfg)
	if err != nil {
		return nil, err
	}
	onRetry := func(method string, status int, err error) {
		m.observeRetry(method, status)
		h.retried(status, err)
	}
	s := &scimServer{overrides: setup.overrides}
	if s.client, err = setup.client(log, 0, onRetry); err != nil {
		return nil, err
	}
	if s.probe, err = setup.client(nil, 1, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// openGuard opens the deletion guard: its state is kept in store unless
// this is a dry run.
func openGuard(p config.Provisioning, store *state.Store, opts Options, log *zap.Logger) *guard {
	if opts.DryRun {
		store = nil
	}
	g := newGuard(p.MaxDeletes, p.MaxDeletesWindow, store, log)
	if opts.ApproveDeletes {
		g.Approve()
	}
	return g
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

// reconcilers reconcile each kind of key.
type reconcilers struct {
	users  *users
	groups *groups
}

// readSources returns what the agent reads of each user: the mapping,
// provisioning.scope, and the union of their sources, with the roles
// when groups are on (a user's roles say which groups to queue once it
// exists). The reader loads exactly these, and the binlog watches exactly
// these.
func readSources(cfg *config.Config) (*mapping.Mapper, *mapping.Scope, drupal.Sources, error) {
	mapper, err := mapping.New(cfg.Mapping)
	if err != nil {
		return nil, nil, drupal.Sources{}, err
	}
	scope, err := mapping.NewScope(cfg.Provisioning.ScopeClauses())
	if err != nil {
		return nil, nil, drupal.Sources{}, fmt.Errorf("provisioning.%w", err)
	}
	sources := mapper.Sources().Merge(scope.Sources())
	sources.Roles = sources.Roles || cfg.Groups.Enabled
	return mapper, scope, sources, nil
}

// queueRolesOf queues the groups of a user whose membership may have
// changed: just created or adopted (their members wait for its account,
// see groupRun.present), or gone out of or back into provisioning.scope.
// Only a running agent does: a sync without one reconciles the groups it
// is asked for, after its users.
func (a *Agent) queueRolesOf(uid uint32, roles []string) {
	if !a.life.running.Load() {
		return
	}
	for _, role := range roles {
		if a.cfg.Groups.Selects(role) {
			a.work.requeue(roleKey(role), fmt.Sprintf("uid %d provisioned", uid))
		}
	}
}

// noteCall records one SCIM call's answer: its metrics and what it says
// of the server's health.
func (a *Agent) noteCall(method string, cr scimclient.Result, err error) {
	a.metrics.observeRequest(method, cr.Status, cr.Duration)
	a.health.note(cr, err)
}

// openDB opens a pool the reader uses. Roles are read with GROUP_CONCAT,
// whose default limit (1 KiB) could cut a long role list.
//
// A query's arguments are put into its text by the driver
// (interpolateParams), so each query is one round trip: a prepared
// statement is a prepare, an execute and a close, two round trips and a
// statement for the server to parse and keep. A DSN that sets
// interpolateParams keeps its choice, and a collation the driver cannot
// escape for (GBK, SJIS and the like; Drupal uses utf8mb4) keeps
// prepared statements.
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
	if !dsnSets(dsn, "interpolateParams") {
		interpolating := cfg.Clone()
		interpolating.InterpolateParams = true
		if c, err := mysql.NewConnector(interpolating); err == nil {
			connector = c
		}
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}

// dsnSets reports whether dsn sets the parameter name
// (user:password@tcp(host)/db?name=value&...).
func dsnSets(dsn, name string) bool {
	_, query, ok := strings.Cut(dsn[strings.LastIndex(dsn, "/")+1:], "?")
	if !ok {
		return false
	}
	for param := range strings.SplitSeq(query, "&") {
		if key, _, _ := strings.Cut(param, "="); key == name {
			return true
		}
	}
	return false
}

// watchedTables lists the tables whose changes matter to the mapping.
// users_field_data counts only the columns the mapping reads, so logins
// (bare UPDATEs of login/access) and saves that change nothing mapped
// never reach a worker.
func watchedTables(t drupal.Tables, src drupal.Sources, groups bool) []binlog.Table {
	cols := append([]string{"uid", "langcode", "default_langcode"}, src.FieldDataColumns...)
	tables := []binlog.Table{
		{Name: t.Users(), KeyColumn: "uid"},
		{Name: t.FieldData(), KeyColumn: "uid", Columns: cols},
	}
	switch {
	case groups:
		// A role's membership rows name the role, and its config row
		// says its label; every other config object is skipped.
		tables = append(tables, binlog.Table{Name: t.Roles(), KeyColumn: "entity_id", RoleColumn: "roles_target_id"},
			binlog.Table{Name: t.Config(), RoleConfig: true})
	case src.Roles:
		tables = append(tables, binlog.Table{Name: t.Roles(), KeyColumn: "entity_id"})
	}
	for _, f := range src.Fields {
		tables = append(tables, binlog.Table{Name: t.Field(f.Name), KeyColumn: "entity_id"})
	}
	return tables
}

// Store returns the agent's state store.
func (a *Agent) Store() *state.Store { return a.store }

// Reader returns the agent's Drupal reader.
func (a *Agent) Reader() *drupal.Reader { return a.kinds.users.reader }

// SavedPosition returns the binlog position last saved.
func (a *Agent) SavedPosition() binlog.Position { return a.saved.position() }

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
