package binlog

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
)

func TestCreateIsOneNotice(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	start := f.pos(t)
	r := f.stream(t, start, nil)

	before := time.Now().Add(-2 * time.Second)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "alice", Mail: drupaltest.Str("alice@example.org"),
		Status: 1, Roles: []string{"editor"}, Fields: map[string]string{"field_first_name": "Alice"}})
	if err != nil {
		t.Fatal(err)
	}
	after := f.pos(t)
	n := r.expect(t, after, uid)
	if n.Pos.File == start.File && n.Pos.Offset <= start.Offset {
		t.Errorf("position did not advance: %s after %s", n.Pos, start)
	}
	if n.Pos.GTID == "" || n.Pos.GTID == start.GTID {
		t.Errorf("GTID %q not advanced from %q", n.Pos.GTID, start.GTID)
	}
	if n.Time.Before(before) || n.Time.After(time.Now().Add(2*time.Second)) {
		t.Errorf("notice time %s, want about now", n.Time)
	}
}

func TestSaves(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		columns []string // users_field_data's Table.Columns
		change  func(*drupaltest.User)
		touched bool
	}{
		{"mail changed", mappedColumns, func(u *drupaltest.User) { u.Mail = drupaltest.Str("new@example.org") }, true},
		{"blocked", mappedColumns, func(u *drupaltest.User) { u.Status = 0 }, true},
		{"name changed", mappedColumns, func(u *drupaltest.User) { u.Name = "bob2" }, true},
		{"only pass and changed", mappedColumns, func(u *drupaltest.User) { u.Pass = "$2y$10$rehashed" }, false},
		{"nothing changed", mappedColumns, func(u *drupaltest.User) {}, false},
		{"only pass, every column counts", nil, func(u *drupaltest.User) { u.Pass = "$2y$10$rehashed" }, true},
		{"roles changed", mappedColumns, func(u *drupaltest.User) { u.Roles = []string{"editor", "admin"} }, true},
		{"field changed", mappedColumns, func(u *drupaltest.User) { u.Fields["field_first_name"] = "Robert" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "", tt.columns, nil)
			uid, err := f.site.Create(ctx, drupaltest.User{Name: "bob", Mail: drupaltest.Str("bob@example.org"), Status: 1,
				Roles: []string{"editor"}, Translations: []string{"de"}, Fields: map[string]string{"field_first_name": "Bob"}})
			if err != nil {
				t.Fatal(err)
			}
			start := f.pos(t)
			r := f.stream(t, start, nil)
			if err := f.site.Update(ctx, uid, tt.change, "field_first_name"); err != nil {
				t.Fatal(err)
			}
			var want []uint32
			if tt.touched {
				want = []uint32{uid}
			}
			r.expect(t, f.pos(t), want...)
		})
	}
}

func TestLoginsTouchNoUID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "carol", Mail: drupaltest.Str("carol@example.org"), Status: 1, Translations: []string{"fr"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.stream(t, f.pos(t), nil)

	if err := f.site.Login(ctx, uid, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t))
	if err := f.site.Access(ctx, uid, time.Now().Unix()+200); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t))

	const logins = 1000
	for i := range logins {
		if err := f.site.Login(ctx, uid, time.Now().Unix()+int64(300+i)); err != nil {
			t.Fatal(err)
		}
	}
	last := f.pos(t)
	for i := range logins {
		n := r.next(t)
		if len(n.UIDs) != 0 {
			t.Fatalf("login %d: notice %+v, want no uid", i, n)
		}
		if i == logins-1 {
			checkNotice(t, n, last)
		}
	}
}

func TestLoginWithEveryColumnCounting(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", nil, nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "dave", Status: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := f.stream(t, f.pos(t), nil)
	if err := f.site.Login(ctx, uid, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), uid)
}

func TestDeleteReportsAccount(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "erin", Status: 1, Roles: []string{"editor"},
		Translations: []string{"de"}, Fields: map[string]string{"field_first_name": "Erin"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.stream(t, f.pos(t), nil)
	if err := f.site.Delete(ctx, uid, "field_first_name"); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), uid)
}

func TestUnwatchedTablesAndSchemas(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	other := testdb.NewTestDatabase(t, "")
	otherSite := &drupaltest.Site{DB: other.DB}
	var rowsEvents []string
	f.s.cfg.OnRowsEvent = func(table string) { rowsEvents = append(rowsEvents, table) }
	r := f.stream(t, f.pos(t), nil)

	steps := []struct {
		name string
		do   func() error
	}{
		{"users_data", func() error {
			_, err := f.db.DB.Exec("INSERT INTO users_data (uid, module, name, value) VALUES (7, 'm', 'k', 'v')")
			return err
		}},
		{"create users_extra", func() error {
			_, err := f.db.DB.Exec("CREATE TABLE users_extra (uid int unsigned NOT NULL PRIMARY KEY, note varchar(20)) ENGINE=InnoDB")
			return err
		}},
		{"users_extra", func() error {
			_, err := f.db.DB.Exec("INSERT INTO users_extra VALUES (7, 'x')")
			return err
		}},
		{"other database: create", func() error {
			_, err := otherSite.Create(ctx, drupaltest.User{UID: 7, Name: "frank", Roles: []string{"editor"}})
			return err
		}},
		{"other database: save", func() error {
			return otherSite.Update(ctx, 7, func(u *drupaltest.User) { u.Mail = drupaltest.Str("f@example.org") })
		}},
		{"other database: delete", func() error { return otherSite.Delete(ctx, 7) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		r.expect(t, f.pos(t))
	}
	if want := []string{"users_data", "users_extra"}; !slices.Equal(rowsEvents, want) {
		t.Errorf("OnRowsEvent got %v, want %v", rowsEvents, want)
	}
}

func TestTablePrefix(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "main_", mappedColumns, nil)
	r := f.stream(t, f.pos(t), nil)
	uid, err := f.site.Create(ctx, drupaltest.User{Name: "gina", Roles: []string{"editor"}})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), uid)

	// Unprefixed tables of the same names are another site's: not watched.
	f.exec(t, "CREATE TABLE users LIKE main_users")
	r.next(t)
	f.exec(t, "CREATE TABLE users_field_data LIKE main_users_field_data")
	r.next(t)
	plain := &drupaltest.Site{DB: f.db.DB}
	if _, err := plain.Create(ctx, drupaltest.User{UID: 99, Name: "henry"}); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t))
}

func TestTranslationsAndRoleDeletion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", mappedColumns, nil)
	r := f.stream(t, f.pos(t), nil)
	ivy, err := f.site.Create(ctx, drupaltest.User{Name: "ivy", Mail: drupaltest.Str("ivy@example.org"), Status: 1,
		Roles: []string{"editor"}, Translations: []string{"de", "fr"}})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), ivy)
	if err := f.site.Update(ctx, ivy, func(u *drupaltest.User) { u.Mail = drupaltest.Str("ivy@example.com") }); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), ivy)
	if err := f.site.Login(ctx, ivy, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t))
	if err := f.site.Update(ctx, ivy, func(u *drupaltest.User) { u.Pass = "$2y$10$other" }); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t))

	var uids []uint32
	for i, roles := range [][]string{{"editor"}, {"admin"}, {"admin", "editor"}} {
		uid, err := f.site.Create(ctx, drupaltest.User{Name: "user" + string(rune('a'+i)), Roles: roles})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
		r.expect(t, f.pos(t), uid)
	}
	if err := f.site.DeleteRole(ctx, "editor"); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), ivy, uids[0], uids[2])
}
