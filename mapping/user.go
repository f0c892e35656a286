package mapping

import (
	"sort"
	"strconv"
	"strings"

	"github.com/scim-agent/scim-agent/internal/drupal"
)

// User is the SCIM User the agent wants on the server for one Drupal
// account: the value of every managed path that has one. A path whose
// source is NULL or empty has no value and is absent.
type User struct {
	UID    uint32
	Values map[string]any // path → string, bool or []map[string]any
}

// Map applies the rules to an account.
func (m *Mapper) Map(a drupal.Account) User {
	u := User{UID: a.UID, Values: make(map[string]any, len(m.rules))}
	for _, r := range m.rules {
		if v, ok := r.value(a); ok {
			u.Values[r.path] = v
		}
	}
	return u
}

// raw returns the source's value in an account: a string, an int64, a
// []string (roles) or nil (NULL).
func (s source) raw(a drupal.Account) any {
	switch s.kind {
	case sourceConstant:
		return s.value
	case sourceUsers:
		switch s.column {
		case "uid":
			return int64(a.UID)
		case "uuid":
			return a.UUID
		case "langcode":
			return a.Langcode
		}
	}
	return a.Values[s.key()]
}

// value converts the rule's source value into the SCIM value of its path;
// ok is false when the path has no value.
func (r rule) value(a drupal.Account) (v any, ok bool) {
	raw := r.source.raw(a)
	switch r.kind {
	case kindBool:
		switch x := raw.(type) {
		case int64:
			return x == 1, true
		case string:
			b, err := strconv.ParseBool(x)
			return err == nil && b, true
		}
		return false, true // NULL status: Drupal treats it as blocked
	case kindValueList:
		var values []string
		switch x := raw.(type) {
		case []string:
			values = x
		default:
			if s := text(raw); s != "" {
				values = []string{s}
			}
		}
		if len(values) == 0 {
			return nil, false
		}
		list := make([]map[string]any, len(values))
		for i, s := range values {
			list[i] = map[string]any{"value": s}
		}
		return list, true
	case kindTypedList:
		s := text(raw)
		if s == "" {
			return nil, false
		}
		return []map[string]any{{"value": s, "type": ManagedType, "primary": true}}, true
	default:
		s := text(raw)
		return s, s != ""
	}
}

// ManagedType is the type of the values the agent writes in a typed
// multi-valued attribute (emails, phoneNumbers): values of other types on
// the server (a home address the IdP keeps) are not the agent's.
const ManagedType = "work"

// text renders a scalar source value as a string; NULL is "".
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []string:
		return strings.Join(x, ",")
	}
	return ""
}

// UserName returns the userName value, or "".
func (u User) UserName() string { s, _ := u.Values["userName"].(string); return s }

// ExternalID returns the externalId value, or "".
func (u User) ExternalID() string { s, _ := u.Values["externalId"].(string); return s }

// Active reports the active value; a user without one is active.
func (u User) Active() bool {
	b, ok := u.Values["active"].(bool)
	return !ok || b
}

// Resource renders the user as a SCIM resource body (without id or meta):
// dotted paths become nested objects and extension paths go under their
// schema URN, which is then listed in schemas.
func (u User) Resource() map[string]any {
	res := map[string]any{}
	schemas := []string{UserSchema}
	for _, path := range u.paths() {
		ext, attr, sub := splitPath(path)
		target := res
		if ext != "" {
			obj, ok := res[ext].(map[string]any)
			if !ok {
				obj = map[string]any{}
				res[ext] = obj
				schemas = append(schemas, ext)
			}
			target = obj
		}
		if sub == "" {
			target[attr] = u.Values[path]
			continue
		}
		obj, ok := target[attr].(map[string]any)
		if !ok {
			obj = map[string]any{}
			target[attr] = obj
		}
		obj[sub] = u.Values[path]
	}
	res["schemas"] = schemas
	return res
}

func (u User) paths() []string {
	paths := make([]string, 0, len(u.Values))
	for p := range u.Values {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// splitPath splits a SCIM path into extension URN (or ""), attribute and
// sub-attribute (or "").
func splitPath(path string) (ext, attr, sub string) {
	if strings.HasPrefix(path, "urn:") {
		i := strings.LastIndex(path, ":")
		return path[:i], path[i+1:], ""
	}
	attr, sub, _ = strings.Cut(path, ".")
	return "", attr, sub
}

// Fingerprints returns a hash of each path's value. The state store keeps
// them to tell later which paths changed without keeping the values
// themselves (they are personal data).
func (u User) Fingerprints() map[string]uint64 {
	fp := make(map[string]uint64, len(u.Values))
	for path, v := range u.Values {
		fp[path] = fingerprint(v)
	}
	return fp
}

// Changes lists the paths whose value must change on the server.
type Changes struct {
	Set    []string // paths to set to the user's value
	Remove []string // paths to remove (they had a value, now have none)
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool { return len(c.Set) == 0 && len(c.Remove) == 0 }

// Has reports whether path is set or removed.
func (c Changes) Has(path string) bool {
	for _, p := range c.Set {
		if p == path {
			return true
		}
	}
	for _, p := range c.Remove {
		if p == path {
			return true
		}
	}
	return false
}

// Without returns the changes minus path.
func (c Changes) Without(path string) Changes {
	var out Changes
	for _, p := range c.Set {
		if p != path {
			out.Set = append(out.Set, p)
		}
	}
	for _, p := range c.Remove {
		if p != path {
			out.Remove = append(out.Remove, p)
		}
	}
	return out
}

// Diff compares the user with the fingerprints of what was last pushed.
// A path that had a value and has none now is removed, but only while the
// mapping still manages it: a path dropped from the mapping is left alone.
func (m *Mapper) Diff(u User, pushed map[string]uint64) Changes {
	var c Changes
	for _, r := range m.rules {
		v, has := u.Values[r.path]
		old, had := pushed[r.path]
		switch {
		case has && (!had || old != fingerprint(v)):
			c.Set = append(c.Set, r.path)
		case !has && had:
			c.Remove = append(c.Remove, r.path)
		}
	}
	return c
}
