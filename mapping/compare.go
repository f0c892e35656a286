package mapping

import (
	"slices"
	"strconv"
	"strings"
)

// Compare returns what must change for a server's copy of a user (a SCIM
// resource as the server returned it) to equal u on every managed path.
// Values the server adds on its own (ids, meta, an email's display) and
// paths the mapping does not manage are ignored. Strings compare
// case-insensitively but for externalId and id, as RFC 7643 §8.7.1 defines
// the User's attributes (caseExact false). In a multi-valued attribute
// whose values the mapping types (emails of type work), only values of
// those types count: a home address set elsewhere is not drift.
func (m *Mapper) Compare(u User, server map[string]any) Changes {
	var c Changes
	for _, r := range m.rules {
		want, has := u.Values[r.path]
		got := lookup(server, r.path)
		if r.kind == kindTypedList && !has {
			// Only the agent's own values need to go.
			got = managedValues(got)
		}
		switch {
		case has && !equal(r.path, want, got):
			c.Set = append(c.Set, r.path)
		case !has && !empty(got):
			c.Remove = append(c.Remove, r.path)
		}
	}
	return c
}

// Value returns the value at a managed path of a SCIM resource as the
// server holds it (nil when absent), for showing what differs.
func Value(res map[string]any, path string) any { return lookup(res, path) }

// lookup finds a path's value in a SCIM resource. Attribute names match
// case-insensitively, as RFC 7643 §2.1 requires.
func lookup(res map[string]any, path string) any {
	ext, attr, sub := splitPath(path)
	if ext != "" {
		obj, _ := field(res, ext).(map[string]any)
		return field(obj, attr)
	}
	v := field(res, attr)
	if sub == "" {
		return v
	}
	obj, _ := v.(map[string]any)
	return field(obj, sub)
}

func field(obj map[string]any, name string) any {
	if obj == nil {
		return nil
	}
	if v, ok := obj[name]; ok {
		return v
	}
	for k, v := range obj {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, sv := range x {
			if !empty(sv) {
				return false
			}
		}
		return true
	}
	return false
}

func equal(path string, want, got any) bool {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		if caseExact(path) {
			return w == g
		}
		return strings.EqualFold(w, g)
	case bool:
		switch g := got.(type) {
		case bool:
			return w == g
		case string: // lenient servers answer "True"/"false"
			b, err := strconv.ParseBool(strings.ToLower(g))
			return err == nil && b == w
		}
		return false
	case []map[string]any:
		return equalList(w, got)
	}
	return false
}

// caseExact reports whether a path's strings compare exactly: only
// externalId and id among the attributes the agent manages (RFC 7643).
func caseExact(path string) bool {
	return strings.EqualFold(path, "externalId") || strings.EqualFold(path, "id")
}

// equalList compares a multi-valued attribute: the same number of values
// (of the types the agent sets, when it types them), each wanted value
// matching a distinct server value on every sub-attribute the agent sets.
func equalList(want []map[string]any, got any) bool {
	if typed, ok := got.([]map[string]any); ok {
		got = toAnySlice(typed)
	}
	list, ok := got.([]any)
	if !ok {
		return false
	}
	if types := wantedTypes(want); types != nil {
		list = slices.DeleteFunc(slices.Clone(list), func(item any) bool { return otherType(item, types) })
	}
	if len(list) != len(want) {
		return false
	}
	// A server may keep no primary or type on a lone value.
	single := len(list) == 1
	used := make([]bool, len(list))
	for _, w := range want {
		found := false
		for i, item := range list {
			g, ok := item.(map[string]any)
			if !ok || used[i] || !matches(w, g, single) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			return false
		}
	}
	return true
}

func toAnySlice(typed []map[string]any) []any {
	out := make([]any, len(typed))
	for i, v := range typed {
		out[i] = v
	}
	return out
}

// wantedTypes returns the types of the wanted values, or nil when any of
// them has none (then every server value counts).
func wantedTypes(want []map[string]any) []string {
	var types []string
	for _, w := range want {
		t, _ := w["type"].(string)
		if t == "" {
			return nil
		}
		types = append(types, t)
	}
	return types
}

// otherType reports whether a server value carries a type the agent does
// not set: somebody else's value. An untyped value may be ours.
func otherType(item any, types []string) bool {
	g, _ := item.(map[string]any)
	t, _ := field(g, "type").(string)
	return t != "" && !slices.ContainsFunc(types, func(w string) bool { return strings.EqualFold(w, t) })
}

// matches compares one wanted value with one server value, on the
// sub-attributes the agent sets (strings case-insensitively). An absent
// primary equals false, and an absent primary or type is no difference
// on a lone value (single).
func matches(want, got map[string]any, single bool) bool {
	for k, wv := range want {
		gv := field(got, k)
		if gv == nil && single && (k == "primary" || k == "type") {
			continue
		}
		switch w := wv.(type) {
		case string:
			g, ok := gv.(string)
			if !ok || !strings.EqualFold(w, g) {
				return false
			}
		case bool:
			if !equal("", w, gv) && (w || gv != nil) {
				return false
			}
		}
	}
	return true
}

// Apply writes the changes of u into res, a server's copy of the user, so
// that a PUT of res changes exactly those paths and keeps every attribute
// the agent does not manage (and, in a typed list, every value of another
// type). Attribute names already in res are reused whatever their case.
func (m *Mapper) Apply(res map[string]any, u User, c Changes) {
	for _, path := range c.Set {
		setPath(res, path, ValueFor(res, u, path))
	}
	for _, path := range c.Remove {
		setPath(res, path, m.Remaining(res, path))
	}
	if schemas, ok := res["schemas"].([]any); ok {
		for ext := range u.extensions() {
			if !containsString(schemas, ext) {
				res["schemas"] = append(schemas, ext)
			}
		}
	}
}

// ValueFor returns the value to write at path so that the server's copy
// (current, nil when unknown) ends equal to u there: u's value, merged
// into the server's values of a multi-valued attribute the mapping types
// (see Apply).
func ValueFor(current map[string]any, u User, path string) any {
	v := u.Values[path]
	if want, ok := v.([]map[string]any); ok && current != nil {
		return mergeTyped(lookup(current, path), want)
	}
	return v
}

// MergesTyped reports whether c sets or removes a multi-valued attribute
// whose values the mapping types: writing it without the server's copy
// would drop the values of other types (a home address set elsewhere).
func (m *Mapper) MergesTyped(c Changes) bool {
	for _, r := range m.rules {
		if r.kind == kindTypedList && c.Has(r.path) {
			return true
		}
	}
	return false
}

// Remaining returns what a removed path must still hold on the server
// (current, nil when unknown): for a typed list, the values of other
// types; nil, to remove the attribute, when nothing remains.
func (m *Mapper) Remaining(current map[string]any, path string) any {
	if current == nil || !m.typedList(path) {
		return nil
	}
	list, _ := lookup(current, path).([]any)
	var others []any
	for _, item := range list {
		if otherType(item, []string{ManagedType}) {
			others = append(others, item)
		}
	}
	if len(others) == 0 {
		return nil
	}
	return others
}

func (m *Mapper) typedList(path string) bool {
	for _, r := range m.rules {
		if r.path == path {
			return r.kind == kindTypedList
		}
	}
	return false
}

// managedValues returns the values of a typed list the agent may have
// written: those of its type, or of none.
func managedValues(v any) any {
	list, ok := v.([]any)
	if !ok {
		return v
	}
	var out []any
	for _, item := range list {
		if !otherType(item, []string{ManagedType}) {
			out = append(out, item)
		}
	}
	return out
}

// mergeTyped returns the server's values of a multi-valued attribute
// with those of the agent's types replaced by want: a home address set
// elsewhere survives a change of the work address. Kept values lose
// primary when a wanted value is primary (at most one may be).
func mergeTyped(cur any, want []map[string]any) any {
	types := wantedTypes(want)
	list, _ := cur.([]any)
	if types == nil || len(list) == 0 {
		return want
	}
	primary := slices.ContainsFunc(want, func(w map[string]any) bool { return w["primary"] == true })
	out := make([]any, 0, len(list)+len(want))
	for _, w := range want {
		out = append(out, w)
	}
	for _, item := range list {
		if !otherType(item, types) {
			continue
		}
		if g, ok := item.(map[string]any); ok && primary && field(g, "primary") == true {
			g[keyFor(g, "primary")] = false
		}
		out = append(out, item)
	}
	return out
}

func (u User) extensions() map[string]bool {
	exts := map[string]bool{}
	for p := range u.Values {
		if ext, _, _ := splitPath(p); ext != "" {
			exts[ext] = true
		}
	}
	return exts
}

func containsString(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// setPath sets (or with a nil value deletes) a path's value in res.
func setPath(res map[string]any, path string, v any) {
	ext, attr, sub := splitPath(path)
	target := res
	if ext != "" {
		obj, ok := field(res, ext).(map[string]any)
		if !ok {
			if v == nil {
				return
			}
			obj = map[string]any{}
			res[ext] = obj
		}
		target = obj
	}
	if sub != "" {
		obj, ok := field(target, attr).(map[string]any)
		if !ok {
			if v == nil {
				return
			}
			obj = map[string]any{}
			target[keyFor(target, attr)] = obj
		}
		target, attr = obj, sub
	}
	key := keyFor(target, attr)
	if v == nil {
		delete(target, key)
		return
	}
	target[key] = v
}

// keyFor returns the key obj already uses for name, or name.
func keyFor(obj map[string]any, name string) string {
	if _, ok := obj[name]; ok {
		return name
	}
	for k := range obj {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

// Active reports a SCIM resource's active value as a server holds it:
// true unless it says false (a lenient server's "False" too). A resource
// without one is active, as RFC 7643 leaves it to the server.
func Active(res map[string]any) bool {
	v := field(res, "active")
	if v == nil {
		return true
	}
	return !equal("active", false, v)
}
