package scimtest

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/filter"
	fp "github.com/scim2/filter-parser/v2"
)

// unescapeFilter decodes the string values of a parsed filter in place.
// The filter parser accepts JSON string escapes (`"o\"brien"`) but only
// strips the quotes, leaving the backslashes in the value; a real server
// compares the decoded string.
func unescapeFilter(e fp.Expression) {
	switch e := e.(type) {
	case *fp.AttributeExpression:
		if s, ok := e.CompareValue.(string); ok && strings.Contains(s, `\`) {
			var out string
			if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err == nil {
				e.CompareValue = out
			}
		}
	case *fp.LogicalExpression:
		unescapeFilter(e.Left)
		unescapeFilter(e.Right)
	case *fp.NotExpression:
		unescapeFilter(e.Expression)
	case *fp.ValuePath:
		unescapeFilter(e.ValueFilter)
	}
}

// passes reports whether a resource passes the filter. elimity panics on
// values of unexpected types (possible with seeded accounts): those do not
// match.
func passes(v filter.Validator, resource map[string]any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return v.PassesFilter(resource) == nil
}

// filterView is a resource as elimity's filter expects it: id and meta at
// the top, and extension attributes also under "<urn>:<name>" keys.
func filterView(r scim.Resource) map[string]any {
	m := make(map[string]any, len(r.Attributes)+4)
	for k, v := range r.Attributes {
		m[k] = v
		if strings.HasPrefix(k, "urn:") {
			if ext, ok := v.(map[string]any); ok {
				for ek, ev := range ext {
					m[k+":"+ek] = ev
				}
			}
		}
	}
	m["id"] = r.ID
	meta := map[string]any{"resourceType": "User", "version": r.Meta.Version}
	if r.Meta.Created != nil {
		meta["created"] = r.Meta.Created.Format(time.RFC3339)
	}
	if r.Meta.LastModified != nil {
		meta["lastModified"] = r.Meta.LastModified.Format(time.RFC3339)
	}
	m["meta"] = meta
	return m
}
