package drupaltest

import (
	"context"
	"fmt"
	"strings"
)

// Roles are config entities: a row of the config table named
// user.role.<id> in collection '', whose data is PHP serialize() output
// (see drupal-roles.md in the shared reference). The methods below write
// them as Drupal 10/11 does.

// roleData is the serialized array Drupal stores for a role.
func roleData(id, label, uuid string, weight int) string {
	str := func(s string) string { return fmt.Sprintf("s:%d:\"%s\";", len(s), s) }
	var b strings.Builder
	b.WriteString("a:9:{")
	b.WriteString(str("uuid") + str(uuid))
	b.WriteString(str("langcode") + str("en"))
	b.WriteString(str("status") + "b:1;")
	b.WriteString(str("dependencies") + "a:0:{}")
	b.WriteString(str("id") + str(id))
	b.WriteString(str("label") + str(label))
	b.WriteString(str("weight") + fmt.Sprintf("i:%d;", weight))
	b.WriteString(str("is_admin") + "N;")
	b.WriteString(str("permissions") + "a:1:{i:0;" + str("access content") + "}")
	b.WriteString("}")
	return b.String()
}

// CreateRole creates a role as `drush role:create` does: one transaction
// inserting the role's config row, then, each in its own transaction, the
// two actions Drupal adds for it.
func (s *Site) CreateRole(ctx context.Context, id, label string) error {
	if _, err := s.DB.ExecContext(ctx, "INSERT INTO "+s.t("config")+" (collection, name, data) VALUES ('', ?, ?)",
		"user.role."+id, roleData(id, label, NewUUID(), 2)); err != nil {
		return fmt.Errorf("insert role %s: %w", id, err)
	}
	for _, action := range []string{"user_add_role_action", "user_remove_role_action"} {
		if err := s.SaveConfig(ctx, "system.action."+action+"."+id, fmt.Sprintf(`a:2:{s:2:"id";s:%d:"%s";s:6:"plugin";s:%d:"%s";}`,
			len(action+"."+id), action+"."+id, len(action), action)); err != nil {
			return err
		}
	}
	return nil
}

// RenameRole changes a role's label as an entity save does: one UPDATE
// of its config row, whose before and after images hold the whole array.
func (s *Site) RenameRole(ctx context.Context, id, label string) error {
	var data string
	if err := s.DB.QueryRowContext(ctx, "SELECT data FROM "+s.t("config")+" WHERE collection = '' AND name = ?", "user.role."+id).Scan(&data); err != nil {
		return fmt.Errorf("read role %s: %w", id, err)
	}
	_, uuid, _ := strings.Cut(data, `s:4:"uuid";s:36:"`)
	if len(uuid) < 36 {
		return fmt.Errorf("role %s: no uuid in %q", id, data)
	}
	_, err := s.DB.ExecContext(ctx, "UPDATE "+s.t("config")+" SET data = ? WHERE collection = '' AND name = ?",
		roleData(id, label, uuid[:36], 2), "user.role."+id)
	return err
}

// DeleteRole deletes a role site-wide as Drupal does: a transaction
// deleting its config row, further ones deleting its actions, and then,
// later and separately, one DELETE of every user__roles row naming it,
// with no user save.
func (s *Site) DeleteRole(ctx context.Context, id string) error {
	if err := s.DeleteRoleConfig(ctx, id); err != nil {
		return err
	}
	return s.DeleteRoleMemberships(ctx, id)
}

// DeleteRoleConfig is the first part of a role's deletion: its config
// row and actions. Until DeleteRoleMemberships, the role is gone but its
// members' rows still name it.
func (s *Site) DeleteRoleConfig(ctx context.Context, id string) error {
	for _, name := range []string{"user.role." + id, "system.action.user_add_role_action." + id, "system.action.user_remove_role_action." + id} {
		if _, err := s.DB.ExecContext(ctx, "DELETE FROM "+s.t("config")+" WHERE collection = '' AND name = ?", name); err != nil {
			return fmt.Errorf("delete config %s: %w", name, err)
		}
	}
	return nil
}

// DeleteRoleMemberships removes a role from every user at once
// (user_user_role_delete), with no user save.
func (s *Site) DeleteRoleMemberships(ctx context.Context, id string) error {
	_, err := s.DB.ExecContext(ctx, "DELETE FROM "+s.t("user__roles")+" WHERE roles_target_id = ?", id)
	return err
}

// SaveConfig saves a configuration object other than a role (a view, a
// block, system settings) as Drupal's config storage does: an upsert of
// its row.
func (s *Site) SaveConfig(ctx context.Context, name, data string) error {
	_, err := s.DB.ExecContext(ctx, "INSERT INTO "+s.t("config")+" (collection, name, data) VALUES ('', ?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data)",
		name, data)
	if err != nil {
		return fmt.Errorf("save config %s: %w", name, err)
	}
	return nil
}
