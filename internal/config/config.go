// Package config reads scim-agent's config.yaml.
//
// Decoding is strict: an unknown key is an error naming the key and its
// line, so a typo never silently falls back to a default. Every value may
// hold ${VAR} references, replaced from the environment before decoding,
// which is how secrets (the DSN password, the SCIM token, an OAuth 2
// client secret, a basic password) stay out of the file. Everything but
// the DSN, the SCIM base URL and one authentication method (token, OAuth 2
// client credentials or basic) has a default.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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
	Groups       Groups            `yaml:"groups"`
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
	// Token is the bearer token (surrounding blanks trimmed). At most one
	// of Token and TokenFile is set in the file; after Load, Token holds
	// the token either way. Exactly one of the token, OAuth2 and Basic
	// authenticates the agent.
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (surrounding blanks trimmed).
	TokenFile string `yaml:"token_file"`
	// OAuth2 is OAuth 2 client-credentials authentication.
	OAuth2 OAuth2 `yaml:"oauth2"`
	// Basic is HTTP basic authentication.
	Basic Basic `yaml:"basic"`
	// CertFile and KeyFile are a TLS client certificate and its key (PEM)
	// for a server that asks for one (mTLS), beside any authentication.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is a PEM bundle of extra CAs to trust. TLS verification is
	// always on.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRequestsPerSecond paces the agent's requests (a client-side token
	// bucket) so that a server's published limit is never reached; 0 is no
	// limit. A server's Retry-After is still honoured on top.
	MaxRequestsPerSecond float64 `yaml:"max_requests_per_second"`
	// Burst is how many requests may go at once within the rate (default
	// 1: evenly spaced).
	Burst int `yaml:"burst"`
	// Capabilities override what the server's /ServiceProviderConfig
	// advertises (or, without one, lacks).
	Capabilities Capabilities `yaml:"capabilities"`
}

// AuthMethod names the configured authentication: AuthToken, AuthOAuth2
// or AuthBasic.
func (s SCIM) AuthMethod() string {
	switch {
	case s.OAuth2.set():
		return AuthOAuth2
	case s.Basic.set():
		return AuthBasic
	}
	return AuthToken
}

// Authentication methods, as AuthMethod names them.
const (
	AuthToken  = "token"
	AuthOAuth2 = "oauth2"
	AuthBasic  = "basic"
)

// OAuth2 is OAuth 2 client-credentials authentication (RFC 6749 §4.4):
// the agent fetches a bearer token from TokenURL and renews it before it
// expires.
type OAuth2 struct {
	// TokenURL is the token endpoint.
	TokenURL string `yaml:"token_url"`
	// ClientID identifies the agent to the token endpoint.
	ClientID string `yaml:"client_id"`
	// ClientSecret is its secret (surrounding blanks trimmed); at most one
	// of ClientSecret and ClientSecretFile is set in the file, and after
	// Load ClientSecret holds it either way.
	ClientSecret string `yaml:"client_secret"`
	// ClientSecretFile is a file holding the secret.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes are asked for (none by default).
	Scopes []string `yaml:"scopes"`
}

func (o OAuth2) set() bool {
	return o.TokenURL != "" || o.ClientID != "" || o.ClientSecret != "" || o.ClientSecretFile != "" || len(o.Scopes) > 0
}

// Basic is HTTP basic authentication (RFC 7617).
type Basic struct {
	// Username is the user name (it cannot hold ':').
	Username string `yaml:"username"`
	// Password is the password (a trailing newline trimmed, nothing else:
	// a password may hold spaces); at most one of Password and
	// PasswordFile is set in the file, and after Load Password holds it
	// either way.
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password.
	PasswordFile string `yaml:"password_file"`
}

func (b Basic) set() bool { return b.Username != "" || b.Password != "" || b.PasswordFile != "" }

// Capability is the setting of one server capability: CapAuto (what the
// server advertises), "true" or "false".
type Capability string

// CapAuto takes a capability from the server's /ServiceProviderConfig.
const CapAuto Capability = "auto"

// Capabilities override the server's /ServiceProviderConfig, one
// capability at a time.
type Capabilities struct {
	// Patch: the server takes PATCH (else the agent PUTs the server's copy
	// with its changes).
	Patch Capability `yaml:"patch"`
	// Filter: the server answers filtered lists (the agent finds an
	// existing account by userName or externalId).
	Filter Capability `yaml:"filter"`
	// ETag: the server keeps versions and honours If-Match.
	ETag Capability `yaml:"etag"`
	// Bulk: the server takes /Bulk requests.
	Bulk Capability `yaml:"bulk"`
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
	// Scope says which users are provisioned: a user is in when any
	// clause holds, and a clause holds when all its conditions do (see
	// mapping.Scope). Empty means everyone.
	Scope []ScopeClause `yaml:"scope"`
	// OutOfScope is what becomes of the account of a user who leaves the
	// scope: OutOfScopeDeactivate, OutOfScopeDelete or OutOfScopeIgnore.
	OutOfScope string `yaml:"out_of_scope"`
}

// ScopeClause is one clause of provisioning.scope: conditions that must
// all hold.
type ScopeClause []ScopeCondition

// ScopeCondition is one condition of a scope clause: a source as the
// mapping names them, an operator, and the value or values it compares
// with (mapping.Condition).
type ScopeCondition struct {
	Source string   `yaml:"source"`
	Op     string   `yaml:"op"`
	Value  *string  `yaml:"value"`
	Values []string `yaml:"values"`
}

// What provisioning.out_of_scope may say.
const (
	// OutOfScopeDeactivate deactivates the account (the deletion guard
	// counts it); the user coming back in scope reactivates it.
	OutOfScopeDeactivate = "deactivate"
	// OutOfScopeDelete deletes the account, as a Drupal deletion does.
	OutOfScopeDelete = "delete"
	// OutOfScopeIgnore leaves the account as it is and stops managing it
	// (Entra's "skip out-of-scope deletions"); a later return adopts it.
	OutOfScopeIgnore = "ignore"
)

// ScopeClauses returns provisioning.scope as the mapping's evaluator
// takes it (mapping.NewScope).
func (p Provisioning) ScopeClauses() [][]mapping.Condition {
	out := make([][]mapping.Condition, len(p.Scope))
	for i, clause := range p.Scope {
		out[i] = make([]mapping.Condition, len(clause))
		for j, c := range clause {
			out[i][j] = mapping.Condition(c)
		}
	}
	return out
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
// Groups says which Drupal roles the agent provisions as SCIM Groups.
type Groups struct {
	// Enabled switches groups on.
	Enabled bool `yaml:"enabled"`
	// Roles are the machine names of the roles provisioned; empty means
	// every role but anonymous and authenticated.
	Roles []string `yaml:"roles"`
	// ExcludeRoles are never provisioned.
	ExcludeRoles []string `yaml:"exclude_roles"`
	// OnRoleDelete is what a role deleted in Drupal becomes: "delete"
	// (DELETE /Groups/{id}) or "keep" (the group stays, with no members).
	OnRoleDelete string `yaml:"on_role_delete"`
	// MaxMembersPerRequest bounds the members added or removed by one
	// request (AWS IAM Identity Center allows 100).
	MaxMembersPerRequest int `yaml:"max_members_per_request"`
}

// What groups.on_role_delete may say.
const (
	RoleDeleteGroup = "delete"
	RoleKeepGroup   = "keep"
)

// Selects reports whether role is provisioned as a group.
func (g Groups) Selects(role string) bool {
	if !g.Enabled || role == "anonymous" || role == "authenticated" || slices.Contains(g.ExcludeRoles, role) {
		return false
	}
	return len(g.Roles) == 0 || slices.Contains(g.Roles, role)
}

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
	DefaultHeartbeat         = 5 * time.Second
	DefaultTimeout           = 30 * time.Second
	DefaultWorkers           = 4
	DefaultMaxDeletes        = 100
	DefaultMaxDeletesWindow  = 10 * time.Minute
	DefaultStatePath         = "scim-agent.db"
	DefaultAdminListen       = "127.0.0.1:9464"
	DefaultMembersPerRequest = 100
)

// applyDefaults fills the keys the file left out. present reports
// whether a key path appeared in the file (so an explicit "" or 0 stays).
func (c *Config) applyDefaults(present func(path string) bool) {
	if c.Groups.OnRoleDelete == "" {
		c.Groups.OnRoleDelete = RoleDeleteGroup
	}
	if !present("groups.max_members_per_request") {
		c.Groups.MaxMembersPerRequest = DefaultMembersPerRequest
	}
	if c.MySQL.Heartbeat == 0 {
		c.MySQL.Heartbeat = DefaultHeartbeat
	}
	if c.SCIM.Timeout == 0 {
		c.SCIM.Timeout = DefaultTimeout
	}
	if c.SCIM.Burst == 0 && c.SCIM.MaxRequestsPerSecond > 0 {
		c.SCIM.Burst = 1
	}
	for _, cp := range []*Capability{&c.SCIM.Capabilities.Patch, &c.SCIM.Capabilities.Filter, &c.SCIM.Capabilities.ETag, &c.SCIM.Capabilities.Bulk} {
		if *cp == "" {
			*cp = CapAuto
		}
	}
	if !present("provisioning.operations") {
		c.Provisioning.Operations = []string{OpCreate, OpUpdate, OpDeactivate, OpDelete}
	}
	if c.Provisioning.OnDelete == "" {
		c.Provisioning.OnDelete = OpDelete
	}
	if c.Provisioning.OutOfScope == "" {
		c.Provisioning.OutOfScope = OutOfScopeDeactivate
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
	ps := &problems{at: at}
	c.validateMySQL(ps.fail)
	c.validateSCIM(ps.fail)
	c.validateProvisioning(ps.fail)
	c.validateSocket(ps.fail)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		ps.fail("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		ps.fail("log.format", "%q is not one of json, console", c.Log.Format)
	}
	c.validateGroups(ps.fail)
	c.validateMapping(ps)
	if len(ps.errs) > 0 {
		return fmt.Errorf("%s", strings.Join(ps.errs, "\n"))
	}
	return nil
}

// problems collects what is wrong with a config, each problem naming its
// key and, when known, its line.
type problems struct {
	at   func(path string) string // "file:line: " of a key path
	errs []string
}

// fail records a problem with the value at path.
func (ps *problems) fail(path, format string, args ...any) {
	ps.errs = append(ps.errs, ps.at(path)+path+": "+fmt.Sprintf(format, args...))
}

// validateMySQL checks the mysql section and derives the server id.
func (c *Config) validateMySQL(fail func(path, format string, args ...any)) {
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
}

// validateSCIM checks the scim section: where the server is, how the
// agent authenticates, its TLS files, rate limit and capabilities.
func (c *Config) validateSCIM(fail func(path, format string, args ...any)) {
	if c.SCIM.BaseURL == "" {
		fail("scim.base_url", "is required (e.g. https://idp.example.com/scim/v2)")
	} else if u, err := url.Parse(c.SCIM.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		fail("scim.base_url", "%q is not an absolute http(s) URL", c.SCIM.BaseURL)
	} else if u.Scheme == "http" && !loopback(u.Hostname()) {
		c.Warnings = append(c.Warnings, "scim.base_url uses plain http: the bearer token crosses the network unencrypted")
	}
	c.validateSCIMAuth(fail)
	c.validateSCIMTLS(fail)
	if c.SCIM.Timeout < 0 {
		fail("scim.timeout", "must be positive")
	}
	if r := c.SCIM.MaxRequestsPerSecond; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		fail("scim.max_requests_per_second", "%v must be 0 (no limit) or a positive number of requests a second", r)
	}
	if c.SCIM.Burst < 0 {
		fail("scim.burst", "%d must be 1 or more", c.SCIM.Burst)
	} else if c.SCIM.Burst > 0 && c.SCIM.MaxRequestsPerSecond == 0 {
		fail("scim.burst", "needs scim.max_requests_per_second (a burst of what rate?)")
	}
	caps := c.SCIM.Capabilities
	for _, cp := range []struct {
		key string
		v   Capability
	}{{"patch", caps.Patch}, {"filter", caps.Filter}, {"etag", caps.ETag}, {"bulk", caps.Bulk}} {
		if cp.v != CapAuto && cp.v != "true" && cp.v != "false" {
			fail("scim.capabilities."+cp.key, "%q is not one of auto, true, false", string(cp.v))
		}
	}
}

// validateSCIMTLS checks scim.ca_file and the client certificate.
func (c *Config) validateSCIMTLS(fail func(path, format string, args ...any)) {
	if c.SCIM.CAFile != "" {
		if _, err := os.Stat(c.SCIM.CAFile); err != nil {
			fail("scim.ca_file", "%v", err)
		}
	}
	switch sc := c.SCIM; {
	case sc.CertFile == "" && sc.KeyFile != "":
		fail("scim.cert_file", "is required with scim.key_file (the client certificate for mTLS)")
	case sc.CertFile != "" && sc.KeyFile == "":
		fail("scim.key_file", "is required with scim.cert_file (the client certificate's private key)")
	case sc.CertFile != "":
		if _, err := tls.LoadX509KeyPair(sc.CertFile, sc.KeyFile); err != nil {
			fail("scim.cert_file", "%s with scim.key_file %s: %v", sc.CertFile, sc.KeyFile, err)
		}
	}
}

// validateProvisioning checks the provisioning section.
func (c *Config) validateProvisioning(fail func(path, format string, args ...any)) {
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
	if !slices.Contains([]string{OutOfScopeDeactivate, OutOfScopeDelete, OutOfScopeIgnore}, p.OutOfScope) {
		fail("provisioning.out_of_scope", "%q is not one of deactivate, delete, ignore", p.OutOfScope)
	}
	c.validateScope(fail)
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
}

// validateScope checks every condition of provisioning.scope, naming the
// key at fault: an unknown source or operator, a value missing or out of
// place, a pattern RE2 does not take.
func (c *Config) validateScope(fail func(path, format string, args ...any)) {
	_, err := mapping.NewScope(c.Provisioning.ScopeClauses())
	var errs mapping.ScopeErrors
	if !errors.As(err, &errs) {
		if err != nil {
			fail("provisioning.scope", "%v", err)
		}
		return
	}
	for _, e := range errs {
		key := fmt.Sprintf("provisioning.scope[%d]", e.Clause)
		if e.Condition >= 0 {
			key += fmt.Sprintf("[%d]", e.Condition)
		}
		if e.Field != "" {
			key += "." + e.Field
		}
		fail(key, "%s", e.Msg)
	}
}

// validateGroups checks the groups section.
func (c *Config) validateGroups(fail func(path, format string, args ...any)) {
	g := &c.Groups
	for _, list := range []struct {
		key   string
		roles []string
	}{{"groups.roles", g.Roles}, {"groups.exclude_roles", g.ExcludeRoles}} {
		for i, role := range list.roles {
			key := fmt.Sprintf("%s[%d]", list.key, i)
			switch {
			case !machineName.MatchString(role):
				fail(key, "%q is not a role's machine name (lower-case letters, digits and _)", role)
			case role == "anonymous" || role == "authenticated":
				fail(key, "%q is never stored as a role of a user (Drupal gives it to everybody, or to nobody logged in): it cannot be a group", role)
			}
		}
	}
	if g.OnRoleDelete != RoleDeleteGroup && g.OnRoleDelete != RoleKeepGroup {
		fail("groups.on_role_delete", "%q is not one of delete, keep", g.OnRoleDelete)
	}
	if g.MaxMembersPerRequest < 1 || g.MaxMembersPerRequest > 10000 {
		fail("groups.max_members_per_request", "%d is not between 1 and 10000", g.MaxMembersPerRequest)
	}
	if g.Enabled && len(g.Roles) > 0 && !slices.ContainsFunc(g.Roles, g.Selects) {
		c.Warnings = append(c.Warnings, "groups.exclude_roles excludes every role groups.roles names: no group is provisioned")
	}
}

// machineName is what a Drupal machine name may hold.
var machineName = regexp.MustCompile(`^[a-z0-9_]+$`)

// validateMapping checks each mapping rule alone (naming its key), then
// the whole mapping.
func (c *Config) validateMapping(ps *problems) {
	mappingOK := true
	for _, path := range sortedKeys(c.Mapping) {
		if _, err := mapping.New(map[string]string{path: c.Mapping[path]}); err != nil {
			ps.errs = append(ps.errs, ps.at("mapping."+path)+err.Error())
			mappingOK = false
		}
	}
	if _, err := mapping.New(c.Mapping); err != nil && mappingOK {
		ps.errs = append(ps.errs, ps.at("mapping")+err.Error())
	}
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

// validateSCIMAuth checks that exactly one authentication method is
// configured and completes it: secrets read from their files and
// trimmed.
func (c *Config) validateSCIMAuth(fail func(path, format string, args ...any)) {
	sc := &c.SCIM
	// A Secret made from a file (kubectl create secret --from-file, echo
	// without -n) often ends in a newline: trimmed, as from token_file.
	if t := strings.TrimSpace(sc.Token); t != sc.Token {
		sc.Token = t
		if t == "" {
			fail("scim.token", "is only blanks")
		}
	}
	var methods []string
	if sc.Token != "" || sc.TokenFile != "" {
		methods = append(methods, "scim.token")
	}
	if sc.OAuth2.set() {
		methods = append(methods, "scim.oauth2")
	}
	if sc.Basic.set() {
		methods = append(methods, "scim.basic")
	}
	switch {
	case len(methods) == 0:
		fail("scim.token", "is required (or scim.token_file), unless scim.oauth2 or scim.basic authenticates the agent")
		return
	case len(methods) > 1:
		fail(methods[1], "set exactly one of scim.token (or scim.token_file), scim.oauth2 and scim.basic; found %s", strings.Join(methods, " and "))
		return
	}
	switch methods[0] {
	case "scim.token":
		sc.validateToken(fail)
	case "scim.oauth2":
		c.validateOAuth2(fail)
	case "scim.basic":
		sc.Basic.validate(fail)
	}
}

// validateToken reads scim.token_file when it is set.
func (sc *SCIM) validateToken(fail func(path, format string, args ...any)) {
	if sc.Token != "" && sc.TokenFile != "" {
		fail("scim.token", "set either scim.token or scim.token_file, not both")
	} else if sc.TokenFile != "" {
		b, err := os.ReadFile(sc.TokenFile)
		if err != nil {
			fail("scim.token_file", "%v", err)
		} else if sc.Token = strings.TrimSpace(string(b)); sc.Token == "" {
			fail("scim.token_file", "%s is empty", sc.TokenFile)
		}
	}
}

// validateOAuth2 checks scim.oauth2 and reads its client secret.
func (c *Config) validateOAuth2(fail func(path, format string, args ...any)) {
	o := &c.SCIM.OAuth2
	if o.TokenURL == "" {
		fail("scim.oauth2.token_url", "is required (the token endpoint, e.g. https://idp.example.com/oauth2/token)")
	} else if u, err := url.Parse(o.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		fail("scim.oauth2.token_url", "%q is not an absolute http(s) URL without credentials", o.TokenURL)
	} else if u.Scheme == "http" && !loopback(u.Hostname()) {
		c.Warnings = append(c.Warnings, "scim.oauth2.token_url uses plain http: the client secret crosses the network unencrypted")
	}
	if o.ClientID == "" {
		fail("scim.oauth2.client_id", "is required")
	}
	o.ClientSecret = strings.TrimSpace(o.ClientSecret)
	switch {
	case o.ClientSecret != "" && o.ClientSecretFile != "":
		fail("scim.oauth2.client_secret", "set either scim.oauth2.client_secret or scim.oauth2.client_secret_file, not both")
	case o.ClientSecret == "" && o.ClientSecretFile == "":
		fail("scim.oauth2.client_secret", "is required (or scim.oauth2.client_secret_file); keep it in ${ENV} or the file")
	case o.ClientSecretFile != "":
		b, err := os.ReadFile(o.ClientSecretFile)
		if err != nil {
			fail("scim.oauth2.client_secret_file", "%v", err)
		} else if o.ClientSecret = strings.TrimSpace(string(b)); o.ClientSecret == "" {
			fail("scim.oauth2.client_secret_file", "%s is empty", o.ClientSecretFile)
		}
	}
	for i, scope := range o.Scopes {
		if scope == "" || strings.ContainsFunc(scope, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' }) {
			fail(fmt.Sprintf("scim.oauth2.scopes[%d]", i), "%q is not a scope (one word, no spaces or quotes)", scope)
		}
	}
}

// validate checks scim.basic and reads its password.
func (b *Basic) validate(fail func(path, format string, args ...any)) {
	if b.Username == "" {
		fail("scim.basic.username", "is required")
	} else if strings.Contains(b.Username, ":") {
		fail("scim.basic.username", "cannot hold ':' (RFC 7617)")
	}
	b.Password = trimNewline(b.Password)
	switch {
	case b.Password != "" && b.PasswordFile != "":
		fail("scim.basic.password", "set either scim.basic.password or scim.basic.password_file, not both")
	case b.Password == "" && b.PasswordFile == "":
		fail("scim.basic.password", "is required (or scim.basic.password_file); keep it in ${ENV} or the file")
	case b.PasswordFile != "":
		raw, err := os.ReadFile(b.PasswordFile)
		if err != nil {
			fail("scim.basic.password_file", "%v", err)
		} else if b.Password = trimNewline(string(raw)); b.Password == "" {
			fail("scim.basic.password_file", "%s is empty", b.PasswordFile)
		}
	}
}

// trimNewline removes one trailing newline (\n or \r\n): what a file or a
// Secret made with echo adds. A password keeps its other blanks.
func trimNewline(s string) string {
	return strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
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
