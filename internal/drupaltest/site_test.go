package drupaltest_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.RunMain(m)) }

func TestSiteWritePatterns(t *testing.T) {
	ctx := context.Background()
	db := testdb.NewTestDatabase(t, "main_")
	site := &drupaltest.Site{DB: db.DB, Prefix: "main_"}
	if err := site.CreateAnonymous(ctx); err != nil {
		t.Fatal(err)
	}
	uid, err := site.Create(ctx, drupaltest.User{Name: "alice", Mail: drupaltest.Str("alice@example.org"), Status: 1,
		Roles: []string{"editor"}, Fields: map[string]string{"field_first_name": "Alice"}, Translations: []string{"fr"}})
	if err != nil {
		t.Fatal(err)
	}
	if uid != 1 {
		t.Fatalf("first user got uid %d, want 1", uid)
	}
	if err := site.Update(ctx, uid, func(u *drupaltest.User) { u.Mail = drupaltest.Str("new@example.org"); u.Roles = nil }, "field_first_name"); err != nil {
		t.Fatal(err)
	}
	u, err := site.Load(ctx, uid, "field_first_name")
	if err != nil {
		t.Fatal(err)
	}
	if *u.Mail != "new@example.org" || len(u.Roles) != 0 || u.Fields["field_first_name"] != "Alice" || len(u.Translations) != 1 {
		t.Fatalf("after save: %+v", u)
	}
	var n int
	if err := db.DB.QueryRow("SELECT COUNT(*) FROM main_users_field_data WHERE uid = ?", uid).Scan(&n); err != nil || n != 2 {
		t.Fatalf("users_field_data rows = %d, %v; want 2", n, err)
	}
	anon, err := site.Load(ctx, 0)
	if err != nil || anon.Name != "" {
		t.Fatalf("anonymous: %+v %v", anon, err)
	}
	if err := site.Delete(ctx, uid, "field_first_name"); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Load(ctx, uid); !errors.Is(err, drupaltest.ErrNoUser) {
		t.Fatalf("after delete: %v", err)
	}
}
