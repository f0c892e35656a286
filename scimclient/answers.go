package scimclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// scimNotFound is the check of a call on one resource: a 404 that is not
// a SCIM error (a proxy's page, a path the server does not route) says
// nothing about the resource, so it is retried like a 5xx instead of
// being taken for "gone".
func scimNotFound(r *request, a answer) error {
	if a.status != http.StatusNotFound {
		return nil
	}
	e := decodeError(r.method, r.path, a.status, a.header.Get("Content-Type"), a.body, r.c.secrets())
	if e.SCIM {
		return nil
	}
	return e
}

// listCheck is the check of a list answer for a query with filter from
// startIndex: see ListUsers.
func listCheck(filter string, startIndex int) func(*request, answer) error {
	attr, value, isEq := parseEq(filter)
	return func(r *request, a answer) error {
		if a.status != http.StatusOK {
			return nil
		}
		var list listAnswer
		if err := json.Unmarshal(a.body, &list); err != nil {
			return nil // the caller's decode says what is wrong with it
		}
		untrusted := func(format string, args ...any) error {
			return fmt.Errorf("scim %s %s: %w: %s", r.method, r.path, ErrUntrustedAnswer,
				clean(fmt.Sprintf(format, args...), 300, r.c.secrets()))
		}
		total, n, start := int(list.TotalResults), len(list.Resources), max(startIndex, 1)
		if total > 0 && n == 0 && start <= total {
			if filter != "" {
				return untrusted("totalResults is %d but the page from startIndex %d holds no Resources (filter %s)", total, start, filter)
			}
			return untrusted("totalResults is %d but the page from startIndex %d holds no Resources", total, start)
		}
		if !isEq {
			return nil
		}
		for _, res := range list.Resources {
			if !satisfies(res, attr, value) {
				id, _ := res["id"].(string)
				return untrusted("account %q answered to the filter %s does not match it (%s is %s): the server ignored or loosened the filter",
					id, filter, attr, describe(valuesAt(res, attr)))
			}
		}
		return nil
	}
}

// eqFilter matches an equality filter as FilterEq writes it: an
// attribute path, "eq", and a JSON string.
var eqFilter = regexp.MustCompile(`^\s*([A-Za-z][A-Za-z0-9_.:$-]*)\s+(?i:eq)\s+("(?:[^"\\]|\\.)*")\s*$`)

// parseEq returns the attribute and value of an equality filter.
func parseEq(filter string) (attr, value string, ok bool) {
	m := eqFilter.FindStringSubmatch(filter)
	if m == nil {
		return "", "", false
	}
	if err := json.Unmarshal([]byte(m[2]), &value); err != nil {
		return "", "", false
	}
	return m[1], value, true
}

// satisfies reports whether a resource can be an answer to `attr eq
// value`: one of its string values at attr equals value (case-exact for
// id and externalId, RFC 7643 §3.1, case-insensitive otherwise, as for
// userName). Values that are not strings cannot be judged and pass.
func satisfies(res Resource, attr, value string) bool {
	vals := valuesAt(res, attr)
	if len(vals) == 0 {
		return false
	}
	exact := strings.EqualFold(attr, "id") || strings.EqualFold(attr, "externalId")
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return true
		}
		if s == value || !exact && strings.EqualFold(s, value) {
			return true
		}
	}
	return false
}

// valuesAt returns the values at an attribute path: "userName",
// "name.givenName", "emails.value" (one per element of a multi-valued
// attribute), or an extension attribute with its URN prefix. Names match
// case-insensitively.
func valuesAt(res Resource, attr string) []any {
	var obj map[string]any = res
	path := attr
	if strings.HasPrefix(strings.ToLower(attr), "urn:") {
		i := strings.LastIndex(attr, ":")
		ext, _ := fold(res, attr[:i]).(map[string]any)
		obj, path = ext, attr[i+1:]
	}
	name, sub, _ := strings.Cut(path, ".")
	v := fold(obj, name)
	if sub == "" {
		if list, ok := v.([]any); ok {
			return list
		}
		if v == nil {
			return nil
		}
		return []any{v}
	}
	var out []any
	switch v := v.(type) {
	case map[string]any:
		if x := fold(v, sub); x != nil {
			out = append(out, x)
		}
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				if x := fold(m, sub); x != nil {
					out = append(out, x)
				}
			}
		}
	}
	return out
}

func fold(m map[string]any, name string) any {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func describe(vals []any) string {
	if len(vals) == 0 {
		return "missing"
	}
	b, _ := json.Marshal(vals[0])
	return string(b)
}
