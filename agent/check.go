package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/scimclient"
)

// CheckResult is the outcome of one start-up check.
type CheckResult struct {
	// Name identifies the check, e.g. "mysql.binlog_format".
	Name string `json:"check"`
	// OK is false when the agent cannot run (or, with Warn, should not).
	OK bool `json:"ok"`
	// Warn marks a failed check that does not stop the agent.
	Warn bool `json:"warn,omitempty"`
	// Detail says what was found.
	Detail string `json:"detail,omitempty"`
	// Fix is the exact change that makes the check pass.
	Fix string `json:"fix,omitempty"`
}

// AnyFailed reports whether any result stops the agent.
func AnyFailed(results []CheckResult) bool {
	for _, r := range results {
		if !r.OK && !r.Warn {
			return true
		}
	}
	return false
}

// Check verifies everything the agent needs before it runs: the database
// is reachable with the DSN, the binary log is on, row-based and full, the
// account holds the grants, Drupal's tables exist behind the prefix, and
// the SCIM server answers with the token. It never changes anything.
func Check(ctx context.Context, cfg *config.Config) []CheckResult {
	results := checkMySQL(ctx, cfg)
	return append(results, checkSCIM(ctx, cfg)...)
}

func ok(name, detail string) CheckResult { return CheckResult{Name: name, OK: true, Detail: detail} }

func failed(name, detail, fix string) CheckResult {
	return CheckResult{Name: name, Detail: detail, Fix: fix}
}

func checkMySQL(ctx context.Context, cfg *config.Config) []CheckResult {
	dsn, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		return []CheckResult{failed("mysql.connect", "mysql.dsn does not parse: "+config.DSNError(cfg.MySQL.DSN, err), "write mysql.dsn as user:password@tcp(host:port)/database")}
	}
	dsn.Timeout = 5 * time.Second
	db, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		return []CheckResult{failed("mysql.connect", err.Error(), "fix mysql.dsn")}
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return []CheckResult{connectFailure(dsn, err)}
	}
	var version string
	db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version)
	mariadb := strings.Contains(strings.ToLower(version), "mariadb")
	results := []CheckResult{ok("mysql.connect", fmt.Sprintf("%s@%s/%s (%s)", dsn.User, dsn.Addr, dsn.DBName, version))}

	vars, err := serverVariables(ctx, db)
	if err != nil {
		return append(results, failed("mysql.variables", err.Error(), "let the account read server variables"))
	}
	results = append(results, checkBinlogSettings(vars)...)
	results = append(results, checkNames(vars["lower_case_table_names"], dsn.DBName))
	if id := vars["server_id"]; id == fmt.Sprint(cfg.MySQL.ServerID) {
		results = append(results, failed("mysql.server_id", "the database server's own server_id is "+id,
			"set mysql.server_id to a number no server or replica of this database uses"))
	}
	results = append(results, checkGrants(ctx, db, dsn, mariadb)...)
	results = append(results, checkTables(ctx, db, cfg, dsn.DBName))
	return results
}

// connectFailure explains why the database refused or could not be
// reached, with the fix.
func connectFailure(dsn *mysql.Config, err error) CheckResult {
	where := fmt.Sprintf("%s@%s/%s", dsn.User, dsn.Addr, dsn.DBName)
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me) && me.Number == 1045:
		return failed("mysql.connect", fmt.Sprintf("%s: the server refused the login: %s", where, me.Message),
			"check the user and password in mysql.dsn (and that the account may connect from this host)")
	case errors.As(err, &me) && me.Number == 1049:
		return failed("mysql.connect", fmt.Sprintf("%s: %s", where, me.Message),
			"put the Drupal database's name at the end of mysql.dsn")
	case errors.As(err, &me) && me.Number == 1044:
		return failed("mysql.connect", fmt.Sprintf("%s: %s", where, me.Message),
			fmt.Sprintf("GRANT SELECT ON `%s`.* TO '%s'@'%%';", dsn.DBName, dsn.User))
	}
	return failed("mysql.connect", fmt.Sprintf("cannot reach %s: %v", dsn.Addr, err),
		"check the address in mysql.dsn and that the database server listens there and lets this host in")
}

// checkBinlogSettings checks that the binary log is on, row-based, with
// whole rows and (a warning) column names.
func checkBinlogSettings(vars map[string]string) []CheckResult {
	var results []CheckResult
	restart := "then restart the server"
	if vars["log_bin"] != "ON" && vars["log_bin"] != "1" {
		results = append(results, failed("mysql.log_bin", "the binary log is off",
			"add to my.cnf under [mysqld]: log_bin = mysql-bin, binlog_format = ROW, server_id = 1; "+restart))
	} else {
		results = append(results, ok("mysql.log_bin", "ON"))
	}
	if f := vars["binlog_format"]; f != "ROW" {
		results = append(results, failed("mysql.binlog_format",
			fmt.Sprintf("is %s; %s logs ordinary UPDATEs as statements, so changes would be lost", f, f),
			"SET GLOBAL binlog_format = 'ROW'; and add to my.cnf under [mysqld]: binlog_format = ROW; "+
				"sessions already open keep their format until they reconnect (restart PHP-FPM and drush), "+
				"and each of their writes to a user table costs a full sync"))
	} else {
		results = append(results, ok("mysql.binlog_format", "ROW"))
	}
	if img := vars["binlog_row_image"]; img != "FULL" {
		results = append(results, failed("mysql.binlog_row_image", fmt.Sprintf("is %s; the agent needs whole rows", img),
			"SET GLOBAL binlog_row_image = 'FULL'; and add to my.cnf under [mysqld]: binlog_row_image = FULL"))
	} else {
		results = append(results, ok("mysql.binlog_row_image", "FULL"))
	}
	return append(results, checkRowMetadata(vars))
}

// checkRowMetadata warns unless the binlog carries column names, saying
// what running without them costs.
func checkRowMetadata(vars map[string]string) CheckResult {
	meta, found := vars["binlog_row_metadata"]
	if meta == "FULL" {
		return ok("mysql.binlog_row_metadata", "FULL")
	}
	// What running without names costs: an ALTER TABLE of a user table
	// makes the events written before it undecodable for certain, and
	// each such backlog a full sync.
	cost := "the binlog carries no column names, so they are read from information_schema when an event is read; " +
		"events written before an ALTER TABLE of a user table and read after it (after a restart, a reconnect or a backlog) " +
		"cannot be mapped for certain (column count and types are compared) and cost a full sync"
	detail := "is " + meta + " (MySQL 8's default is MINIMAL, MariaDB's NO_LOG): " + cost
	if !found {
		detail = "this server has no binlog_row_metadata (MySQL < 8.0.1, MariaDB < 10.5): " + cost
	}
	return CheckResult{Name: "mysql.binlog_row_metadata", Warn: true, Detail: detail,
		Fix: "SET GLOBAL binlog_row_metadata = 'FULL'; and add to my.cnf under [mysqld]: binlog_row_metadata = FULL " +
			"(each table-map event then carries its column names: a few bytes per event, and no full sync after an ALTER TABLE)"}
}

func serverVariables(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN "+
		"('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'server_id', 'gtid_mode', 'lower_case_table_names')")
	if err != nil {
		return nil, fmt.Errorf("read server variables: %w", err)
	}
	defer rows.Close()
	vars := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		vars[k] = strings.ToUpper(v)
	}
	return vars, rows.Err()
}

// checkNames says how the server compares database and table names
// (lower_case_table_names), which is how the binlog reader compares the
// names it reads with the DSN's database and the watched tables.
func checkNames(setting, database string) CheckResult {
	const name = "mysql.lower_case_table_names"
	switch setting {
	case "0":
		return ok(name, "0: database and table names compare exactly (case-sensitively)")
	case "1":
		detail := "1: names are stored and logged in lower case and compare case-insensitively"
		if lower := strings.ToLower(database); lower != database {
			detail += fmt.Sprintf(" (the DSN's database %s is %s on the server)", database, lower)
		}
		return ok(name, detail)
	case "2":
		return ok(name, "2: names are stored as given and compare case-insensitively")
	}
	return ok(name, fmt.Sprintf("%q: the binlog reader compares names as the server says at start", setting))
}

// checkGrants tests the account's privileges by use where it can
// (SHOW MASTER STATUS needs REPLICATION CLIENT) and by its grants where it
// cannot (REPLICATION SLAVE is only used by the binlog dump itself).
func checkGrants(ctx context.Context, db *sql.DB, dsn *mysql.Config, mariadb bool) []CheckResult {
	var account string
	db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&account)
	user, host, _ := strings.Cut(account, "@")
	grantee := fmt.Sprintf("'%s'@'%s'", user, host)
	fix := fmt.Sprintf("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO %s; GRANT SELECT ON `%s`.* TO %s;", grantee, dsn.DBName, grantee)

	grants, err := showGrants(ctx, db)
	if err != nil {
		return []CheckResult{failed("mysql.grants", "cannot read the account's grants: "+err.Error(), fix)}
	}
	var missing []string
	if !hasGlobal(grants, "REPLICATION SLAVE") {
		missing = append(missing, "REPLICATION SLAVE")
	}
	statusQuery := "SHOW MASTER STATUS"
	if !mariadb {
		statusQuery = "SHOW BINARY LOG STATUS"
	}
	if rows, err := db.QueryContext(ctx, statusQuery); err != nil && !mariadb && isMySQLError(err, 1064) {
		// MySQL before 8.2 knows only the old name.
		rows, err = db.QueryContext(ctx, "SHOW MASTER STATUS")
		if err == nil {
			rows.Close()
		} else if isMySQLError(err, 1227) {
			missing = append(missing, "REPLICATION CLIENT")
		}
	} else if err != nil && isMySQLError(err, 1227) {
		missing = append(missing, "REPLICATION CLIENT")
	} else if err == nil {
		rows.Close()
	}
	if len(missing) > 0 {
		return []CheckResult{failed("mysql.grants", fmt.Sprintf("%s lacks %s", account, strings.Join(missing, ", ")), fix)}
	}
	return []CheckResult{ok("mysql.grants", account+" has REPLICATION SLAVE, REPLICATION CLIENT")}
}

func showGrants(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS FOR CURRENT_USER()")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var grants []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		grants = append(grants, strings.ToUpper(g))
	}
	return grants, rows.Err()
}

// hasGlobal reports whether a grant on *.* includes priv (or ALL).
func hasGlobal(grants []string, priv string) bool {
	for _, g := range grants {
		if !strings.Contains(g, " ON *.* ") {
			continue
		}
		if strings.Contains(g, "ALL PRIVILEGES") || strings.Contains(g, priv) {
			return true
		}
	}
	return false
}

func isMySQLError(err error, number uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// checkTables verifies that the Drupal tables the mapping reads exist
// behind the prefix and that the account may SELECT from them.
func checkTables(ctx context.Context, db *sql.DB, cfg *config.Config, schema string) CheckResult {
	_, _, src, err := readSources(cfg)
	if err != nil {
		return failed("mysql.tables", err.Error(), "fix the mapping section or provisioning.scope")
	}
	t := drupal.Tables{Prefix: cfg.MySQL.TablePrefix}
	tables := []string{t.Users(), t.FieldData()}
	if src.Roles {
		tables = append(tables, t.Roles())
	}
	for _, f := range src.Fields {
		tables = append(tables, t.Field(f.Name))
	}
	for _, table := range tables {
		_, err := db.ExecContext(ctx, "SELECT 1 FROM `"+table+"` LIMIT 0")
		switch {
		case err == nil:
			continue
		case isMySQLError(err, 1146):
			return failed("mysql.tables", fmt.Sprintf("no table %s in %s%s", table, schema, prefixHint(ctx, db, schema, cfg.MySQL.TablePrefix)),
				"set mysql.table_prefix to Drupal's prefix (settings.php) and the DSN's database to Drupal's database")
		case isMySQLError(err, 1142):
			return failed("mysql.tables", fmt.Sprintf("the account may not SELECT from %s.%s", schema, table),
				fmt.Sprintf("GRANT SELECT ON `%s`.* TO the agent's account;", schema))
		default:
			return failed("mysql.tables", fmt.Sprintf("read %s: %v", table, err), "")
		}
	}
	return ok("mysql.tables", strings.Join(tables, ", "))
}

// prefixHint names the prefix Drupal's tables really have, when it can be
// found.
func prefixHint(ctx context.Context, db *sql.DB, schema, prefix string) string {
	var name string
	err := db.QueryRowContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '%users\\_field\\_data' LIMIT 1", schema).Scan(&name)
	if err != nil {
		return ""
	}
	found := strings.TrimSuffix(name, drupal.FieldDataTable)
	if found == prefix {
		return ""
	}
	return fmt.Sprintf(" (found %s: the prefix is %q, mysql.table_prefix says %q)", name, found, prefix)
}

// checkSCIM tests the SCIM server with the configured authentication:
// an OAuth 2 token first (scim.auth), the capabilities
// (/ServiceProviderConfig with scim.capabilities applied), one page of
// users, and the client certificate when one is configured.
func checkSCIM(ctx context.Context, cfg *config.Config) []CheckResult {
	setup, err := newSCIMSetup(cfg)
	if err != nil {
		return []CheckResult{failed("scim.connect", err.Error(), "fix the scim section of the config")}
	}
	client, err := setup.client(nil, 2, nil)
	if err != nil {
		return []CheckResult{failed("scim.connect", err.Error(), "fix scim.base_url, the authentication (scim.token, scim.oauth2 or scim.basic) and scim.ca_file")}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var results []CheckResult
	if o, isOAuth := client.Auth().(*scimclient.OAuth2); isOAuth {
		exp, err := o.Fetch(ctx)
		if err != nil {
			return []CheckResult{scimFailure(cfg, "scim.auth", o.TokenURL(), err)}
		}
		valid := "no expiry given"
		if !exp.IsZero() {
			valid = "valid for " + time.Until(exp).Round(time.Second).String()
		}
		results = append(results, ok("scim.auth", fmt.Sprintf("oauth2 client credentials of %q: a token from %s (%s)",
			cfg.SCIM.OAuth2.ClientID, o.TokenURL(), valid)))
	}
	spcURL := cfg.SCIM.BaseURL + "/ServiceProviderConfig"
	caps, _, err := client.Capabilities(ctx, setup.overrides)
	if err != nil {
		return append(results, scimFailure(cfg, "scim.service_provider_config", spcURL, err))
	}
	list, _, listErr := client.ListUsers(ctx, "", 1, 1)
	if caps.Missing && scimclient.IsStatus(listErr, http.StatusNotFound) {
		// Neither /ServiceProviderConfig nor /Users: not a SCIM root.
		return append(results, scimFailure(cfg, "scim.service_provider_config", spcURL, listErr))
	}
	results = append(results, capabilitiesResult(caps, spcURL))
	if !caps.Filter {
		results = append(results, CheckResult{Name: "scim.filter", Warn: true,
			Detail: "the server does not support filter: when it answers 409 to a create, the agent finds the existing account to adopt by reading every account (one GET per 100 accounts or groups)",
			Fix:    "enable filtering on the SCIM server if it can; otherwise nothing to do"})
	}
	if listErr != nil {
		return append(results, scimFailure(cfg, "scim.users", cfg.SCIM.BaseURL+"/Users?startIndex=1&count=1", listErr))
	}
	results = append(results, ok("scim.users", fmt.Sprintf("%d users on the server", list.TotalResults)))
	if cfg.Groups.Enabled {
		results = append(results, checkGroups(ctx, cfg, client, caps.Filter))
	}
	if cfg.SCIM.CertFile != "" {
		results = append(results, ok("scim.client_certificate", "the server accepted "+cfg.SCIM.CertFile))
	}
	return results
}

// checkGroupsProbe is the displayName the scim.groups check looks up.
const checkGroupsProbe = "scim-agent check"

// checkGroups tests the /Groups endpoint, with groups enabled, by a
// lookup of the kind the agent makes before it adopts a group: a
// displayName eq filter where the server filters, else a page of
// groups. A server of Users only (404) or a token not allowed groups
// fails: every role's group would be parked.
func checkGroups(ctx context.Context, cfg *config.Config, client *scimclient.Client, filter bool) CheckResult {
	url, query := cfg.SCIM.BaseURL+"/Groups?startIndex=1&count=1", ""
	if filter {
		query = scimclient.FilterEq("displayName", checkGroupsProbe)
		url = cfg.SCIM.BaseURL + "/Groups?filter=" + query
	}
	// As the agent asks: a lookup with members, a page without.
	list, _, err := client.ListGroups(ctx, query, 1, 1, filter)
	if scimclient.IsStatus(err, http.StatusNotFound) {
		return failed("scim.groups", url+" answered 404: the server has no Groups endpoint",
			"set groups.enabled to false, or enable Groups on the SCIM server")
	}
	if err != nil {
		return scimFailure(cfg, "scim.groups", url, err)
	}
	if filter {
		return ok("scim.groups", "the server answers lookups of groups by displayName")
	}
	return ok("scim.groups", fmt.Sprintf("%d groups on the server", list.TotalResults))
}

// capabilitiesResult is the scim.service_provider_config line: each
// capability and where it came from. A server without
// /ServiceProviderConfig warns while any capability is only assumed.
func capabilitiesResult(caps scimclient.Capabilities, spcURL string) CheckResult {
	var parts []string
	for _, c := range []struct {
		name string
		on   bool
	}{{scimclient.CapPatch, caps.Patch}, {scimclient.CapFilter, caps.Filter}, {scimclient.CapETag, caps.ETag}, {scimclient.CapBulk, caps.Bulk}} {
		part := c.name + " " + yesNo(c.on)
		switch caps.Source(c.name) {
		case "override":
			part += " (scim.capabilities." + c.name + ")"
		case "assumed":
			part += " (assumed)"
		}
		parts = append(parts, part)
	}
	detail := strings.Join(parts, ", ")
	if !caps.Missing {
		return ok("scim.service_provider_config", detail)
	}
	detail = fmt.Sprintf("%s is missing (%s); %s", spcURL, caps.MissingReason, detail)
	if len(caps.Assumed) == 0 {
		return ok("scim.service_provider_config", detail)
	}
	return CheckResult{Name: "scim.service_provider_config", Warn: true, Detail: detail,
		Fix: "set scim.capabilities." + strings.Join(caps.Assumed, ", scim.capabilities.") + " to what the server supports (true or false)"}
}

func yesNo(b bool) string {
	if b {
		return "supported"
	}
	return "not supported"
}

// scimFailure is the failed line of a SCIM check, with the fix for the
// authentication configured.
func scimFailure(cfg *config.Config, name, url string, err error) CheckResult {
	authFix := "put a valid bearer token in scim.token (or scim.token_file)"
	refused := "the server refused the token"
	switch cfg.SCIM.AuthMethod() {
	case config.AuthOAuth2:
		authFix = "check scim.oauth2.client_id, scim.oauth2.client_secret and scim.oauth2.scopes with the owner of the token endpoint " + cfg.SCIM.OAuth2.TokenURL
		refused = "the server refused the OAuth 2 token"
	case config.AuthBasic:
		authFix = "check scim.basic.username and scim.basic.password"
		refused = "the server refused the user and password"
	}
	var se *scimclient.Error
	if errors.As(err, &se) {
		switch se.Status {
		case 401, 403:
			if name == "scim.auth" || strings.Contains(se.Detail, "token endpoint") {
				return failed(name, se.Detail, authFix)
			}
			return failed(name, fmt.Sprintf("%s answered %d: %s (%s)", url, se.Status, refused, se.Detail), authFix)
		case 404:
			return failed(name, fmt.Sprintf("%s answered 404: no SCIM endpoint there", url),
				"set scim.base_url to the SCIM root (it usually ends in /scim/v2)")
		}
		return failed(name, fmt.Sprintf("%s answered %d: %s", url, se.Status, se.Detail), "check the SCIM server")
	}
	if errors.Is(err, scimclient.ErrCertificateRefused) {
		fix := "set scim.cert_file and scim.key_file to a client certificate the server trusts: it asks for one (mTLS)"
		if cfg.SCIM.CertFile != "" {
			fix = "the server does not trust " + cfg.SCIM.CertFile + ": use a certificate issued by a CA it trusts (or renew an expired one)"
		}
		return failed(name, fmt.Sprintf("%s: the server refused the TLS handshake for want of a client certificate it trusts (%v)", url, err), fix)
	}
	return failed(name, fmt.Sprintf("cannot reach %s: %v", url, err),
		"check scim.base_url, DNS, firewalls and (for https) the certificate or scim.ca_file")
}
