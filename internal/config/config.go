// Package config reads scim-agent's config.yaml.
//
// Decoding is strict: an unknown key is an error naming the key and its
// line, so a typo never silently falls back to a default. Every value may
// hold ${VAR} references, replaced from the environment before decoding,
// which is how secrets (the DSN password, the SCIM token) stay out of the
// file. Everything but the DSN, the SCIM base URL and the token has a
// default.
package config

import (
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/scim-agent/scim-agent/mapping"
)

// Config is the whole configuration of the agent.
type Config struct {
	MySQL        MySQL             `yaml:"mysql"`
	SCIM         SCIM              `yaml:"scim"`
	Provisioning Provisioning      `yaml:"provisioning"`
	State        State             `yaml:"state"`
	Log          Log               `yaml:"log"`
	Admin        Admin             `yaml:"admin"`
	Mapping      map[string]string `yaml:"mapping"`

	// Warnings are problems that do not stop the agent (e.g. a plain-http
	// SCIM URL); the caller logs them.
	Warnings []string `yaml:"-"`
}

// MySQL says how to reach the Drupal database and its binary log.
type MySQL struct {
	// DSN is a go-sql-driver/mysql DSN naming the Drupal database,
	// e.g. "scim_agent:${MYSQL_PASSWORD}@tcp(db:3306)/drupal".
	DSN string `yaml:"dsn"`
	// ServerID is the replica id the agent registers with; unique among
	// the server's replicas. 0 derives a stable id from the DSN's address
	// and database name.
	ServerID uint32 `yaml:"server_id"`
	// TablePrefix is Drupal's table prefix from settings.php ("" for none).
	TablePrefix string `yaml:"table_prefix"`
	// Heartbeat is how often the server is asked to send a heartbeat on an
	// idle binlog connection; a link silent for 3 heartbeats is reconnected.
	Heartbeat time.Duration `yaml:"heartbeat"`
}

// SCIM says how to reach the SCIM service provider.
type SCIM struct {
	// BaseURL is the SCIM endpoint, e.g. https://idp.example.com/scim/v2.
	BaseURL string `yaml:"base_url"`
	// Token is the bearer token (surrounding blanks trimmed). Exactly one
	// of Token and TokenFile is set in the file; after Load, Token holds
	// the token either way.
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (surrounding blanks trimmed).
	TokenFile string `yaml:"token_file"`
	// CAFile is a PEM bundle of extra CAs to trust. TLS verification is
	// always on.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration `yaml:"timeout"`
}

// Operation names, as in provisioning.operations.
const (
	OpCreate     = "create"
	OpUpdate     = "update"
	OpDeactivate = "deactivate"
	OpDelete     = "delete"
)

// Provisioning says what the agent does with the changes it sees.
type Provisioning struct {
	// Operations lists the operations switched on: any of create, update,
	// deactivate (which also covers reactivation) and delete.
	Operations []string `yaml:"operations"`
	// OnDelete is what a deleted Drupal account becomes on the server:
	// "delete" (DELETE /Users/{id}) or "deactivate" (active=false).
	OnDelete string `yaml:"on_delete"`
	// ExcludeUIDs are never provisioned. uid 0 (Drupal's anonymous user)
	// is excluded whatever the list says.
	ExcludeUIDs []uint32 `yaml:"exclude_uids"`
	// Workers is the number of users reconciled at once.
	Workers int `yaml:"workers"`
	// ReconcileInterval is how often every user is compared with the
	// server's copy to repair drift; 0 switches it off.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// MaxDeletes is how many deletions or deactivations MaxDeletesWindow
	// may hold before deprovisioning pauses for approval.
	MaxDeletes int `yaml:"max_deletes"`
	// MaxDeletesWindow is the sliding window MaxDeletes counts over.
	MaxDeletesWindow time.Duration `yaml:"max_deletes_window"`
}

// Allows reports whether op is switched on.
func (p Provisioning) Allows(op string) bool { return slices.Contains(p.Operations, op) }

// Excluded reports whether uid is never provisioned.
func (p Provisioning) Excluded(uid uint32) bool {
	return uid == 0 || slices.Contains(p.ExcludeUIDs, uid)
}

// State says where the agent keeps its state.
type State struct {
	// Path is the bbolt state file: binlog position, uid → SCIM id,
	// fingerprints of what was pushed, parked users.
	Path string `yaml:"path"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json (for log pipelines) or console (for people).
	Format string `yaml:"format"`
}

// Admin configures the agent's two admin endpoints: the HTTP listener
// for probes, scrapes and the status, and the control socket through
// which the scim-agent commands drive a running agent.
type Admin struct {
	// Listen is host:port of the HTTP listener (health, readiness,
	// metrics, status); "" switches it off.
	Listen string `yaml:"listen"`
	// Socket is the Unix socket that serves the control endpoints (sync,
	// retry, approve-deletes) and everything Listen serves. Only the
	// agent's own user and root may connect: a peer address proves
	// nothing (a sidecar proxy or a port-forward connects from
	// loopback). "" (the default) is State.Path + ".sock", so that a
	// command finds it from the same config; it cannot be switched off.
	Socket string `yaml:"socket"`
}

// MaxSocketPath is the longest path a Unix socket may have on Linux
// (sun_path holds 108 bytes with the terminating NUL).
const MaxSocketPath = 107

// SocketSuffix is what the default admin.socket appends to state.path.
const SocketSuffix = ".sock"

// Defaults of the optional keys.
const (
	DefaultHeartbeat        = 5 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultWorkers          = 4
	DefaultMaxDeletes       = 100
	DefaultMaxDeletesWindow = 10 * time.Minute
	DefaultStatePath        = "scim-agent.db"
	DefaultAdminListen      = "127.0.0.1:9464"
)

// applyDefaults fills the keys the file left out. present reports
// whether a key path appeared in the file (so an explicit "" or 0 stays).
func (c *Config) applyDefaults(present func(path string) bool) {
	if c.MySQL.Heartbeat == 0 {
		c.MySQL.Heartbeat = DefaultHeartbeat
	}
	if c.SCIM.Timeout == 0 {
		c.SCIM.Timeout = DefaultTimeout
	}
	if !present("provisioning.operations") {
		c.Provisioning.Operations = []string{OpCreate, OpUpdate, OpDeactivate, OpDelete}
	}
	if c.Provisioning.OnDelete == "" {
		c.Provisioning.OnDelete = OpDelete
	}
	if !present("provisioning.exclude_uids") {
		c.Provisioning.ExcludeUIDs = []uint32{0}
	}
	if c.Provisioning.Workers == 0 {
		c.Provisioning.Workers = DefaultWorkers
	}
	if !present("provisioning.max_deletes") {
		c.Provisioning.MaxDeletes = DefaultMaxDeletes
	}
	if c.Provisioning.MaxDeletesWindow == 0 {
		c.Provisioning.MaxDeletesWindow = DefaultMaxDeletesWindow
	}
	if c.State.Path == "" {
		c.State.Path = DefaultStatePath
	}
	if c.Admin.Socket == "" {
		c.Admin.Socket = c.State.Path + SocketSuffix
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if !present("admin.listen") {
		c.Admin.Listen = DefaultAdminListen
	}
}

// validate checks every value; errors name the key (and line, via at).
func (c *Config) validate(at func(path string) string) error {
	var errs []string
	fail := func(path, format string, args ...any) {
		errs = append(errs, at(path)+path+": "+fmt.Sprintf(format, args...))
	}

	if c.MySQL.DSN == "" {
		fail("mysql.dsn", "is required (e.g. scim_agent:${MYSQL_PASSWORD}@tcp(127.0.0.1:3306)/drupal)")
	} else if dsn, err := mysql.ParseDSN(c.MySQL.DSN); err != nil {
		fail("mysql.dsn", "is not a valid DSN: %s (format: user:password@tcp(host:port)/database)", DSNError(c.MySQL.DSN, err))
	} else if dsn.DBName == "" {
		fail("mysql.dsn", "names no database: end it with /<drupal database>")
	} else if c.MySQL.ServerID == 0 {
		h := fnv.New32a()
		h.Write([]byte(dsn.Addr + "/" + dsn.DBName))
		c.MySQL.ServerID = 1_000_000 + h.Sum32()%1_000_000_000
	}
	if !validIdentifier(c.MySQL.TablePrefix) {
		fail("mysql.table_prefix", "%q may hold only letters, digits and _", c.MySQL.TablePrefix)
	}
	if c.MySQL.Heartbeat < 100*time.Millisecond {
		fail("mysql.heartbeat", "%s is too short (at least 100ms)", c.MySQL.Heartbeat)
	}

	if c.SCIM.BaseURL == "" {
		fail("scim.base_url", "is required (e.g. https://idp.example.com/scim/v2)")
	} else if u, err := url.Parse(c.SCIM.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		fail("scim.base_url", "%q is not an absolute http(s) URL", c.SCIM.BaseURL)
	} else if u.Scheme == "http" && !loopback(u.Hostname()) {
		c.Warnings = append(c.Warnings, "scim.base_url uses plain http: the bearer token crosses the network unencrypted")
	}
	// A Secret made from a file (kubectl create secret --from-file, echo
	// without -n) often ends in a newline: trimmed, as from token_file.
	if t := strings.TrimSpace(c.SCIM.Token); t != c.SCIM.Token {
		c.SCIM.Token = t
		if t == "" {
			fail("scim.token", "is only blanks")
		}
	}
	switch {
	case c.SCIM.Token != "" && c.SCIM.TokenFile != "":
		fail("scim.token", "set either scim.token or scim.token_file, not both")
	case c.SCIM.Token == "" && c.SCIM.TokenFile == "":
		fail("scim.token", "is required (or scim.token_file)")
	case c.SCIM.TokenFile != "":
		b, err := os.ReadFile(c.SCIM.TokenFile)
		if err != nil {
			fail("scim.token_file", "%v", err)
		} else if c.SCIM.Token = strings.TrimSpace(string(b)); c.SCIM.Token == "" {
			fail("scim.token_file", "%s is empty", c.SCIM.TokenFile)
		}
	}
	if c.SCIM.CAFile != "" {
		if _, err := os.Stat(c.SCIM.CAFile); err != nil {
			fail("scim.ca_file", "%v", err)
		}
	}
	if c.SCIM.Timeout < 0 {
		fail("scim.timeout", "must be positive")
	}

	p := &c.Provisioning
	for _, op := range p.Operations {
		if !slices.Contains([]string{OpCreate, OpUpdate, OpDeactivate, OpDelete}, op) {
			fail("provisioning.operations", "%q is not one of create, update, deactivate, delete", op)
		}
	}
	if len(p.Operations) == 0 {
		// Empty (or a bare key, which YAML reads as null): deliberate for a
		// pause, but it must not pass unnoticed.
		c.Warnings = append(c.Warnings, "provisioning.operations is empty: every operation is switched off and the agent sends no write")
	}
	if p.OnDelete != OpDelete && p.OnDelete != OpDeactivate {
		fail("provisioning.on_delete", "%q is not one of delete, deactivate", p.OnDelete)
	}
	if p.Workers < 1 || p.Workers > 256 {
		fail("provisioning.workers", "%d is not between 1 and 256", p.Workers)
	}
	if p.ReconcileInterval < 0 || (p.ReconcileInterval > 0 && p.ReconcileInterval < time.Minute) {
		fail("provisioning.reconcile_interval", "%s must be 0 (off) or at least 1m", p.ReconcileInterval)
	}
	if p.MaxDeletes < 0 {
		fail("provisioning.max_deletes", "%d must be 0 (no limit) or more", p.MaxDeletes)
	}
	if p.MaxDeletesWindow < 0 {
		fail("provisioning.max_deletes_window", "must be positive")
	}

	c.validateSocket(fail)

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		fail("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		fail("log.format", "%q is not one of json, console", c.Log.Format)
	}
	mappingOK := true
	for _, path := range sortedKeys(c.Mapping) {
		if _, err := mapping.New(map[string]string{path: c.Mapping[path]}); err != nil {
			errs = append(errs, at("mapping."+path)+err.Error())
			mappingOK = false
		}
	}
	if _, err := mapping.New(c.Mapping); err != nil && mappingOK {
		errs = append(errs, at("mapping")+err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// validateSocket checks that admin.socket is a path a Unix socket can
// have, and one of its own.
func (c *Config) validateSocket(fail func(path, format string, args ...any)) {
	sock := c.Admin.Socket
	derived := ""
	if sock == c.State.Path+SocketSuffix {
		derived = " (state.path + " + SocketSuffix + ")"
	}
	switch {
	case strings.HasPrefix(sock, "@"):
		// Go (on Linux) takes a leading @ for the abstract namespace, where
		// no file permission keeps any local user out.
		fail("admin.socket", "%q%s starts with @, which names an abstract socket any local user may connect to: use a file path (e.g. ./%s)", sock, derived, sock)
	case len(sock) > MaxSocketPath:
		fail("admin.socket", "%s%s is %d bytes; a Unix socket path may have at most %d: set admin.socket to a shorter path", sock, derived, len(sock), MaxSocketPath)
	case strings.ContainsRune(sock, 0):
		fail("admin.socket", "%q holds a NUL byte", sock)
	case filepath.Clean(sock) == filepath.Clean(c.State.Path):
		fail("admin.socket", "%s is state.path: the socket needs a path of its own", sock)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func validIdentifier(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func loopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// DSNError describes why dsn does not parse without quoting its
// password: go-sql-driver's message can quote a piece of a DSN it split
// in the wrong place (a '/' in the password of a DSN with no database
// does that), so a message holding any four characters of the text
// between the first ':' and the last '@' is replaced by a generic one.
func DSNError(dsn string, err error) string {
	msg := err.Error()
	user, rest, found := strings.Cut(dsn, ":")
	at := strings.LastIndex(rest, "@")
	if !found || at < 0 || strings.Contains(user, "@") {
		if strings.Contains(dsn, "@") {
			// No user:password part we can find: trust nothing.
			return "the driver's message is not shown, as it may quote the password"
		}
		return msg
	}
	secret := rest[:at]
	for i := 0; i+4 <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+4]) {
			return "the driver's message is not shown, as it quotes part of the password"
		}
	}
	if len(secret) > 0 && len(secret) < 4 && strings.Contains(msg, secret) {
		return "the driver's message is not shown, as it quotes part of the password"
	}
	return msg
}

// RedactDSN returns dsn with its password replaced, for messages.
func RedactDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}
