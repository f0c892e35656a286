package mapping

import (
	"strconv"
	"strings"
)

// Compare returns what must change for a server's copy of a user (a SCIM
// resource as the server returned it) to equal u on every managed path.
// Values the server adds on its own (ids, meta, an email's display) and
// paths the mapping does not manage are ignored. userName and email values
// compare case-insensitively, as RFC 7643 defines them (caseExact false).
func (m *Mapper) Compare(u User, server map[string]any) Changes {
	var c Changes
	for _, r := range m.rules {
		want, has := u.Values[r.path]
		got := lookup(server, r.path)
		switch {
		case has && !equal(r.path, want, got):
			c.Set = append(c.Set, r.path)
		case !has && !empty(got):
			c.Remove = append(c.Remove, r.path)
		}
	}
	return c
}

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
		if path == "userName" {
			return strings.EqualFold(w, g)
		}
		return w == g
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
		return equalList(path, w, got)
	}
	return false
}

// equalList compares a multi-valued attribute: the same number of values,
// each wanted value matching a distinct server value on every sub-attribute
// the agent sets.
func equalList(path string, want []map[string]any, got any) bool {
	if typed, ok := got.([]map[string]any); ok {
		got = toAnySlice(typed)
	}
	list, ok := got.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	used := make([]bool, len(list))
	for _, w := range want {
		found := false
		for i, item := range list {
			g, ok := item.(map[string]any)
			if !ok || used[i] || !matches(path, w, g) {
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

func matches(path string, want, got map[string]any) bool {
	for k, wv := range want {
		gv := field(got, k)
		switch w := wv.(type) {
		case string:
			g, ok := gv.(string)
			if !ok {
				return false
			}
			if k == "value" && (path == "emails" || path == "phoneNumbers") || k == "type" {
				if !strings.EqualFold(w, g) {
					return false
				}
			} else if w != g {
				return false
			}
		case bool:
			// An absent primary is the same as primary false.
			if !equal("", w, gv) && (w || gv != nil) {
				return false
			}
		}
	}
	return true
}

// Apply writes the changes of u into res, a server's copy of the user, so
// that a PUT of res changes exactly those paths and keeps every attribute
// the agent does not manage. Attribute names already in res are reused
// whatever their case.
func Apply(res map[string]any, u User, c Changes) {
	for _, path := range c.Set {
		setPath(res, path, u.Values[path])
	}
	for _, path := range c.Remove {
		setPath(res, path, nil)
	}
	if schemas, ok := res["schemas"].([]any); ok {
		for ext := range u.extensions() {
			if !containsString(schemas, ext) {
				res["schemas"] = append(schemas, ext)
			}
		}
	}
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
