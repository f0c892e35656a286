package drupal_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/testdb"
	"github.com/scim-agent/scim-agent/mapping"
)

func TestMain(m *testing.M) { os.Exit(testdb.RunMain(m)) }

func newReader(t *testing.T, prefix string) (*drupal.Reader, *drupaltest.Site, *testdb.Database) {
	t.Helper()
	db := testdb.NewTestDatabase(t, prefix)
	m, err := mapping.New(map[string]string{"name.givenName": "field_first_name", "roles": "roles"})
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := db.CreateAgentUser(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	agentDB, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentDB.Close() })
	return drupal.NewReader(agentDB, drupal.Tables{Prefix: prefix}, m.Sources()), &drupaltest.Site{DB: db.DB, Prefix: prefix}, db
}

// begin opens a transaction of the site's own, rolled back at the
// test's end unless committed.
func begin(t *testing.T, db *testdb.Database) *sql.Tx {
	t.Helper()
	tx, err := db.DB.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	return tx
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	r, site, _ := newReader(t, "main_")
	uid, err := site.Create(ctx, drupaltest.User{Name: "Zoë", Mail: drupaltest.Str("zoe@example.org"), Status: 1,
		Timezone: "Europe/Oslo", Roles: []string{"editor", "admin"}, Fields: map[string]string{"field_first_name": "Zoë"},
		Translations: []string{"de", "fr"}})
	if err != nil {
		t.Fatal(err)
	}
	// Translation rows carry their own (here: different) values; only the
	// default_langcode row counts.
	if _, err := site.DB.Exec("UPDATE main_users_field_data SET timezone = 'UTC' WHERE uid = ? AND default_langcode = 0", uid); err != nil {
		t.Fatal(err)
	}
	nullMail, err := site.Create(ctx, drupaltest.User{Name: "nomail", Status: 0})
	if err != nil {
		t.Fatal(err)
	}

	a, ok, err := r.Load(ctx, uid)
	if err != nil || !ok {
		t.Fatalf("Load = %v, %v", ok, err)
	}
	want := map[string]any{"mail": "zoe@example.org", "name": "Zoë", "preferred_langcode": "en", "status": int64(1),
		"timezone": "Europe/Oslo", "roles": []string{"editor", "admin"},
		"field_first_name.field_first_name_value": "Zoë"}
	if !reflect.DeepEqual(a.Values, want) || a.UID != uid || a.UUID == "" || a.Langcode != "en" {
		t.Fatalf("Load = %+v\nwant values %v", a, want)
	}

	a, ok, err = r.Load(ctx, nullMail)
	if err != nil || !ok || a.Values["mail"] != nil || a.Values["roles"] != nil && len(a.Values["roles"].([]string)) != 0 {
		t.Fatalf("Load(null mail) = %+v, %v, %v", a, ok, err)
	}

	if err := site.Delete(ctx, uid, "field_first_name"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Load(ctx, uid); ok || err != nil {
		t.Fatalf("Load after delete = %v, %v", ok, err)
	}
}

func TestPageAndFind(t *testing.T) {
	ctx := context.Background()
	r, site, _ := newReader(t, "")
	if err := site.CreateAnonymous(ctx); err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		uid, err := site.Create(ctx, drupaltest.User{Name: name, Mail: drupaltest.Str("same@example.org"), Status: 1})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	var seen []uint32
	var from uint32
	first := true
	for {
		page, err := r.Page(ctx, from, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			if first && a.UID != 0 {
				t.Fatalf("first account is uid %d, want 0", a.UID)
			}
			first = false
			if a.UID != 0 {
				seen = append(seen, a.UID)
			}
			from = a.UID + 1
		}
		if len(page) < 2 {
			break
		}
	}
	if !reflect.DeepEqual(seen, uids) {
		t.Fatalf("paged uids = %v, want %v", seen, uids)
	}
	all, err := r.UIDs(ctx, 1, 3)
	if err != nil || !reflect.DeepEqual(all, uids[:3]) {
		t.Fatalf("UIDs(1, 3) = %v, %v; want %v", all, err, uids[:3])
	}
	if n, err := r.Count(ctx); err != nil || n != 6 {
		t.Fatalf("Count = %d, %v; want 6 (with uid 0)", n, err)
	}
	many, err := r.LoadMany(ctx, []uint32{uids[1], uids[3], 9999})
	if err != nil || len(many) != 2 || many[uids[3]].Values["name"] != "d" {
		t.Fatalf("LoadMany = %v, %v", many, err)
	}
	got, err := r.FindByName(ctx, "c")
	if err != nil || len(got) != 1 || got[0] != uids[2] {
		t.Fatalf("FindByName = %v, %v", got, err)
	}
	got, err = r.FindByMail(ctx, "same@example.org")
	if err != nil || len(got) != 5 {
		t.Fatalf("FindByMail = %v, %v", got, err)
	}
	if _, err := r.FindByName(ctx, "nobody"); err == nil {
		t.Fatal("FindByName(nobody) found someone")
	}
}

// TestLoadWaitsForUncommittedSave proves the barrier: a read that starts
// while a Drupal save is still uncommitted returns the saved values, not
// the old ones.
func TestLoadWaitsForUncommittedWrites(t *testing.T) {
	tests := []struct {
		name  string
		write func(tx *sql.Tx, uid uint32) error
		check func(a drupal.Account) error
	}{
		{"Drupal save", func(tx *sql.Tx, uid uint32) error {
			tx.Exec("UPDATE users SET uuid = uuid WHERE uid = ?", uid)
			tx.Exec("DELETE FROM users_field_data WHERE uid = ?", uid)
			_, err := tx.Exec(`INSERT INTO users_field_data (uid, langcode, preferred_langcode, name, mail, status, created, changed, access, login, default_langcode)
				VALUES (?, 'en', 'en', 'w', 'new@example.org', 1, 1, 2, 0, 0, 1)`, uid)
			return err
		}, func(a drupal.Account) error {
			if a.Values["mail"] != "new@example.org" {
				return fmt.Errorf("mail %v, want the committed new@example.org", a.Values["mail"])
			}
			return nil
		}},
		// A module or a migration writing a field table alone, with no
		// users row in the transaction.
		{"field table alone", func(tx *sql.Tx, uid uint32) error {
			_, err := tx.Exec("UPDATE user__field_first_name SET field_first_name_value = 'Neu' WHERE entity_id = ?", uid)
			return err
		}, func(a drupal.Account) error {
			if got := a.Values["field_first_name.field_first_name_value"]; got != "Neu" {
				return fmt.Errorf("first name %v, want the committed Neu", got)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r, site, db := newReader(t, "")
			uid, err := site.Create(ctx, drupaltest.User{Name: "w", Mail: drupaltest.Str("old@example.org"), Status: 1,
				Fields: map[string]string{"field_first_name": "Alt"}})
			if err != nil {
				t.Fatal(err)
			}
			tx := begin(t, db)
			if err := tt.write(tx, uid); err != nil {
				t.Fatal(err)
			}

			done := make(chan drupal.Account, 1)
			loadCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				a, _, err := r.Load(loadCtx, uid)
				if err != nil && loadCtx.Err() == nil {
					t.Error(err)
				}
				done <- a
			}()
			// Wait until the reader has found the writer's row locks,
			// then commit.
			agenttest.Eventually(t, "the reader to wait for the uncommitted write", func() bool {
				if r.Conflicts() > 0 {
					return true
				}
				select {
				case a := <-done:
					t.Fatalf("Load returned %v before the write committed", a.Values)
				default:
				}
				return false
			})
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := tt.check(<-done); err != nil {
				t.Fatalf("Load read %v", err)
			}
		})
	}
}

// UIDs lists a uid whose insert is in the binlog but not yet committed
// (an XA transaction prepared and held): it waits for the commit, trying
// again as long as the insert holds its lock.
func TestUIDsWaitsForPreparedInserts(t *testing.T) {
	ctx := context.Background()
	db := testdb.NewTestDatabase(t, "")
	site := &drupaltest.Site{DB: db.DB}
	if _, err := site.Create(ctx, drupaltest.User{UID: 1, Name: "one", Status: 1}); err != nil {
		t.Fatal(err)
	}
	dsn, err := db.CreateAgentUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agentDB, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer agentDB.Close()
	m, _ := mapping.New(nil)
	r := drupal.NewReader(agentDB, drupal.Tables{}, m.Sources())

	conn, err := db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"XA START 'p'", "INSERT INTO users (uid, uuid, langcode) VALUES (2, 'u-2', 'en')", "XA END 'p'", "XA PREPARE 'p'"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	done := make(chan []uint32, 1)
	go func() {
		uids, err := r.UIDs(ctx, 0, 10)
		if err != nil {
			t.Error(err)
		}
		done <- uids
	}()
	// Two tries: the first found the insert's lock, and the listing
	// tried again.
	agenttest.Eventually(t, "UIDs to wait for the prepared insert", func() bool {
		if r.Conflicts() >= 2 {
			return true
		}
		select {
		case uids := <-done:
			t.Fatalf("UIDs returned %v before the prepared insert committed", uids)
		default:
		}
		return false
	})
	if _, err := conn.ExecContext(ctx, "XA COMMIT 'p'"); err != nil {
		t.Fatal(err)
	}
	if uids := <-done; !reflect.DeepEqual(uids, []uint32{1, 2}) {
		t.Fatalf("UIDs = %v, want [1 2]", uids)
	}
}

// TestDescribe: an account described table by table holds what was read,
// and only that (never pass, which no query selects).
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	r, site, _ := newReader(t, "d_")
	uid, err := site.Create(ctx, drupaltest.User{Name: "ann", Mail: drupaltest.Str("ann@example.org"), Status: 1,
		Roles: []string{"editor"}, Fields: map[string]string{"field_first_name": "Ann"}})
	if err != nil {
		t.Fatal(err)
	}
	a, ok, err := r.Load(ctx, uid)
	if err != nil || !ok {
		t.Fatalf("Load = %v, %v", ok, err)
	}
	got := r.Describe(a)
	want := []drupal.TableValues{
		{Table: "d_users", Values: map[string]any{"uid": int64(uid), "uuid": a.UUID, "langcode": "en"}},
		{Table: "d_users_field_data", Values: map[string]any{"mail": "ann@example.org", "name": "ann", "preferred_langcode": "en",
			"status": int64(1), "timezone": nil}},
		{Table: "d_user__roles", Values: map[string]any{"roles_target_id": []string{"editor"}}},
		{Table: "d_user__field_first_name", Values: map[string]any{"field_first_name_value": "Ann"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Describe =\n%#v\nwant\n%#v", got, want)
	}
	if d := r.Describe(drupal.Account{UID: 9, UUID: "u", Langcode: "en"}); len(d) != 1 {
		t.Fatalf("an account without its data row: %#v", d)
	}
}

// TestLoadPageWaitsForUncommittedWrites proves the page's barrier: a page
// read while a write to one of its users is still uncommitted returns the
// written values, as Load does for one user.
func TestLoadPageWaitsForUncommittedWrites(t *testing.T) {
	tests := []struct {
		name  string
		write func(tx *sql.Tx, uid uint32) error
		check func(a drupal.Account, ok bool) error
	}{
		{"Drupal save", func(tx *sql.Tx, uid uint32) error {
			tx.Exec("UPDATE users SET uuid = uuid WHERE uid = ?", uid)
			tx.Exec("DELETE FROM users_field_data WHERE uid = ?", uid)
			_, err := tx.Exec(`INSERT INTO users_field_data (uid, langcode, preferred_langcode, name, mail, status, created, changed, access, login, default_langcode)
				VALUES (?, 'en', 'en', 'w', 'new@example.org', 1, 1, 2, 0, 0, 1)`, uid)
			return err
		}, func(a drupal.Account, ok bool) error {
			if !ok || a.Values["mail"] != "new@example.org" {
				return fmt.Errorf("mail %v, want the committed new@example.org", a.Values["mail"])
			}
			return nil
		}},
		{"field table alone", func(tx *sql.Tx, uid uint32) error {
			_, err := tx.Exec("UPDATE user__field_first_name SET field_first_name_value = 'Neu' WHERE entity_id = ?", uid)
			return err
		}, func(a drupal.Account, ok bool) error {
			if got := a.Values["field_first_name.field_first_name_value"]; !ok || got != "Neu" {
				return fmt.Errorf("first name %v, want the committed Neu", got)
			}
			return nil
		}},
		{"roles alone", func(tx *sql.Tx, uid uint32) error {
			_, err := tx.Exec("INSERT INTO user__roles (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES ('user', 0, ?, ?, 'en', 0, 'editor')", uid, uid)
			return err
		}, func(a drupal.Account, ok bool) error {
			if got, _ := a.Values["roles"].([]string); !ok || !reflect.DeepEqual(got, []string{"editor"}) {
				return fmt.Errorf("roles %v, want the committed [editor]", a.Values["roles"])
			}
			return nil
		}},
		{"deletion", func(tx *sql.Tx, uid uint32) error {
			tx.Exec("DELETE FROM users WHERE uid = ?", uid)
			_, err := tx.Exec("DELETE FROM users_field_data WHERE uid = ?", uid)
			return err
		}, func(a drupal.Account, ok bool) error {
			if ok {
				return fmt.Errorf("the deleted user read as %v", a.Values)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r, site, db := newReader(t, "")
			var uids []uint32
			for i := range 5 {
				uid, err := site.Create(ctx, drupaltest.User{Name: fmt.Sprintf("w%d", i), Mail: drupaltest.Str("old@example.org"), Status: 1,
					Fields: map[string]string{"field_first_name": "Alt"}})
				if err != nil {
					t.Fatal(err)
				}
				uids = append(uids, uid)
			}
			written := uids[3]
			tx := begin(t, db)
			if err := tt.write(tx, written); err != nil {
				t.Fatal(err)
			}

			done := make(chan map[uint32]drupal.Account, 1)
			loadCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				page, err := r.LoadPage(loadCtx, append(uids, 9999))
				if err != nil && loadCtx.Err() == nil {
					t.Error(err)
				}
				done <- page
			}()
			returned := false
			waiting := agenttest.Poll(10*time.Second, func() bool {
				if r.Conflicts() > 0 {
					return true
				}
				select {
				case page := <-done:
					t.Errorf("LoadPage returned %v before the write committed", page[written].Values)
					returned = true
					return true
				default:
					return false
				}
			})
			if returned {
				t.FailNow()
			}
			if !waiting {
				t.Fatal("the page read never waited for the uncommitted write")
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			page := <-done
			a, ok := page[written]
			if err := tt.check(a, ok); err != nil {
				t.Fatalf("LoadPage read %v", err)
			}
			want := len(uids)
			if _, present := page[written]; !present {
				want--
			}
			if _, ok := page[9999]; ok || len(page) != want {
				t.Fatalf("page of %d accounts, want %d (uid 9999 has none)", len(page), want)
			}
			for _, uid := range uids {
				if uid == written {
					continue
				}
				if want, _, _ := r.Load(ctx, uid); !reflect.DeepEqual(page[uid], want) {
					t.Fatalf("uid %d paged as %+v, Load reads %+v", uid, page[uid], want)
				}
			}
		})
	}
}

// TestLockingReadsNeverDeadlockADrupalWrite: a Drupal transaction holds
// one user's rows and then writes another's. A locking read of both that
// waited for the first while holding the second closed a cycle, and
// InnoDB rolled one back (CI saw Drupal's INSERT fail with Error 1213).
// The read must let the write through and read what it committed, and
// the write must commit.
func TestLockingReadsNeverDeadlockADrupalWrite(t *testing.T) {
	reads := []struct {
		name string
		read func(r *drupal.Reader, ctx context.Context, uids []uint32) error
	}{
		{"LoadPage", func(r *drupal.Reader, ctx context.Context, uids []uint32) error {
			_, err := r.LoadPage(ctx, uids)
			return err
		}},
		{"UIDs", func(r *drupal.Reader, ctx context.Context, uids []uint32) error {
			_, err := r.UIDs(ctx, 0, 10)
			return err
		}},
	}
	for _, rd := range reads {
		t.Run(rd.name, func(t *testing.T) {
			ctx := context.Background()
			r, site, db := newReader(t, "")
			first, err := site.Create(ctx, drupaltest.User{Name: "a", Mail: drupaltest.Str("a@example.org"), Status: 1})
			if err != nil {
				t.Fatal(err)
			}
			second, err := site.Create(ctx, drupaltest.User{Name: "b", Mail: drupaltest.Str("b@example.org"), Status: 1})
			if err != nil {
				t.Fatal(err)
			}
			tx := begin(t, db)
			// The write holds the second user's rows...
			if _, err := tx.Exec("UPDATE users SET langcode = 'en' WHERE uid = ?", second); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- rd.read(r, ctx, []uint32{first, second}) }()
			agenttest.Eventually(t, "the read to find the write's locks", func() bool { return r.Conflicts() > 0 })
			// ...and then writes the first's, which the read locks on its
			// way to the second.
			if _, err := tx.Exec("UPDATE users SET langcode = 'en' WHERE uid = ?", first); err != nil {
				t.Fatalf("the Drupal write failed while the agent read: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("the Drupal write failed while the agent read: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the read failed: %v", err)
			}
		})
	}
}

// TestBarrierWaitsForAnUpdateOfAColumnNoIndexHolds: a module, drush or a
// migration may UPDATE one column of users_field_data (mail, status) in
// place. Such an update leaves the table's secondary indexes alone, so a
// barrier reading the rows through one of them locked nothing the update
// holds and read the old values while it was uncommitted (or prepared,
// for an XA transaction: then the change was lost). Load and LoadPage
// must wait for it.
func TestBarrierWaitsForAnUpdateOfAColumnNoIndexHolds(t *testing.T) {
	readers := []struct {
		name string
		read func(r *drupal.Reader, ctx context.Context, uid uint32) (drupal.Account, error)
	}{
		{"Load", func(r *drupal.Reader, ctx context.Context, uid uint32) (drupal.Account, error) {
			a, _, err := r.Load(ctx, uid)
			return a, err
		}},
		{"LoadPage", func(r *drupal.Reader, ctx context.Context, uid uint32) (drupal.Account, error) {
			page, err := r.LoadPage(ctx, []uint32{uid, uid + 1})
			return page[uid], err
		}},
	}
	updates := []struct {
		column, value string
		want          any
	}{{"mail", "'new@example.org'", "new@example.org"}, {"status", "0", int64(0)}}
	for _, rd := range readers {
		for _, up := range updates {
			t.Run(rd.name+"/"+up.column, func(t *testing.T) {
				ctx := context.Background()
				r, site, db := newReader(t, "")
				uid, err := site.Create(ctx, drupaltest.User{Name: "w", Mail: drupaltest.Str("old@example.org"), Status: 1})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := site.Create(ctx, drupaltest.User{Name: "v", Status: 1}); err != nil {
					t.Fatal(err)
				}
				tx := begin(t, db)
				if _, err := tx.Exec("UPDATE users_field_data SET "+up.column+" = "+up.value+" WHERE uid = ?", uid); err != nil {
					t.Fatal(err)
				}
				done := make(chan drupal.Account, 1)
				readCtx, cancel := context.WithCancel(ctx)
				defer cancel()
				go func() {
					a, err := rd.read(r, readCtx, uid)
					if err != nil && readCtx.Err() == nil {
						t.Error(err)
					}
					done <- a
				}()
				agenttest.Eventually(t, "the read to wait for the uncommitted UPDATE", func() bool {
					if r.Conflicts() > 0 {
						return true
					}
					select {
					case a := <-done:
						t.Fatalf("read %s = %v before the UPDATE committed", up.column, a.Values[up.column])
					default:
					}
					return false
				})
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if a := <-done; a.Values[up.column] != up.want {
					t.Fatalf("read %s = %v, want the committed %v", up.column, a.Values[up.column], up.want)
				}
			})
		}
	}
}
