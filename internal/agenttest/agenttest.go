// Package agenttest is the one test environment of the agent's tests (the
// agent package, the commands, the memory measurement) and of the demo: a
// fresh Drupal database on a private MariaDB with the binlog on, a writer
// that changes it the way Drupal does, the agent's database account, an
// in-process SCIM server, a builder for the agent's config.yaml,
// Eventually and Poll for waiting on a condition, and small helpers for
// DSNs, ports and binary logs.
//
//	env := agenttest.New(t, agenttest.Options{})
//	uid := env.Create(drupaltest.User{Name: "alice", Status: 1})
//	doc := env.Config().With(agenttest.Provisioning("max_deletes: 1")).YAML()
//	agenttest.Eventually(t, "alice on the server", func() bool { _, ok := env.SCIM.UserByUserName("alice"); return ok })
package agenttest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// Token is the SCIM token of an Env whose Options name none. Tests check
// that it never reaches a log line or an output.
const Token = "tok-3f9a1c-never-logged"

// TokenVar is the environment variable the configs refer to for the
// token (scim.token: ${SCIM_TOKEN}), so the token is not in the file.
const TokenVar = "SCIM_TOKEN"

// Options configures an Env. The zero value is a database without a
// table prefix on the test binary's shared MariaDB and a plain SCIM
// server requiring Token.
type Options struct {
	// Server is the MariaDB to create the database on; nil is the shared
	// one (testdb.Shared).
	Server *testdb.Server
	// Prefix is Drupal's table prefix.
	Prefix string
	// SCIM configures the SCIM server; an empty Token means Token.
	SCIM scimtest.Options
}

// Env is one Drupal database, its Drupal-style writer, the agent's
// database account and one SCIM server, all torn down when the test ends.
type Env struct {
	T    testing.TB
	DB   *testdb.Database
	Site *drupaltest.Site
	SCIM *scimtest.Server
	// DSN is the agent account's DSN (the grants README asks for).
	DSN string
	// Dir is a temporary directory for the state file and configs.
	Dir string
	// Token is the SCIM server's token.
	Token string
}

// New builds an Env: a fresh database holding Drupal's tables and the
// anonymous user, an agent account and a SCIM server.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	if o.SCIM.Token == "" {
		o.SCIM.Token = Token
	}
	srv := o.Server
	if srv == nil {
		srv = testdb.Shared(t)
	}
	db, err := srv.NewDatabase(ctx, o.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &Env{T: t, DB: db, Site: &drupaltest.Site{DB: db.DB, Prefix: o.Prefix}, Dir: t.TempDir(), Token: o.SCIM.Token}
	if err := e.Site.CreateAnonymous(ctx); err != nil {
		t.Fatal(err)
	}
	if e.DSN, err = db.CreateAgentUser(ctx); err != nil {
		t.Fatal(err)
	}
	e.SCIM = scimtest.New(t, o.SCIM)
	return e
}

// Create makes a Drupal user the way Drupal does and returns its uid.
func (e *Env) Create(u drupaltest.User) uint32 {
	e.T.Helper()
	uid, err := e.Site.Create(context.Background(), u)
	if err != nil {
		e.T.Fatal(err)
	}
	return uid
}

// Config returns the config of an agent for this Env: its DSN, prefix and
// SCIM server, a state file in Dir, debug JSON logs, the admin listener
// on a free loopback port chosen by the agent, two workers.
func (e *Env) Config() Config {
	return Config{
		DSN:         e.DSN,
		Prefix:      e.DB.Prefix,
		SCIMURL:     e.SCIM.URL,
		StatePath:   filepath.Join(e.Dir, "state.db"),
		AdminListen: "127.0.0.1:0",
		LogLevel:    "debug",
	}
}

// Secrets returns what must never appear in a log line or an output of
// an agent of this Env: the SCIM token and the DSN password.
func (e *Env) Secrets() []string {
	return []string{e.Token, Password(e.T, e.DSN)}
}

// Config is what a test chooses of an agent's config.yaml; YAML renders
// it. The token is always ${SCIM_TOKEN} (TokenVar).
type Config struct {
	DSN, Prefix, SCIMURL string
	StatePath            string
	AdminListen          string
	LogLevel, LogFormat  string
	// Provisioning holds extra lines of the provisioning section, one
	// key per line ("max_deletes: 1"); workers defaults to 2.
	Provisioning []string
	// SCIM holds extra lines of the scim section.
	SCIM []string
	// Mapping holds lines of the mapping section (userName: name is
	// always there).
	Mapping []string
	// Extra is YAML appended at the top level (another section).
	Extra string
}

// Option changes a Config.
type Option func(*Config)

// Provisioning adds lines (several may be given in one string, separated
// by newlines) to the provisioning section.
func Provisioning(yaml string) Option {
	return func(c *Config) { c.Provisioning = append(c.Provisioning, lines(yaml)...) }
}

// SCIM adds lines to the scim section.
func SCIM(yaml string) Option { return func(c *Config) { c.SCIM = append(c.SCIM, lines(yaml)...) } }

// Mapping adds lines to the mapping section.
func Mapping(yaml string) Option {
	return func(c *Config) { c.Mapping = append(c.Mapping, lines(yaml)...) }
}

// With returns the config with opts applied.
func (c Config) With(opts ...Option) Config {
	c.Provisioning = append([]string(nil), c.Provisioning...)
	c.SCIM = append([]string(nil), c.SCIM...)
	c.Mapping = append([]string(nil), c.Mapping...)
	for _, o := range opts {
		o(&c)
	}
	return c
}

func lines(yaml string) []string {
	var out []string
	for _, l := range strings.Split(yaml, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// YAML renders the config file.
func (c Config) YAML() string {
	var b strings.Builder
	section := func(name string, entries []string) {
		b.WriteString(name + ":\n")
		for _, e := range entries {
			b.WriteString("  " + e + "\n")
		}
	}
	section("mysql", []string{fmt.Sprintf("dsn: %q", c.DSN), fmt.Sprintf("table_prefix: %q", c.Prefix), "heartbeat: 1s"})
	section("scim", append([]string{"base_url: " + c.SCIMURL, "token: ${" + TokenVar + "}", "timeout: 5s"}, c.SCIM...))
	prov := c.Provisioning
	if !hasKey(prov, "workers") {
		prov = append([]string{"workers: 2"}, prov...)
	}
	section("provisioning", prov)
	section("state", []string{fmt.Sprintf("path: %q", c.StatePath)})
	logLines := []string{"level: " + or(c.LogLevel, "info")}
	if c.LogFormat != "" {
		logLines = append(logLines, "format: "+c.LogFormat)
	}
	section("log", logLines)
	section("admin", []string{fmt.Sprintf("listen: %q", c.AdminListen)})
	mapping := c.Mapping
	if !hasKey(mapping, "userName") {
		mapping = append([]string{"userName: name"}, mapping...)
	}
	section("mapping", mapping)
	b.WriteString(c.Extra)
	return b.String()
}

func hasKey(entries []string, key string) bool {
	for _, e := range entries {
		if strings.HasPrefix(e, key+":") {
			return true
		}
	}
	return false
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// LookupEnv resolves ${SCIM_TOKEN} to token, for config.Parse.
func LookupEnv(token string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if name == TokenVar {
			return token, true
		}
		return "", false
	}
}

// Password returns the password of a DSN (failing the test when it has
// none), for the checks that it never leaks.
func Password(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil || cfg.Passwd == "" {
		t.Fatalf("test DSN has no password: %v", err)
	}
	return cfg.Passwd
}

// MixedCaseDSN returns dsn with its database name's first letter
// upper-cased ("drupal3" → "Drupal3"), as an operator may well write it:
// for the tests of a server with lower_case_table_names=1, which logs
// the name in lower case.
func MixedCaseDSN(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = strings.ToUpper(cfg.DBName[:1]) + cfg.DBName[1:]
	return cfg.FormatDSN()
}

// FreeAddr returns a loopback address with a port free right now, for a
// listener that must be known before it starts (a config written for
// another process).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeLoopbackAddr is FreeAddr for a program that is not a test (the
// demo).
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Timeout bounds Eventually.
const Timeout = 30 * time.Second

// pollInterval is how long Poll waits between two looks at a condition.
const pollInterval = 10 * time.Millisecond

// Eventually waits up to Timeout for cond, polling it, and fails the test
// naming what it waited for. Use it for a state the test cannot be told
// about (a server's contents, a log line, a process's readiness).
//
// cond runs on the caller's goroutine, so it may end the test itself
// (t.Fatal) to stop waiting early, as when the process or goroutine the
// test waits on has exited.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(Timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", Timeout, what)
	}
}

// Poll looks at cond until it holds, every few milliseconds for up to d,
// and reports whether it held.
// It is Eventually for a wait whose failure must say more than what was
// awaited (the state reached at the deadline, a process's output), that
// may take longer than Timeout (a start-up, a whole backlog), or after
// which the test goes on either way. Like Eventually's, cond runs on the
// caller's goroutine and may fail the test itself.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}
