package binlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	mysqldrv "github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// DefaultHeartbeat is the heartbeat period when Config.Heartbeat is zero.
const DefaultHeartbeat = 5 * time.Second

// eventCacheCount is how many decoded events the replication library may
// buffer ahead of the consumer. Its default (10240) can hold a lot of
// memory with big rows; a few hundred keep the pipe full.
const eventCacheCount = 256

// Streamer reads the binary log of one server for one Drupal schema. Open
// one with Open; Stream may be called again after it returns (e.g. from a
// new position after ErrPositionPurged), but not concurrently.
type Streamer struct {
	cfg    Config
	log    *zap.Logger
	schema string
	dsn    *mysqldrv.Config
	db     *sql.DB
	flavor string // gomysql.MariaDBFlavor or gomysql.MySQLFlavor
	// version is the server's VERSION().
	version string
	// names is how the server compares database and table names
	// (@@lower_case_table_names, read once by Open).
	names nameRule
	cols  *schemaColumns

	streaming         atomic.Bool
	gtidUnknownLogged bool // owned by the running Stream
	connected         atomic.Bool
	lastEvent         atomic.Int64 // unix nanoseconds
	lastHeartbeat     atomic.Int64

	// closeCtx is cancelled by Close, which cancels a running Stream.
	closeCtx context.Context
	mu       sync.Mutex // guards closing against a Stream starting
	closing  func()     // cancels closeCtx
	isClosed bool
	running  sync.WaitGroup
}

// Open validates cfg, opens a connection pool for status and
// information_schema queries, and detects the server's flavor (MariaDB or
// MySQL) from VERSION(). It fails when the server cannot be reached.
func Open(ctx context.Context, cfg Config) (*Streamer, error) {
	cfg, dsn, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if dsn.Timeout == 0 {
		dsn.Timeout = 10 * time.Second
	}
	connector, err := mysqldrv.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("binlog: DSN: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Streamer{
		cfg:    cfg,
		log:    log,
		schema: dsn.DBName,
		dsn:    dsn,
		db:     db,
	}
	s.closeCtx, s.closing = context.WithCancel(context.Background())
	if err := s.detectServer(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.cols = newSchemaColumns(db, s.schema, log)
	return s, nil
}

// checkConfig validates cfg (a DSN naming a database, a server id, the
// watched tables each named once with a key column, the heartbeat) and
// returns it with the heartbeat's default and a copy of the tables, and
// the parsed DSN.
func checkConfig(cfg Config) (Config, *mysqldrv.Config, error) {
	dsn, err := mysqldrv.ParseDSN(cfg.DSN)
	if err != nil {
		return cfg, nil, fmt.Errorf("binlog: parse DSN: %w", err)
	}
	if dsn.DBName == "" {
		return cfg, nil, errors.New("binlog: the DSN names no database: put Drupal's database name after the slash")
	}
	if cfg.ServerID == 0 {
		return cfg, nil, errors.New("binlog: server id must be non-zero (and unique among the server's replicas)")
	}
	if len(cfg.Tables) == 0 {
		return cfg, nil, errors.New("binlog: no table to watch")
	}
	seen := map[string]bool{}
	for _, t := range cfg.Tables {
		switch {
		case t.Name == "":
			return cfg, nil, errors.New("binlog: a watched table has no name")
		case t.KeyColumn == "" && !t.RoleConfig:
			return cfg, nil, fmt.Errorf("binlog: table %s: no key column", t.Name)
		case seen[t.Name]:
			return cfg, nil, fmt.Errorf("binlog: table %s listed twice", t.Name)
		}
		seen[t.Name] = true
	}
	switch {
	case cfg.Heartbeat == 0:
		cfg.Heartbeat = DefaultHeartbeat
	case cfg.Heartbeat < time.Millisecond:
		return cfg, nil, fmt.Errorf("binlog: heartbeat %s too short", cfg.Heartbeat)
	}
	cfg.Tables = append([]Table(nil), cfg.Tables...)
	return cfg, dsn, nil
}

// detectServer reads the server's VERSION() (hence its flavor) and
// lower_case_table_names, and stores the schema's and the watched tables'
// names the way the server stores and logs them, failing when two tables
// are then one.
func (s *Streamer) detectServer(ctx context.Context) error {
	var lowerCase int
	if err := s.db.QueryRowContext(ctx, "SELECT VERSION(), @@lower_case_table_names").Scan(&s.version, &lowerCase); err != nil {
		return fmt.Errorf("binlog: connect to %s@%s: %w", s.dsn.User, s.dsn.Addr, err)
	}
	s.flavor = gomysql.MySQLFlavor
	if strings.Contains(strings.ToLower(s.version), "mariadb") {
		s.flavor = gomysql.MariaDBFlavor
	}
	// Names as the server stores and logs them: in lower case with
	// lower_case_table_names=1, whatever case the DSN and the prefix use.
	s.names = nameRuleFor(lowerCase)
	s.schema = s.names.stored(s.schema)
	folded := map[string]bool{}
	for i := range s.cfg.Tables {
		t := &s.cfg.Tables[i]
		t.Name = s.names.stored(t.Name)
		if folded[s.names.key(t.Name)] {
			return fmt.Errorf("binlog: table %s listed twice (lower_case_table_names=%d: names differing only in case are one table)", t.Name, lowerCase)
		}
		folded[s.names.key(t.Name)] = true
	}
	return nil
}

// LowerCaseTableNames returns the server's lower_case_table_names, read
// by Open: 0 means database and table names compare exactly, 1 and 2
// case-insensitively (1 also stores and logs them in lower case). The
// stream compares names the same way.
func (s *Streamer) LowerCaseTableNames() int { return s.names.setting }

// Flavor returns "mariadb" or "mysql", as detected by Open.
func (s *Streamer) Flavor() string { return s.flavor }

// Close stops a running Stream (which then returns context.Canceled),
// waits for it, and closes the connection pool. Do not call it from the
// handle function of a Stream.
func (s *Streamer) Close() error {
	s.mu.Lock()
	if s.isClosed {
		s.mu.Unlock()
		return nil
	}
	s.isClosed = true
	s.closing()
	s.mu.Unlock()
	s.running.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("binlog: close: %w", err)
	}
	return nil
}

// Status returns the stream's health: whether a dump connection is up and
// when the last event and heartbeat arrived.
func (s *Streamer) Status() Status {
	st := Status{Connected: s.connected.Load()}
	if n := s.lastEvent.Load(); n != 0 {
		st.LastEvent = time.Unix(0, n)
	}
	if n := s.lastHeartbeat.Load(); n != 0 {
		st.LastHeartbeat = time.Unix(0, n)
	}
	return st
}

// CurrentPosition returns the server's current binlog position (SHOW MASTER
// STATUS, or SHOW BINARY LOG STATUS on MySQL 8.4), with the GTID set:
// @@gtid_binlog_pos on MariaDB, Executed_Gtid_Set on MySQL when
// gtid_mode=ON. The GTID is read before the file position so that it is
// never ahead of data read afterwards: streaming from it may repeat a
// transaction, never skip one.
func (s *Streamer) CurrentPosition(ctx context.Context) (Position, error) {
	var pos Position
	if s.flavor == gomysql.MariaDBFlavor {
		var gtid sql.NullString
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&gtid); err != nil {
			return pos, fmt.Errorf("binlog: read @@gtid_binlog_pos: %w", err)
		}
		pos.GTID = gtid.String
	}
	status, err := s.masterStatus(ctx)
	if err != nil {
		return Position{}, err
	}
	pos.File = status["File"]
	off, err := strconv.ParseUint(status["Position"], 10, 32)
	if err != nil {
		return Position{}, fmt.Errorf("binlog: binlog status: position %q: %w", status["Position"], err)
	}
	pos.Offset = uint32(off)
	if s.flavor == gomysql.MySQLFlavor {
		var mode sql.NullString
		if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_mode").Scan(&mode); err == nil && strings.EqualFold(mode.String, "ON") {
			pos.GTID = strings.Join(strings.Fields(status["Executed_Gtid_Set"]), "")
		}
	}
	return pos, nil
}

// masterStatus runs SHOW MASTER STATUS (SHOW BINARY LOG STATUS where MySQL
// 8.4 removed the former) and returns its row by column name.
func (s *Streamer) masterStatus(ctx context.Context) (map[string]string, error) {
	queries := []string{"SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"}
	if s.flavor == gomysql.MySQLFlavor {
		queries[0], queries[1] = queries[1], queries[0]
	}
	var firstErr error
	for _, q := range queries {
		row, err := s.queryRow(ctx, q)
		if err == nil {
			if row == nil {
				return nil, errors.New("binlog: the server's binary log is off (SHOW MASTER STATUS returns nothing): start it with log_bin")
			}
			return row, nil
		}
		var me *mysqldrv.MySQLError
		if !errors.As(err, &me) || me.Number != 1064 {
			return nil, fmt.Errorf("binlog: %s: %w", q, err)
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("binlog: %s: %w", q, err)
		}
	}
	return nil, firstErr
}

func (s *Streamer) queryRow(ctx context.Context, q string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		out[c] = vals[i].String
	}
	return out, rows.Err()
}

// handlerError marks an error returned by the caller's handle function.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// permanentError marks an error that reconnecting cannot cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Server error numbers that stop the stream for good.
const (
	erDBAccessDenied        = 1044
	erAccessDenied          = 1045
	erSpecificAccessDenied  = 1227
	erFatalReadingBinlog    = 1236 // what a dump thread sends for a missing position
	erMasterPurgedGTIDs     = 1789 // MySQL: GTIDs the replica needs were purged
	erGTIDNotFoundInBinlog  = 1945 // MariaDB: GTID not in the master's binlog
	erGTIDStartFromHole     = 1951
	erGTIDNotFoundInBinlog2 = 1955
)

// classify turns an error of one connection attempt into what Stream
// returns; nil means retry.
func classify(err error) error {
	var he *handlerError
	if errors.As(err, &he) {
		return err
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return pe.err
	}
	if errors.Is(err, ErrUnknownColumns) {
		return err
	}
	var me *gomysql.MyError
	if errors.As(err, &me) {
		switch me.Code {
		case erFatalReadingBinlog, erMasterPurgedGTIDs, erGTIDNotFoundInBinlog, erGTIDStartFromHole, erGTIDNotFoundInBinlog2:
			return fmt.Errorf("%w: server said: %s", ErrPositionPurged, me.Error())
		case erAccessDenied, erDBAccessDenied, erSpecificAccessDenied:
			return fmt.Errorf("binlog: the server refused the replication connection (grant REPLICATION SLAVE and REPLICATION CLIENT): %w", me)
		}
	}
	return nil
}

// Stream delivers every committed transaction after from, in binlog order,
// to handle, one at a time, including transactions that touched no watched
// row (their positions are worth saving too).
//
// It returns only when ctx is done (ctx.Err()), when handle returns an
// error (wrapped), or on a permanent error: ErrPositionPurged (wrapped)
// when the server no longer has from, ErrUnknownColumns, or refused grants.
// Network errors, a silent link (not a byte, not even a heartbeat, for
// 3*Heartbeat; a slow link that keeps delivering is not silent)
// and server restarts are retried forever with exponential backoff, each
// logged as MsgReconnect, resuming after the last transaction handed to
// handle: never from inside a transaction, so no transaction is delivered
// half or twice.
//
// from must not be zero: call CurrentPosition for a first start. When
// from.GTID is set the stream starts from the GTID set (which survives a
// fail-over), else from File:Offset; on MariaDB the notices carry GTIDs
// either way (BINLOG_GTID_POS tells the set at a file position).
//
// handle runs on Stream's goroutine, one notice at a time; while it runs,
// the replication library buffers a few hundred events ahead. A handle
// call that blocks while that buffer is full stops reading (no read waits,
// so no idle timeout runs) and the server's sending waits; a server that
// gives up on it (net_write_timeout, 60 s by default) costs a reconnect
// (logged), never a lost or repeated transaction.
func (s *Streamer) Stream(ctx context.Context, from Position, handle func(context.Context, Notice) error) (err error) {
	if handle == nil {
		return errors.New("binlog: Stream needs a handle function")
	}
	if from.IsZero() {
		return errors.New("binlog: Stream needs a start position: call CurrentPosition for a first start")
	}
	if from.GTID == "" && from.File == "" {
		return fmt.Errorf("binlog: start position %s names no file", from)
	}
	if !s.streaming.CompareAndSwap(false, true) {
		return errors.New("binlog: Stream is already running on this Streamer")
	}
	defer s.streaming.Store(false)
	s.mu.Lock()
	if s.isClosed {
		s.mu.Unlock()
		return fmt.Errorf("binlog: Stream on a closed Streamer: %w", context.Canceled)
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()
	s.cols.reset()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closeCtx, cancel)
	defer stop()

	if from.GTID != "" {
		if _, err := gomysql.ParseGTIDSet(s.flavor, from.GTID); err != nil {
			return fmt.Errorf("binlog: start position %s: GTID set: %w", from, err)
		}
	}
	pos := from
	defer func() {
		s.log.Info(MsgStopped, zap.String("position", pos.String()), zap.NamedError("reason", err))
	}()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	bo.MaxElapsedTime = 0 // forever
	bo.Reset()
	attempt := 0
	for {
		progressed, err := s.streamOnce(ctx, &pos, handle)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if final := classify(err); final != nil {
			var he *handlerError
			if errors.As(final, &he) {
				return fmt.Errorf("binlog: handle transaction after %s: %w", pos, he.err)
			}
			return fmt.Errorf("binlog: stream from %s: %w", pos, final)
		}
		if progressed {
			bo.Reset()
			attempt = 0
		}
		attempt++
		wait := bo.NextBackOff()
		s.log.Warn(MsgReconnect, zap.Error(err), zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.String("position", pos.String()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// streamOnce runs one dump connection from *pos until an error, advancing
// *pos after each transaction handed to handle. progressed reports whether
// the connection got anywhere (a transaction delivered or a heartbeat
// received), which resets the reconnect backoff.
func (s *Streamer) streamOnce(ctx context.Context, pos *Position, handle func(context.Context, Notice) error) (progressed bool, err error) {
	asm := newAssembler(s.schema, s.cfg.Tables, s.names, s.cols, s.cfg.OnRowsEvent, s.log)
	asm.file = pos.File
	var start gomysql.GTIDSet
	if pos.GTID != "" {
		if start, err = gomysql.ParseGTIDSet(s.flavor, pos.GTID); err != nil {
			return false, &permanentError{fmt.Errorf("GTID set %q: %w", pos.GTID, err)}
		}
		asm.gset = start.Clone()
	} else if s.flavor == gomysql.MariaDBFlavor {
		// A file position only: MariaDB can tell which GTID set it stands
		// for, so notices carry GTIDs from the first one on.
		asm.gset = s.gtidAt(ctx, *pos)
	}
	if asm.gset == nil && !s.gtidUnknownLogged {
		s.gtidUnknownLogged = true
		s.log.Info(MsgGTIDUnknown, zap.String("position", pos.String()), zap.String("flavor", s.flavor))
	}

	syncer := replication.NewBinlogSyncer(s.syncerConfig(ctx, asm))
	defer func() {
		syncer.Close()
		s.connected.Store(false)
	}()
	var stream *replication.BinlogStreamer
	if start != nil {
		stream, err = syncer.StartSyncGTID(start)
	} else {
		stream, err = syncer.StartSync(gomysql.Position{Name: pos.File, Pos: pos.Offset})
	}
	if err != nil {
		return false, fmt.Errorf("start binlog dump from %s: %w", pos, err)
	}
	s.connected.Store(true)
	s.log.Info(MsgConnected, zap.String("position", pos.String()), zap.String("flavor", s.flavor),
		zap.String("server", s.dsn.Addr), zap.String("version", s.version))

	for {
		ev, err := stream.GetEvent(ctx)
		if err != nil {
			if ue := undecodable(pos, err); ue != nil {
				return progressed, &permanentError{ue}
			}
			return progressed, fmt.Errorf("read binlog event: %w", err)
		}
		now := time.Now().UnixNano()
		if _, ok := ev.Event.(*replication.HeartbeatEvent); ok {
			s.lastHeartbeat.Store(now)
			progressed = true
			continue
		}
		s.lastEvent.Store(now)
		n, err := asm.event(ctx, ev)
		if err != nil {
			return progressed, err
		}
		if n == nil {
			continue
		}
		if err := handle(ctx, *n); err != nil {
			return true, &handlerError{err}
		}
		progressed = true
		*pos = n.Pos
	}
}

// undecodable turns the replication library's error for an event it
// could not parse into ErrResyncNeeded, or returns nil for any other
// error. The library's own message (EventError.Error) quotes the raw
// event, rows and all (a password hash among them): only the header's
// place and type and the cause, cut before any data, are kept.
func undecodable(after *Position, err error) error {
	var ee *replication.EventError
	if !errors.As(err, &ee) {
		return nil
	}
	where := "after " + after.String()
	if ee.Header != nil {
		where = fmt.Sprintf("ending at offset %d (%s), %s", ee.Header.LogPos, ee.Header.EventType, where)
	}
	return fmt.Errorf("%w: the event %s does not decode: %s", ErrResyncNeeded, where, withoutRowData(ee.Err))
}

// gtidAt asks MariaDB which GTID position a file position stands for
// (BINLOG_GTID_POS). nil means unknown.
func (s *Streamer) gtidAt(ctx context.Context, pos Position) gomysql.GTIDSet {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var g sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", pos.File, pos.Offset).Scan(&g)
	if err != nil || !g.Valid {
		s.log.Debug(MsgGTIDUnknown, zap.String("position", pos.String()), zap.Error(err))
		return nil
	}
	set, err := gomysql.ParseMariadbGTIDSet(g.String)
	if err != nil {
		s.log.Debug(MsgGTIDUnknown, zap.String("position", pos.String()), zap.Error(err))
		return nil
	}
	return set
}

// syncerConfig configures the replication library for one connection:
// its own retry is off (this package reconnects from transaction
// boundaries), heartbeats and an idle timeout on the connection (no byte
// for 3*Heartbeat; see idleConn) detect a dead link, and only watched
// tables' rows are decoded.
func (s *Streamer) syncerConfig(ctx context.Context, asm *assembler) replication.BinlogSyncerConfig {
	host, port := s.dsn.Addr, uint16(0)
	if s.dsn.Net != "unix" {
		if h, p, err := net.SplitHostPort(s.dsn.Addr); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				host, port = h, uint16(n)
			}
		}
	}
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return replication.BinlogSyncerConfig{
		ServerID:        s.cfg.ServerID,
		Flavor:          s.flavor,
		Host:            host,
		Port:            port,
		User:            s.dsn.User,
		Password:        s.dsn.Passwd,
		TLSConfig:       s.dsn.TLS,
		Localhost:       "scim-agent",
		HeartbeatPeriod: s.cfg.Heartbeat,
		// Off: the library's ReadTimeout bounds each read of 16 KiB and
		// each packet, which a slow link delivering a big event misses
		// while still alive. The connection's idle timeout counts silence
		// only.
		ReadTimeout:         0,
		DisableRetrySync:    true,
		EventCacheCount:     eventCacheCount,
		RowsEventDecodeFunc: asm.decodeRows,
		// MariaDB 11.4+ writes end_log_pos 0 on events inside a
		// transaction; this recomputes them (and asks for the annotate
		// events needed to do so exactly).
		FillZeroLogPos: s.flavor == gomysql.MariaDBFlavor,
		Logger:         slog.New(&slogToZap{log: s.log}),
		// Dials give up when the stream is cancelled, so that closing the
		// syncer never waits on an unreachable server. The connection
		// fails a read only after 3 heartbeats of silence.
		Dialer: func(dctx context.Context, network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithCancel(dctx)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			c, err := dialer.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newIdleConn(c, 3*s.cfg.Heartbeat), nil
		},
	}
}

// slogToZap passes the replication library's slog lines to zap at debug
// level under MsgDriver: they repeat what this package logs itself.
type slogToZap struct {
	log   *zap.Logger
	attrs []zap.Field
}

func (h *slogToZap) Enabled(context.Context, slog.Level) bool {
	return h.log.Core().Enabled(zap.DebugLevel)
}

func (h *slogToZap) Handle(_ context.Context, r slog.Record) error {
	fields := make([]zap.Field, 0, 3+len(h.attrs)+r.NumAttrs())
	// The library's own level and attributes go under their own keys, so
	// they can never clash with ours (ts, level, msg).
	fields = append(fields, zap.String("detail", r.Message), zap.String("driver_level", r.Level.String()),
		zap.Namespace("driver"))
	fields = append(fields, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, slogField(a))
		return true
	})
	h.log.Debug(MsgDriver, fields...)
	return nil
}

func (h *slogToZap) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &slogToZap{log: h.log, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range attrs {
		n.attrs = append(n.attrs, slogField(a))
	}
	return n
}

func (h *slogToZap) WithGroup(string) slog.Handler { return h }

// slogField converts an attribute to a string field. The library's
// configuration dump is left out: it is big and says nothing new.
func slogField(a slog.Attr) zap.Field {
	if a.Key == "config" {
		return zap.Skip()
	}
	return zap.String(a.Key, a.Value.String())
}
