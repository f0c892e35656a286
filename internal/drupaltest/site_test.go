package drupaltest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
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

// TestCreateMany: a bulk import leaves the rows Create would (without
// translations and fields), with uids after the largest.
func TestCreateMany(t *testing.T) {
	ctx := context.Background()
	db := testdb.NewTestDatabase(t, "")
	site := &drupaltest.Site{DB: db.DB}
	first, err := site.Create(ctx, drupaltest.User{Name: "first", Status: 1})
	if err != nil {
		t.Fatal(err)
	}
	users := make([]drupaltest.User, 1201)
	for i := range users {
		users[i] = drupaltest.User{Name: fmt.Sprintf("bulk%04d", i), Mail: drupaltest.Str(fmt.Sprintf("bulk%04d@example.org", i)), Status: i % 2,
			Timezone: "Europe/Berlin"}
		if i%3 == 0 {
			users[i].Roles = []string{"editor", "admin"}
		}
	}
	uids, err := site.CreateMany(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != len(users) || uids[0] != first+1 || uids[len(uids)-1] != first+uint32(len(users)) {
		t.Fatalf("uids %d..%d (%d), want %d..%d", uids[0], uids[len(uids)-1], len(uids), first+1, first+uint32(len(users)))
	}
	for _, i := range []int{0, 1, 600, 1200} {
		u, err := site.Load(ctx, uids[i])
		if err != nil {
			t.Fatal(err)
		}
		want := users[i]
		if u.Name != want.Name || *u.Mail != *want.Mail || u.Status != want.Status || u.Timezone != "Europe/Berlin" ||
			!slices.Equal(u.Roles, want.Roles) || u.UUID == "" || u.Langcode != "en" {
			t.Fatalf("user %d read back as %+v, want %+v", i, u, want)
		}
	}
}
