package drupal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/scim-agent/scim-agent/internal/phpserial"
)

// ConfigTable is Drupal's configuration storage, where a role is the row
// named RoleConfigPrefix + its machine name in collection "".
const ConfigTable = "config"

// RoleConfigPrefix starts the name of a role's config row.
const RoleConfigPrefix = "user.role."

// Roles Drupal keeps as config rows but never stores in user__roles.
const (
	AnonymousRole     = "anonymous"
	AuthenticatedRole = "authenticated"
)

// Config is the configuration table.
func (t Tables) Config() string { return t.Prefix + ConfigTable }

// Role is a Drupal role: its machine name (which never changes) and its
// label in the default collection.
type Role struct {
	ID    string
	Label string
}

// Role reads role id's config row; ok is false when there is none (the
// role is deleted, or never was). The read is a locking one, like a
// user's barrier: a change the binlog already delivered may not be
// visible yet.
func (r *Reader) Role(ctx context.Context, id string) (role Role, ok bool, err error) {
	var data []byte
	err = r.locked(ctx, func(share string) error {
		return r.db.QueryRowContext(ctx, "SELECT data FROM "+quote(r.tables.Config())+
			" WHERE collection = '' AND name = ?"+share, RoleConfigPrefix+id).Scan(&data)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Role{ID: id}, false, nil
	}
	if err != nil {
		return Role{ID: id}, false, fmt.Errorf("read role %s: %w", id, err)
	}
	role, err = decodeRole(id, data)
	return role, err == nil, err
}

// decodeRole reads the label of a role's config data (PHP serialize()
// output of the role's array).
func decodeRole(id string, data []byte) (Role, error) {
	v, err := phpserial.Decode(data)
	if err != nil {
		return Role{ID: id}, fmt.Errorf("config row %s%s: %w", RoleConfigPrefix, id, err)
	}
	a, _ := v.(phpserial.Array)
	label, ok := a.String("label")
	if !ok {
		return Role{ID: id}, fmt.Errorf("config row %s%s holds no string label", RoleConfigPrefix, id)
	}
	return Role{ID: id, Label: label}, nil
}

// RoleHolders returns the uids holding role id, sorted, with a locking
// read (it waits for grants and revocations in flight).
func (r *Reader) RoleHolders(ctx context.Context, id string) (uids []uint32, err error) {
	err = r.locked(ctx, func(share string) error {
		uids, err = scanColumn[uint32](ctx, r.db, "SELECT DISTINCT entity_id FROM "+quote(r.tables.Roles())+
			" WHERE roles_target_id = ? AND deleted = 0 ORDER BY entity_id"+share, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the holders of role %s: %w", id, err)
	}
	return uids, nil
}

// RoleIDs returns the machine names of every role, sorted, with a
// locking read (see UIDs).
func (r *Reader) RoleIDs(ctx context.Context) (ids []string, err error) {
	err = r.locked(ctx, func(share string) error {
		ids, err = scanColumn[string](ctx, r.db, "SELECT name FROM "+quote(r.tables.Config())+
			" WHERE collection = '' AND name LIKE 'user.role.%' ORDER BY name"+share)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	for i, name := range ids {
		ids[i] = strings.TrimPrefix(name, RoleConfigPrefix)
	}
	return ids, nil
}
