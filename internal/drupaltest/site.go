// Package drupaltest writes Drupal user rows the way Drupal 10/11 really
// writes them, for tests and the demo.
//
// Every method reproduces one write pattern of Drupal core (see
// drupal-users.md in the shared reference): a save DELETEs and re-INSERTs
// every users_field_data row of the user in one transaction, roles and
// configurable fields are rewritten only when they changed, logins are bare
// UPDATEs of timestamps, and a deletion removes the rows of every user table
// in one transaction.
package drupaltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Site is a Drupal database seen through Drupal's write patterns.
type Site struct {
	// DB is a connection pool with the Drupal database as default database.
	DB *sql.DB
	// Prefix is the Drupal table prefix ("" for none).
	Prefix string
}

// HashPrefixes start the password hashes Drupal stores in users_field_data.pass:
// bcrypt and argon2 (Drupal 10+ through PHP's password_hash), Drupal 7's
// salted SHA-512 ($S$) and phpass ($P$, $H$) from migrated sites. No log
// line or output may hold one.
var HashPrefixes = []string{"$2y$", "$argon2", "$S$", "$P$", "$H$"}

// User is a Drupal user account as the tests need it.
type User struct {
	UID               uint32
	UUID              string
	Langcode          string // default "en"
	PreferredLangcode string // default Langcode
	Name              string
	Pass              string
	Mail              *string // nil = NULL
	Timezone          string
	Status            int // 1 active, 0 blocked
	Created           int64
	Access            int64
	Login             int64
	// Translations lists extra langcodes: each gets a users_field_data row
	// with default_langcode = 0 and the untranslatable values copied.
	Translations []string
	// Roles are role machine names, stored in user__roles.
	Roles []string
	// Fields maps a configurable field name ("field_first_name") to its
	// single text value, stored in user__<field>.<field>_value.
	Fields map[string]string
}

// Str returns a pointer to s, for User.Mail.
func Str(s string) *string { return &s }

func (s *Site) t(name string) string { return "`" + s.Prefix + name + "`" }

// NewUUID returns a random version 4 UUID, as Drupal's uuid service makes.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (u *User) fillDefaults() {
	if u.UUID == "" {
		u.UUID = NewUUID()
	}
	if u.Langcode == "" {
		u.Langcode = "en"
	}
	if u.PreferredLangcode == "" {
		u.PreferredLangcode = u.Langcode
	}
	if u.Created == 0 {
		u.Created = time.Now().Unix()
	}
	if u.Pass == "" {
		u.Pass = "$2y$10$abcdefghijklmnopqrstuv" + u.UUID[:8]
	}
}

// Create inserts a new user the way Drupal does: users, then
// users_field_data (one row per translation), then each non-empty field
// table, all in one transaction. It returns the uid; u.UID = 0 takes the
// next auto-increment value.
func (s *Site) Create(ctx context.Context, u User) (uint32, error) {
	return s.create(ctx, s.DB, u, u.UID != 0)
}

type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func (s *Site) create(ctx context.Context, db txBeginner, u User, explicitUID bool) (uint32, error) {
	u.fillDefaults()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var res sql.Result
	if explicitUID {
		res, err = tx.ExecContext(ctx, "INSERT INTO "+s.t("users")+" (uid, uuid, langcode) VALUES (?, ?, ?)", u.UID, u.UUID, u.Langcode)
	} else {
		res, err = tx.ExecContext(ctx, "INSERT INTO "+s.t("users")+" (uuid, langcode) VALUES (?, ?)", u.UUID, u.Langcode)
	}
	if err != nil {
		return 0, fmt.Errorf("insert users: %w", err)
	}
	if !explicitUID {
		id, err := res.LastInsertId()
		if err != nil {
			return 0, err
		}
		u.UID = uint32(id)
	}
	if err := s.insertFieldData(ctx, tx, u); err != nil {
		return 0, err
	}
	if err := s.insertRoles(ctx, tx, u); err != nil {
		return 0, err
	}
	for field, value := range u.Fields {
		if err := s.insertField(ctx, tx, u, field, value); err != nil {
			return 0, err
		}
	}
	return u.UID, tx.Commit()
}

// CreateMany inserts users the way a bulk import (a migration's SQL, a
// restore) does: many users per transaction, each table written with
// multi-row INSERTs, in one transaction per call. Users with UID 0 get
// the uids after the largest one. Translations and fields are not
// written. It returns the uids in order.
func (s *Site) CreateMany(ctx context.Context, users []User) ([]uint32, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var next uint32
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(uid), 0) FROM "+s.t("users")+" FOR UPDATE").Scan(&next); err != nil {
		return nil, fmt.Errorf("read the largest uid: %w", err)
	}
	uids := make([]uint32, len(users))
	for i := range users {
		u := &users[i]
		u.fillDefaults()
		if u.UID == 0 {
			next++
			u.UID = next
		}
		uids[i] = u.UID
	}
	const chunk = 500 // rows per INSERT, well under max_allowed_packet
	changed := time.Now().Unix()
	for start := 0; start < len(users); start += chunk {
		part := users[start:min(start+chunk, len(users))]
		var base, data, roles []any
		var nRoles int
		for _, u := range part {
			base = append(base, u.UID, u.UUID, u.Langcode)
			data = append(data, u.UID, u.Langcode, u.PreferredLangcode, u.Name, u.Pass, u.Mail, nullIfEmpty(u.Timezone),
				u.Status, u.Created, changed, u.Access, u.Login, u.Mail)
			for d, role := range u.Roles {
				roles = append(roles, u.UID, u.UID, u.Langcode, d, role)
				nRoles++
			}
		}
		stmts := []struct {
			q    string
			row  string
			n    int
			args []any
		}{
			{"INSERT INTO " + s.t("users") + " (uid, uuid, langcode) VALUES ", "(?, ?, ?)", len(part), base},
			{"INSERT INTO " + s.t("users_field_data") + ` (uid, langcode, preferred_langcode, preferred_admin_langcode,
				name, pass, mail, timezone, status, created, changed, access, login, init, default_langcode) VALUES `,
				"(?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", len(part), data},
			{"INSERT INTO " + s.t("user__roles") + " (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES ",
				"('user', 0, ?, ?, ?, ?, ?)", nRoles, roles},
		}
		for _, st := range stmts {
			if st.n == 0 {
				continue
			}
			q := st.q + st.row + strings.Repeat(", "+st.row, st.n-1)
			if _, err := tx.ExecContext(ctx, q, st.args...); err != nil {
				return nil, fmt.Errorf("bulk insert of uids %d..%d: %w", part[0].UID, part[len(part)-1].UID, err)
			}
		}
	}
	return uids, tx.Commit()
}

func (s *Site) insertFieldData(ctx context.Context, tx *sql.Tx, u User) error {
	q := "INSERT INTO " + s.t("users_field_data") + ` (uid, langcode, preferred_langcode, preferred_admin_langcode,
		name, pass, mail, timezone, status, created, changed, access, login, init, default_langcode)
		VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	changed := time.Now().Unix()
	langs := append([]string{u.Langcode}, u.Translations...)
	for i, lang := range langs {
		def := 0
		if i == 0 {
			def = 1
		}
		if _, err := tx.ExecContext(ctx, q, u.UID, lang, u.PreferredLangcode, u.Name, u.Pass, u.Mail,
			nullIfEmpty(u.Timezone), u.Status, u.Created, changed, u.Access, u.Login, u.Mail, def); err != nil {
			return fmt.Errorf("insert users_field_data uid %d %s: %w", u.UID, lang, err)
		}
	}
	return nil
}

func (s *Site) insertRoles(ctx context.Context, tx *sql.Tx, u User) error {
	for i, role := range u.Roles {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.t("user__roles")+
			" (bundle, deleted, entity_id, revision_id, langcode, delta, roles_target_id) VALUES ('user', 0, ?, ?, ?, ?, ?)",
			u.UID, u.UID, u.Langcode, i, role); err != nil {
			return fmt.Errorf("insert user__roles uid %d: %w", u.UID, err)
		}
	}
	return nil
}

func (s *Site) insertField(ctx context.Context, tx *sql.Tx, u User, field, value string) error {
	if value == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO "+s.t("user__"+field)+
		" (bundle, deleted, entity_id, revision_id, langcode, delta, "+field+"_value) VALUES ('user', 0, ?, ?, ?, 0, ?)",
		u.UID, u.UID, u.Langcode, value)
	if err != nil {
		return fmt.Errorf("insert user__%s uid %d: %w", field, u.UID, err)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ErrNoUser is returned by Load for a uid without a users row.
var ErrNoUser = errors.New("no such user")

// Load reads a user back, with its translations, roles and the fields
// named in fields.
func (s *Site) Load(ctx context.Context, uid uint32, fields ...string) (User, error) {
	u := User{UID: uid, Fields: map[string]string{}}
	err := s.DB.QueryRowContext(ctx, "SELECT uuid, langcode FROM "+s.t("users")+" WHERE uid = ?", uid).Scan(&u.UUID, &u.Langcode)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("uid %d: %w", uid, ErrNoUser)
	}
	if err != nil {
		return u, err
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT langcode, COALESCE(preferred_langcode, ''), name, COALESCE(pass, ''), mail,
		COALESCE(timezone, ''), COALESCE(status, 0), created, access, COALESCE(login, 0), default_langcode
		FROM `+s.t("users_field_data")+" WHERE uid = ? ORDER BY default_langcode DESC, langcode", uid)
	if err != nil {
		return u, err
	}
	defer rows.Close()
	for rows.Next() {
		var lang string
		var def int
		var mail sql.NullString
		var v User
		if err := rows.Scan(&lang, &v.PreferredLangcode, &v.Name, &v.Pass, &mail, &v.Timezone, &v.Status,
			&v.Created, &v.Access, &v.Login, &def); err != nil {
			return u, err
		}
		if def != 1 {
			u.Translations = append(u.Translations, lang)
			continue
		}
		u.PreferredLangcode, u.Name, u.Pass, u.Timezone = v.PreferredLangcode, v.Name, v.Pass, v.Timezone
		u.Status, u.Created, u.Access, u.Login = v.Status, v.Created, v.Access, v.Login
		if mail.Valid {
			u.Mail = Str(mail.String)
		}
	}
	if err := rows.Err(); err != nil {
		return u, err
	}
	u.Roles, err = s.roles(ctx, s.DB, uid)
	if err != nil {
		return u, err
	}
	for _, f := range fields {
		var v string
		err := s.DB.QueryRowContext(ctx, "SELECT "+f+"_value FROM "+s.t("user__"+f)+" WHERE entity_id = ? AND delta = 0", uid).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return u, err
		}
		if v != "" {
			u.Fields[f] = v
		}
	}
	return u, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Site) roles(ctx context.Context, q querier, uid uint32) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT roles_target_id FROM "+s.t("user__roles")+" WHERE entity_id = ? ORDER BY delta", uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var roles []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		roles = append(roles, r)
	}
	return roles, rows.Err()
}

// Save writes u over the existing account the way an entity save does, in
// one transaction: UPDATE users (uuid, langcode), DELETE every
// users_field_data row of the uid and INSERT them again, and rewrite
// user__roles and each field in fields only when its value changed.
func (s *Site) Save(ctx context.Context, u User, fields ...string) error {
	old, err := s.Load(ctx, u.UID, fields...)
	if err != nil {
		return err
	}
	u.fillDefaults()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE "+s.t("users")+" SET uuid = ?, langcode = ? WHERE uid = ?", u.UUID, u.Langcode, u.UID); err != nil {
		return fmt.Errorf("update users: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("users_field_data")+" WHERE uid = ?", u.UID); err != nil {
		return fmt.Errorf("delete users_field_data: %w", err)
	}
	if err := s.insertFieldData(ctx, tx, u); err != nil {
		return err
	}
	if !slices.Equal(old.Roles, u.Roles) {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("user__roles")+" WHERE entity_id = ?", u.UID); err != nil {
			return err
		}
		if err := s.insertRoles(ctx, tx, u); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if old.Fields[f] == u.Fields[f] {
			continue
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("user__"+f)+" WHERE entity_id = ?", u.UID); err != nil {
			return err
		}
		if err := s.insertField(ctx, tx, u, f, u.Fields[f]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Update loads a user, lets change modify it and saves it Drupal-style.
func (s *Site) Update(ctx context.Context, uid uint32, change func(*User), fields ...string) error {
	u, err := s.Load(ctx, uid, fields...)
	if err != nil {
		return err
	}
	change(&u)
	return s.Save(ctx, u, fields...)
}

// Login records a login the way user_login_finalize does: a bare UPDATE of
// login and access on every users_field_data row of the uid, outside any
// entity save.
func (s *Site) Login(ctx context.Context, uid uint32, at int64) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE "+s.t("users_field_data")+" SET login = ?, access = ? WHERE uid = ?", at, at, uid)
	return err
}

// Access records page access the way the user's AccessSubscriber does: a
// bare UPDATE of access.
func (s *Site) Access(ctx context.Context, uid uint32, at int64) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE "+s.t("users_field_data")+" SET access = ? WHERE uid = ?", at, uid)
	return err
}

// Delete cancels an account with the "delete" method: one transaction
// deleting the rows of users, users_field_data and every user__* table
// named (user__roles always).
func (s *Site) Delete(ctx context.Context, uid uint32, fields ...string) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("users")+" WHERE uid = ?", uid); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("users_field_data")+" WHERE uid = ?", uid); err != nil {
		return err
	}
	tables := append([]string{"roles"}, fields...)
	sort.Strings(tables)
	for _, f := range tables {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+s.t("user__"+f)+" WHERE entity_id = ?", uid); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Recreate deletes the account u.UID and creates u under the same uid in
// one transaction, as a migration rolled back and imported again with its
// uids preserved (or a restore) does: another person, usually another
// uuid, behind a uid the agent has seen.
func (s *Site) Recreate(ctx context.Context, u User) error {
	u.fillDefaults()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{
		"DELETE FROM " + s.t("users") + " WHERE uid = ?",
		"DELETE FROM " + s.t("users_field_data") + " WHERE uid = ?",
		"DELETE FROM " + s.t("user__roles") + " WHERE entity_id = ?",
	} {
		if _, err := tx.ExecContext(ctx, q, u.UID); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.t("users")+" (uid, uuid, langcode) VALUES (?, ?, ?)", u.UID, u.UUID, u.Langcode); err != nil {
		return fmt.Errorf("insert users: %w", err)
	}
	if err := s.insertFieldData(ctx, tx, u); err != nil {
		return err
	}
	if err := s.insertRoles(ctx, tx, u); err != nil {
		return err
	}
	return tx.Commit()
}

// CreateAnonymous inserts the anonymous user, uid 0, as Drupal's installer
// does (with NO_AUTO_VALUE_ON_ZERO, so 0 is stored and not replaced).
func (s *Site) CreateAnonymous(ctx context.Context) error {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')"); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_AUTO_VALUE_ON_ZERO', '')")
	_, err = s.create(ctx, conn, User{UID: 0, Name: "", Status: 0}, true)
	return err
}
