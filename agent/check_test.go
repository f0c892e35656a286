package agent

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// checkConfig returns a config for dsn and the SCIM server at url.
func checkConfig(t *testing.T, dsn, url, token, prefix string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf("mysql:\n  dsn: %q\n  table_prefix: %q\nscim:\n  base_url: %s\n  token: %q\n  timeout: 2s\n",
		dsn, prefix, url, token)
	cfg, err := config.Parse([]byte(doc), "check.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func findCheck(results []CheckResult, name string) (CheckResult, bool) {
	for _, r := range results {
		if r.Name == name {
			return r, true
		}
	}
	return CheckResult{}, false
}

func TestCheckPassesWhenAllIsRight(t *testing.T) {
	db := testdb.NewTestDatabase(t, "")
	dsn, err := db.CreateAgentUser(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := scimtest.New(t, scimtest.Options{Token: testToken})
	results := Check(context.Background(), checkConfig(t, dsn, srv.URL, testToken, ""))
	if AnyFailed(results) {
		t.Fatalf("checks failed: %+v", results)
	}
	for _, name := range []string{"mysql.connect", "mysql.log_bin", "mysql.binlog_format", "mysql.binlog_row_image",
		"mysql.binlog_row_metadata", "mysql.grants", "mysql.tables", "scim.service_provider_config", "scim.users"} {
		r, ok := findCheck(results, name)
		if !ok || !r.OK {
			t.Errorf("%s: %+v (found %v)", name, r, ok)
		}
	}
}

func TestCheckWarnsWhenTheServerCannotFilter(t *testing.T) {
	db := testdb.NewTestDatabase(t, "")
	dsn, err := db.CreateAgentUser(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := scimtest.New(t, scimtest.Options{Token: testToken, DisableFilter: true})
	results := Check(context.Background(), checkConfig(t, dsn, srv.URL, testToken, ""))
	if AnyFailed(results) {
		t.Fatalf("a server without filter stops the agent: %+v", results)
	}
	r, ok := findCheck(results, "scim.filter")
	if !ok || r.OK || !r.Warn || !strings.Contains(r.Detail, "by reading every account") {
		t.Fatalf("scim.filter = %+v (found %v)", r, ok)
	}
	// With filtering, no such line.
	srv = scimtest.New(t, scimtest.Options{Token: testToken})
	if r, ok := findCheck(Check(context.Background(), checkConfig(t, dsn, srv.URL, testToken, "")), "scim.filter"); ok {
		t.Fatalf("scim.filter reported for a server that filters: %+v", r)
	}
}

// TestCheckGroups: with groups enabled, check makes a lookup of a group
// as the agent would, and fails on a server of Users only, naming the
// key to change; with groups off it asks nothing of /Groups.
func TestCheckGroups(t *testing.T) {
	db := testdb.NewTestDatabase(t, "")
	dsn, err := db.CreateAgentUser(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		opts         scimtest.Options
		groups       bool
		ok           bool
		detail, fix  string
		groupQueries int
	}{
		{"a server that filters", scimtest.Options{}, true, true, "answers lookups of groups by displayName", "", 1},
		{"a server that cannot filter", scimtest.Options{DisableFilter: true}, true, true, "0 groups on the server", "", 1},
		{"a server of Users only", scimtest.Options{NoGroups: true}, true, false, "answered 404: the server has no Groups endpoint", "groups.enabled to false", 1},
		{"groups off", scimtest.Options{NoGroups: true}, false, true, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Token = testToken
			srv := scimtest.New(t, tc.opts)
			cfg := checkConfig(t, dsn, srv.URL, testToken, "")
			cfg.Groups.Enabled = tc.groups
			results := Check(context.Background(), cfg)
			if n := srv.CountRequests("GET", "/Groups"); n != tc.groupQueries {
				t.Fatalf("%d GET /Groups, want %d", n, tc.groupQueries)
			}
			if AnyFailed(results) == tc.ok {
				t.Fatalf("failed %v, want %v: %+v", AnyFailed(results), !tc.ok, results)
			}
			r, found := findCheck(results, "scim.groups")
			if !tc.groups {
				if found {
					t.Fatalf("scim.groups reported with groups off: %+v", r)
				}
				return
			}
			if !found || r.OK != tc.ok || !strings.Contains(r.Detail, tc.detail) || !strings.Contains(r.Fix, tc.fix) {
				t.Fatalf("scim.groups = %+v (found %v); want ok %v, detail %q, fix %q", r, found, tc.ok, tc.detail, tc.fix)
			}
		})
	}
}

// TestCheckNamesEachFailure runs check against each broken set-up the
// issue lists and expects a failing line naming it, with the fix.
func TestCheckNamesEachFailure(t *testing.T) {
	ctx := context.Background()
	db := testdb.NewTestDatabase(t, "")
	dsn, err := db.CreateAgentUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv := scimtest.New(t, scimtest.Options{Token: testToken})
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + closed.Addr().String() + "/scim/v2"
	closed.Close()

	// An account with SELECT only.
	root := testdb.Shared(t).Root()
	user := "nogrant_" + db.Name
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'pw-nogrant'", user),
		fmt.Sprintf("GRANT SELECT ON `%s`.* TO '%s'@'%%'", db.Name, user),
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	noGrantDSN := db.DSN(user, "pw-nogrant")

	noBinlog := testdb.StartPrivate(t, testdb.Options{NoBinlog: true})
	mixed := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--binlog-format=MIXED"}})
	privateDSN := func(s *testdb.Server) string {
		d, err := s.NewDatabase(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		dsn, err := d.CreateAgentUser(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return dsn
	}

	tests := []struct {
		name   string
		cfg    *config.Config
		check  string
		detail string
		fix    string
	}{
		{"binlog off", checkConfig(t, privateDSN(noBinlog), srv.URL, testToken, ""),
			"mysql.log_bin", "the binary log is off", "log_bin = mysql-bin"},
		{"binlog_format MIXED", checkConfig(t, privateDSN(mixed), srv.URL, testToken, ""),
			"mysql.binlog_format", "is MIXED", "SET GLOBAL binlog_format = 'ROW'"},
		{"wrong DB password", checkConfig(t, strings.Replace(dsn, ":pw-", ":wrong-", 1), srv.URL, testToken, ""),
			"mysql.connect", "refused the login", "check the user and password in mysql.dsn"},
		{"missing grant", checkConfig(t, noGrantDSN, srv.URL, testToken, ""),
			"mysql.grants", "lacks REPLICATION SLAVE, REPLICATION CLIENT", "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '" + user + "'@'%'"},
		{"wrong table prefix", checkConfig(t, dsn, srv.URL, testToken, "main_"),
			"mysql.tables", `no table main_users`, "mysql.table_prefix"},
		{"wrong SCIM token", checkConfig(t, dsn, srv.URL, "not-the-token", ""),
			"scim.service_provider_config", "refused the token", "scim.token"},
		{"unreachable SCIM URL", checkConfig(t, dsn, deadURL, testToken, ""),
			"scim.service_provider_config", "cannot reach", "check scim.base_url"},
		{"no SCIM endpoint at the URL", checkConfig(t, dsn, strings.TrimSuffix(srv.URL, "/scim/v2")+"/nothing", testToken, ""),
			"scim.service_provider_config", "answered 404", "/scim/v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := Check(ctx, tt.cfg)
			if !AnyFailed(results) {
				t.Fatalf("no failure: %+v", results)
			}
			r, ok := findCheck(results, tt.check)
			if !ok || r.OK {
				t.Fatalf("%s = %+v (found %v); all: %+v", tt.check, r, ok, results)
			}
			if !strings.Contains(r.Detail, tt.detail) || !strings.Contains(r.Fix, tt.fix) {
				t.Fatalf("%s: detail %q fix %q; want them to contain %q and %q", tt.check, r.Detail, r.Fix, tt.detail, tt.fix)
			}
			for _, other := range results {
				if strings.Contains(other.Detail+other.Fix, "pw-") || strings.Contains(other.Detail+other.Fix, testToken) {
					t.Fatalf("a check line leaks a secret: %+v", other)
				}
			}
		})
	}
}
