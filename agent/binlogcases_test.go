package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

// End-to-end tests of binlog set-ups that once lost changes silently:
// each runs the agent against a MariaDB configured the way a real site
// may be.

// mixedCaseDSN returns dsn with its database name as an operator may
// write it: "drupal3" becomes "Drupal3".
func mixedCaseDSN(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = strings.ToUpper(cfg.DBName[:1]) + cfg.DBName[1:]
	return cfg.FormatDSN()
}

// TestLowerCaseTableNamesReachTheServer: with lower_case_table_names=1
// the server logs the database as drupal3 when the DSN says Drupal3. The
// initial sync reads through the DSN and works; the changes after it
// must reach the SCIM server too.
func TestLowerCaseTableNamesReachTheServer(t *testing.T) {
	srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--lower-case-table-names=1"}})
	h := newHarness(t, withServer(srv))
	h.cfg.MySQL.DSN = mixedCaseDSN(t, h.cfg.MySQL.DSN)
	results := Check(context.Background(), h.cfg)
	if AnyFailed(results) {
		t.Fatalf("check: %+v", results)
	}
	uid := h.create(drupaltest.User{Name: "casey", Mail: str("casey@example.org"), Status: 1})
	h.start()
	h.settle()
	h.mustServerUser(uid)
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("casey@new.example.org") })
	later := h.create(drupaltest.User{Name: "later", Status: 1})
	h.settle()
	h.mustServerUser(later)
	h.assertServerMatchesDB()
}

// TestCheckSaysHowNamesCompare: check names the lower_case_table_names
// setting and what it means for the DSN's database.
func TestCheckSaysHowNamesCompare(t *testing.T) {
	ctx := context.Background()
	lower := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--lower-case-table-names=1"}})
	for _, tt := range []struct {
		srv   *testdb.Server
		mixed bool // the DSN names the database with a capital
		want  string
	}{
		{testdb.Shared(t), false, "0: database and table names compare exactly"},
		{lower, true, "1: names are stored and logged in lower case and compare case-insensitively (the DSN's database Drupal"},
	} {
		db, err := tt.srv.NewDatabase(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		dsn, err := db.CreateAgentUser(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tt.mixed {
			dsn = mixedCaseDSN(t, dsn)
		}
		srv := scimtest.New(t, scimtest.Options{Token: testToken})
		results := Check(ctx, checkConfig(t, dsn, srv.URL, testToken, ""))
		r, found := findCheck(results, "mysql.lower_case_table_names")
		if !found || !r.OK || !strings.Contains(r.Detail, tt.want) {
			t.Errorf("mysql.lower_case_table_names = %+v (found %v), want %q", r, found, tt.want)
		}
		db.Close()
	}
}
