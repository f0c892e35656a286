package scimtest

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/schema"
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

// prepareFilter readies a parsed filter for elimity's evaluation: string
// values decoded (unescapeFilter), and "attr.sub op value" on a
// multi-valued attribute rewritten to the equivalent "attr[sub op value]"
// (RFC 7644 §3.4.2.2), which elimity evaluates (it never matches the
// former: it expects a single object there).
func (p *patcher) prepareFilter(e fp.Expression) fp.Expression {
	unescapeFilter(e)
	switch e := e.(type) {
	case *fp.AttributeExpression:
		sub := e.AttributePath.SubAttributeName()
		if sub == "" || !p.multiValued(e.AttributePath) {
			return e
		}
		return &fp.ValuePath{
			AttributePath: fp.AttributePath{URIPrefix: e.AttributePath.URIPrefix, AttributeName: e.AttributePath.AttributeName},
			ValueFilter: &fp.AttributeExpression{
				AttributePath: fp.AttributePath{AttributeName: sub},
				Operator:      e.Operator,
				CompareValue:  e.CompareValue,
			},
		}
	case *fp.LogicalExpression:
		return &fp.LogicalExpression{Left: p.prepareFilter(e.Left), Right: p.prepareFilter(e.Right), Operator: e.Operator}
	case *fp.NotExpression:
		return &fp.NotExpression{Expression: p.prepareFilter(e.Expression)}
	}
	return e
}

// multiValued reports whether an attribute path names a multi-valued
// attribute of the core schema or an extension.
func (p *patcher) multiValued(ap fp.AttributePath) bool {
	sch := p.core
	if uri := ap.URI(); uri != "" && uri != p.core.ID {
		var ok bool
		if sch, ok = p.exts[uri]; !ok {
			return false
		}
	}
	a, ok := sch.Attributes.ContainsAttribute(ap.AttributeName)
	return ok && a.MultiValued()
}

// filterValidator is elimity's validator for a prepared filter, over the
// schemas elimity validated it with (User plus the common attributes, and
// the extension).
func (p *patcher) filterValidator(e fp.Expression) filter.Validator {
	exts := make([]schema.Schema, 0, len(p.exts))
	for _, ext := range p.exts {
		exts = append(exts, ext)
	}
	return filter.NewFilterValidator(p.prepareFilter(e), p.filterSchema, exts...)
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
