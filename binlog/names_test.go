package binlog

import (
	"context"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
	"go.uber.org/zap"
)

// TestLowerCaseTableNames: with lower_case_table_names=1 the server
// stores and logs every database and table name in lower case, whatever
// case the DSN or the prefix was written in. The stream must compare
// names as the server does, or it drops every change while its position
// advances.
func TestLowerCaseTableNames(t *testing.T) {
	// Without column names in the binlog they are read from
	// information_schema, by the names the server stores.
	for _, metadata := range []string{"FULL", "MINIMAL"} {
		t.Run(metadata, func(t *testing.T) {
			ctx := context.Background()
			srv := testdb.StartPrivate(t, testdb.Options{ExtraArgs: []string{"--lower-case-table-names=1", "--binlog-row-metadata=" + metadata}})
			db, err := srv.NewDatabase(ctx, "main_")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			f := newFixtureOn(t, db, mappedColumns, func(c *Config) {
				c.DSN = agenttest.MixedCaseDSN(t, c.DSN)
				// The prefix as settings.php may spell it.
				for i := range c.Tables {
					c.Tables[i].Name = "Main_" + strings.TrimPrefix(c.Tables[i].Name, "main_")
				}
			})
			if n := f.s.LowerCaseTableNames(); n != 1 {
				t.Fatalf("LowerCaseTableNames() = %d, want 1", n)
			}
			r := f.stream(t, f.pos(t), nil)
			uid, err := f.site.Create(ctx, drupaltest.User{Name: "lower", Mail: drupaltest.Str("lower@example.org"), Roles: []string{"editor"}})
			if err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), uid)
			if err := f.site.Update(ctx, uid, func(u *drupaltest.User) { u.Mail = drupaltest.Str("lower2@example.org") }); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t), uid)
			if err := f.site.Login(ctx, uid, 1_800_000_000); err != nil {
				t.Fatal(err)
			}
			r.expect(t, f.pos(t)) // logins still filtered: the columns are known
			// A TRUNCATE of a watched table, named in yet another case, is
			// still one of ours.
			f.exec(t, "TRUNCATE TABLE MAIN_USER__ROLES")
			if err := r.wait(t); err == nil || !strings.Contains(err.Error(), "TRUNCATE of watched table main_user__roles") {
				t.Fatalf("Stream returned %v after a TRUNCATE of a watched table, want ErrResyncNeeded", err)
			}
		})
	}
}

func TestNameRule(t *testing.T) {
	tests := []struct {
		setting int
		fold    bool
		stored  string // how "DrupalSite" is stored
	}{{0, false, "DrupalSite"}, {1, true, "drupalsite"}, {2, true, "DrupalSite"}}
	for _, tt := range tests {
		n := nameRuleFor(tt.setting)
		if n.fold != tt.fold || n.stored("DrupalSite") != tt.stored {
			t.Errorf("lower_case_table_names=%d: fold %v, stored %q; want %v, %q", tt.setting, n.fold, n.stored("DrupalSite"), tt.fold, tt.stored)
		}
		if got := n.equal("DrupalSite", "drupalsite"); got != tt.fold {
			t.Errorf("lower_case_table_names=%d: DrupalSite = drupalsite is %v", tt.setting, got)
		}
		if got := n.equalBytes([]byte("drupalsite"), "DrupalSite"); got != tt.fold {
			t.Errorf("lower_case_table_names=%d: equalBytes is %v", tt.setting, got)
		}
		if !n.equal("users", "users") || n.equal("users", "users_data") {
			t.Errorf("lower_case_table_names=%d: exact names misjudged", tt.setting)
		}
	}
}

// TestAssemblerComparesNamesAsTheServer: the watched tables and schema
// match the binlog's names exactly with lower_case_table_names=0 and
// whatever their case otherwise, for rows and for a TRUNCATE alike.
func TestAssemblerComparesNamesAsTheServer(t *testing.T) {
	tests := []struct {
		setting int
		match   bool // whether Drupal.Users matches drupal.users
	}{{0, false}, {1, true}, {2, true}}
	for _, tt := range tests {
		n := nameRuleFor(tt.setting)
		a := newAssembler("Drupal", []Table{{Name: "Users", KeyColumn: "uid"}}, n, fakeColumns{}, nil, zap.NewNop())
		if got := a.watches([]byte("drupal"), []byte("users")); got != tt.match {
			t.Errorf("lower_case_table_names=%d: watches(drupal.users) = %v", tt.setting, got)
		}
		if !a.watches([]byte("Drupal"), []byte("Users")) || a.watches([]byte("Drupal"), []byte("Users_data")) {
			t.Errorf("lower_case_table_names=%d: exact names misjudged", tt.setting)
		}
		got := a.emptiedTable("drupal", []byte("TRUNCATE TABLE users")) != ""
		if got != tt.match {
			t.Errorf("lower_case_table_names=%d: TRUNCATE TABLE users counted %v", tt.setting, got)
		}
		if a.emptiedTable("Drupal", []byte("TRUNCATE TABLE Users")) != "Users" {
			t.Errorf("lower_case_table_names=%d: TRUNCATE TABLE Users not counted", tt.setting)
		}
	}
}
