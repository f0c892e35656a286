// Package testdb starts private MariaDB servers with the binary log on, for
// tests and the demo.
//
// A Server lives in its own temporary directory, listens on a free loopback
// port and is started with --no-defaults, so it never reads or touches a
// server that is already running on the machine. Each test package shares one
// Server (see Main) and asks it for fresh databases holding Drupal's user
// tables (see Server.NewDatabase), so tests stay isolated without paying the
// start-up cost twice.
package testdb

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DrupalSchema is the SQL that creates Drupal 10/11's user tables, exactly
// as Drupal renders them on MySQL/MariaDB. Table names carry no prefix.
//
//go:embed drupal-schema.sql
var DrupalSchema string

// Options changes how a Server is started. The zero value starts a server
// fit for the agent: binary log on, binlog_format=ROW,
// binlog_row_metadata=FULL, server_id=1.
type Options struct {
	// ExtraArgs are appended to mariadbd's command line, after the defaults,
	// so they override them (e.g. "--binlog-format=MIXED").
	ExtraArgs []string
	// NoBinlog starts the server without --log-bin.
	NoBinlog bool
}

// Server is a running private mariadbd.
type Server struct {
	// Addr is host:port of the server's TCP listener on 127.0.0.1.
	Addr string
	// Dir is the temporary directory holding the data directory, socket
	// and error log. It is removed by Stop.
	Dir string

	cmd    *exec.Cmd
	exited chan struct{}
	root   *sql.DB
	dbSeq  atomic.Int64
}

// ErrNoMariaDB is returned by Start when mariadbd or mariadb-install-db
// cannot be found.
var ErrNoMariaDB = errors.New("mariadbd not found: install Debian's mariadb-server (make test does it: apt-get install -y mariadb-server)")

// findBinary looks for name in PATH and in the directories Debian installs
// MariaDB into, which are not always in a non-root PATH.
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNoMariaDB)
}

// Start installs a fresh data directory under a new temporary directory and
// starts mariadbd on a free loopback port. It returns once the server
// accepts connections as root over TCP.
func Start(ctx context.Context, opts Options) (*Server, error) {
	mariadbd, err := findBinary("mariadbd")
	if err != nil {
		return nil, err
	}
	installDB, err := findBinary("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "scim-agent-mariadb-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	s := &Server{Dir: dir, exited: make(chan struct{})}
	if err := s.start(ctx, mariadbd, installDB, opts); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// start installs the data directory, starts mariadbd on a free loopback
// port and waits until it accepts connections as root.
func (s *Server) start(ctx context.Context, mariadbd, installDB string, opts Options) error {
	dataDir := filepath.Join(s.Dir, "data")
	// A private tmpdir: mariadbd deletes every #sql* file in its tmpdir at
	// start-up, which would break another server's mariadb-install-db
	// running in a shared /tmp at the same moment.
	tmpDir := filepath.Join(s.Dir, "tmp")
	if err := os.Mkdir(tmpDir, 0o700); err != nil {
		return err
	}
	if err := installDataDir(ctx, installDB, dataDir, tmpDir); err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.cmd = exec.Command(mariadbd, s.serverArgs(dataDir, tmpDir, port, opts)...)
	// The server dies with the process that started it, even on SIGKILL,
	// so an interrupted test run leaves no stray mariadbd behind.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()

	s.root, err = sql.Open("mysql", s.DSN("root", "", ""))
	if err != nil {
		return err
	}
	return s.waitAccepting(ctx)
}

// installDataDir runs mariadb-install-db for a fresh data directory whose
// root logs in with a password (none) rather than by the Unix account,
// without the test database.
func installDataDir(ctx context.Context, installDB, dataDir, tmpDir string) error {
	install := exec.CommandContext(ctx, installDB, "--no-defaults",
		"--datadir="+dataDir,
		"--tmpdir="+tmpDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	)
	if os.Geteuid() == 0 {
		install.Args = append(install.Args, "--user=root")
	}
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	return nil
}

// serverArgs is mariadbd's command line: no option files, everything in
// the server's directory, loopback only on port, the binary log in ROW
// format with full metadata unless opts.NoBinlog, then opts.ExtraArgs.
func (s *Server) serverArgs(dataDir, tmpDir string, port int, opts Options) []string {
	args := []string{"--no-defaults",
		"--datadir=" + dataDir,
		"--tmpdir=" + tmpDir,
		"--socket=" + filepath.Join(s.Dir, "mariadb.sock"),
		"--pid-file=" + filepath.Join(s.Dir, "mariadb.pid"),
		"--log-error=" + filepath.Join(s.Dir, "error.log"),
		"--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(port),
		"--server-id=1",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--skip-name-resolve",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--max-connections=500",
	}
	if !opts.NoBinlog {
		args = append(args,
			"--log-bin="+filepath.Join(dataDir, "mariadb-bin"),
			"--binlog-format=ROW",
			"--binlog-row-metadata=FULL",
		)
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return append(args, opts.ExtraArgs...)
}

// waitAccepting pings the server as root until it answers, for up to 60s;
// it fails early, with the end of the error log, when mariadbd exits.
func (s *Server) waitAccepting(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.root.PingContext(pingCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("mariadbd exited during start-up: %s", s.tailErrorLog())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd did not accept connections within 60s: %v: %s", err, s.tailErrorLog())
		}
	}
}

func (s *Server) tailErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 20 s) and removes
// its directory. It is safe to call on a partly started Server.
func (s *Server) Stop() {
	if s.root != nil {
		s.root.Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// DSN returns a go-sql-driver DSN for user/password on database db ("" for
// none) over TCP.
func (s *Server) DSN(user, password, db string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = s.Addr
	cfg.DBName = db
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}

// Root returns a connection pool logged in as root, without a default
// database. The Server owns it.
func (s *Server) Root() *sql.DB { return s.root }

// Database is a database on a Server holding Drupal's user tables.
type Database struct {
	// Name is the schema name.
	Name string
	// Prefix is the Drupal table prefix the tables were created with.
	Prefix string
	// DB is a root connection pool with Name as default database.
	DB *sql.DB

	server *Server
}

// NewDatabase creates a new uniquely named database holding Drupal's user
// tables, each name preceded by prefix (Drupal's settings.php prefix; "" for
// none).
func (s *Server) NewDatabase(ctx context.Context, prefix string) (*Database, error) {
	name := fmt.Sprintf("drupal%d", s.dbSeq.Add(1))
	if _, err := s.root.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	db, err := sql.Open("mysql", s.DSN("root", "", name))
	if err != nil {
		return nil, err
	}
	schema := strings.ReplaceAll(DrupalSchema, "CREATE TABLE `", "CREATE TABLE `"+prefix)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("load Drupal schema into %s: %w", name, err)
	}
	return &Database{Name: name, Prefix: prefix, DB: db, server: s}, nil
}

// DSN returns a DSN for user/password with this database as default.
func (d *Database) DSN(user, password string) string {
	return d.server.DSN(user, password, d.Name)
}

// CreateAgentUser creates a MariaDB account holding exactly the grants the
// README asks operators to give the agent, and returns its DSN. The account
// name is unique per database.
func (d *Database) CreateAgentUser(ctx context.Context) (dsn string, err error) {
	user := "agent_" + d.Name
	password := "pw-" + d.Name + "-secret"
	stmts := []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, password),
		fmt.Sprintf("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '%s'@'%%'", user),
		fmt.Sprintf("GRANT SELECT ON `%s`.* TO '%s'@'%%'", d.Name, user),
	}
	for _, q := range stmts {
		if _, err := d.server.root.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	return d.DSN(user, password), nil
}

// Close closes the root pool of the database. The database itself stays
// until the server stops.
func (d *Database) Close() error { return d.DB.Close() }
