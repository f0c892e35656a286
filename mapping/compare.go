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
