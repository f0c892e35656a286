package binlog

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// roleTables watches roles as the agent does with groups on: membership
// rows name their role, and the config table's role rows count.
func roleTables(c *Config) {
	for i := range c.Tables {
		if c.Tables[i].Name == "user__roles" {
			c.Tables[i].RoleColumn = "roles_target_id"
		}
	}
	c.Tables = append(c.Tables, Table{Name: "config", RoleConfig: true})
}

func expectRoles(t *testing.T, n Notice, roles ...string) {
	t.Helper()
	if !slices.Equal(n.Roles, roles) && !(len(n.Roles) == 0 && len(roles) == 0) {
		t.Fatalf("notice at %s: roles %v, want %v", n.Pos, n.Roles, roles)
	}
}

// TestRoleChanges: the roles each of Drupal's role writes touches, and
// that other configuration, logins and unchanged role rewrites touch
// none.
func TestRoleChanges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, roleTables)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "ann", Status: 1, Roles: []string{"editor", "author"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.stream(t, f.pos(t), nil)

	// drush role:create: the role's row, then its two action rows.
	if err := f.site.CreateRole(ctx, "reviewer", "Reviewer"); err != nil {
		t.Fatal(err)
	}
	expectRoles(t, r.next(t), "reviewer")
	expectRoles(t, r.next(t))
	expectRoles(t, r.next(t))

	// A user save that gains one role and loses another: Drupal rewrites
	// every user__roles row of the uid; only the changed roles count.
	if err := f.site.Update(ctx, uid, func(u *drupaltest.User) { u.Roles = []string{"editor", "reviewer"} }); err != nil {
		t.Fatal(err)
	}
	n := r.expect(t, f.pos(t), uid)
	expectRoles(t, n, "author", "reviewer")

	// A rename is one UPDATE of the role's row.
	if err := f.site.RenameRole(ctx, "reviewer", "Relecture — Révision"); err != nil {
		t.Fatal(err)
	}
	expectRoles(t, r.expect(t, f.pos(t)), "reviewer")
	// Saving it unchanged touches nothing.
	if err := f.site.RenameRole(ctx, "reviewer", "Relecture — Révision"); err != nil {
		t.Fatal(err)
	}
	// Other configuration objects, logins: nothing.
	for i := 0; i < 3; i++ {
		if err := f.site.SaveConfig(ctx, "views.view.content", `a:1:{s:5:"label";s:7:"Content";}`); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.site.SaveConfig(ctx, "user.role_settings", `a:0:{}`); err != nil {
		t.Fatal(err)
	}
	if err := f.site.Login(ctx, uid, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	last := f.pos(t)
	for {
		n := r.next(t)
		if len(n.Roles) != 0 || len(n.UIDs) != 0 {
			t.Fatalf("notice %+v after unchanged role saves, other config and a login, want none", n)
		}
		if n.Pos.Offset == last.Offset && n.Pos.File == last.File {
			break
		}
	}

	// A site-wide delete: the role's row (and its actions), then later the
	// membership rows of every holder, with no user save.
	if err := f.site.DeleteRoleConfig(ctx, "reviewer"); err != nil {
		t.Fatal(err)
	}
	expectRoles(t, r.next(t), "reviewer")
	expectRoles(t, r.next(t))
	expectRoles(t, r.next(t))
	if err := f.site.DeleteRoleMemberships(ctx, "reviewer"); err != nil {
		t.Fatal(err)
	}
	expectRoles(t, r.expect(t, f.pos(t), uid), "reviewer")
}
