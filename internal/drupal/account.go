package drupal

import (
	"slices"
	"strings"
)

// Table names of Drupal's user entity, without the site's prefix.
const (
	UsersTable     = "users"
	FieldDataTable = "users_field_data"
	RolesTable     = "user__roles"
)

// Account is a Drupal user account as read from the database.
type Account struct {
	UID uint32
	// UUID is users.uuid.
	UUID string
	// Langcode is users.langcode.
	Langcode string
	// Values holds the sources the mapping reads, by name: users_field_data
	// columns by column name ("mail"), "roles" ([]string), fields by
	// Field.Key(). A value is a string, an int64, a []string or nil (NULL).
	// Nil when the users row has no users_field_data row yet.
	Values map[string]any
}

// Field is a configurable Drupal field: table user__<Name>, value
// column Column.
type Field struct {
	Name   string // field name, e.g. field_first_name (table user__field_first_name)
	Column string // value column, e.g. field_first_name_value
}

// Key names the field's value in Account.Values.
func (f Field) Key() string { return f.Name + "." + f.Column }

// Sources lists what is read of each account: the mapping's sources, for
// the reader's queries and for the binlog filter (which changes count).
type Sources struct {
	// FieldDataColumns are the users_field_data columns read (besides uid).
	FieldDataColumns []string
	// Roles is true when user__roles is read.
	Roles bool
	// Fields are the configurable fields read.
	Fields []Field
}

// Merge returns what reading both s and o takes: each column and field
// once, sorted, and the roles when either reads them. The mapping and
// provisioning.scope each name their sources; the reader and the binlog
// filter take the union, and nothing else.
func (s Sources) Merge(o Sources) Sources {
	out := Sources{Roles: s.Roles || o.Roles}
	seen := map[string]bool{}
	for _, c := range append(append([]string{}, s.FieldDataColumns...), o.FieldDataColumns...) {
		if !seen[c] {
			seen[c] = true
			out.FieldDataColumns = append(out.FieldDataColumns, c)
		}
	}
	seenField := map[string]bool{}
	for _, f := range append(append([]Field{}, s.Fields...), o.Fields...) {
		if !seenField[f.Key()] {
			seenField[f.Key()] = true
			out.Fields = append(out.Fields, f)
		}
	}
	slices.Sort(out.FieldDataColumns)
	slices.SortFunc(out.Fields, func(a, b Field) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}
