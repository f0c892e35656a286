package scimtest

import (
	"fmt"
	"net/http"
	"reflect"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/schema"
	fp "github.com/scim2/filter-parser/v2"
)

// patcher applies PATCH operations that elimity has already validated
// (elimity parses and type-checks them but leaves applying them to the
// resource handler), following RFC 7644 §3.5.2.
type patcher struct {
	core         schema.Schema            // the core User schema plus externalId
	filterSchema schema.Schema            // the core User schema plus the common attributes
	exts         map[string]schema.Schema // extension schemas by URN
}

func newPatcher() *patcher {
	core := schema.CoreUserSchema()
	core.Attributes = append(append(schema.Attributes{}, core.Attributes...),
		schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
			CaseExact: true,
			Name:      "externalId",
		})))
	filterSchema := schema.CoreUserSchema()
	filterSchema.Attributes = append(append(schema.Attributes{}, filterSchema.Attributes...), schema.CommonAttributes()...)
	ext := schema.ExtensionEnterpriseUser()
	return &patcher{core: core, filterSchema: filterSchema, exts: map[string]schema.Schema{ext.ID: ext}}
}

func patchError(scimType scimerrors.ScimType, format string, args ...any) error {
	return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// apply applies one operation to attrs in place.
func (p *patcher) apply(attrs map[string]any, op scim.PatchOperation) error {
	if op.Path != nil {
		return p.applyPath(attrs, op.Op, *op.Path, op.Value)
	}
	// No path: the value is an object of attribute paths (and extension
	// objects under their URN) to add or replace.
	values, ok := op.Value.(map[string]any)
	if !ok {
		return patchError(scimerrors.ScimTypeInvalidValue, "an operation without a path needs an object value")
	}
	for k, v := range values {
		if _, isExt := p.exts[k]; isExt {
			sub, ok := v.(map[string]any)
			if !ok {
				return patchError(scimerrors.ScimTypeInvalidValue, "the value of %s must be an object", k)
			}
			for ek, ev := range sub {
				uri := k
				path := fp.Path{AttributePath: fp.AttributePath{URIPrefix: &uri, AttributeName: ek}}
				if err := p.applyPath(attrs, op.Op, path, ev); err != nil {
					return err
				}
			}
			continue
		}
		path, err := fp.ParsePath([]byte(k))
		if err != nil {
			return patchError(scimerrors.ScimTypeInvalidPath, "invalid attribute path %q", k)
		}
		if err := p.applyPath(attrs, op.Op, path, v); err != nil {
			return err
		}
	}
	return nil
}

// applyPath applies an operation at a path: "attr", "attr.sub",
// "<urn>:attr", "attr[filter]" or "attr[filter].sub".
func (p *patcher) applyPath(attrs map[string]any, op string, path fp.Path, value any) error {
	ap := path.AttributePath
	sch, target := p.core, attrs
	if uri := ap.URI(); uri != "" && uri != p.core.ID {
		ext, ok := p.exts[uri]
		if !ok {
			return patchError(scimerrors.ScimTypeInvalidPath, "unknown schema URN %q", uri)
		}
		sch = ext
		m, _ := attrs[uri].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		defer func() {
			if len(m) == 0 {
				delete(attrs, uri)
			} else {
				attrs[uri] = m
			}
		}()
		target = m
	}
	attr, subName, err := resolvePath(sch, path)
	if err != nil {
		return err
	}
	if path.ValueExpression != nil {
		return p.applyFiltered(target, op, attr, subName, path.ValueExpression, value)
	}
	if subName == "" {
		return applyWhole(target, op, attr, value)
	}
	return applySub(target, op, attr, subName, value)
}

// resolvePath finds the attribute a path names in sch and the
// sub-attribute it names ("attr.sub" or "attr[filter].sub"; "" for none),
// both in the schema's spelling; an unknown one is a 400 invalidPath.
func resolvePath(sch schema.Schema, path fp.Path) (schema.CoreAttribute, string, error) {
	ap := path.AttributePath
	attr, ok := sch.Attributes.ContainsAttribute(ap.AttributeName)
	if !ok {
		return attr, "", patchError(scimerrors.ScimTypeInvalidPath, "no attribute %q", ap.AttributeName)
	}
	name := attr.Name()
	subName := ap.SubAttributeName()
	if subName == "" {
		subName = path.SubAttributeName()
	}
	if subName != "" {
		sub, ok := attr.SubAttributes().ContainsAttribute(subName)
		if !ok {
			return attr, "", patchError(scimerrors.ScimTypeInvalidPath, "no sub-attribute %q in %q", subName, name)
		}
		subName = sub.Name()
	}
	return attr, subName, nil
}

// applyWhole applies an operation to a whole attribute of target: remove
// deletes it, a multi-valued one gets the values (add appends those not
// there yet), a complex one gets the given sub-attributes added or
// replaced, a simple one the value.
func applyWhole(target map[string]any, op string, attr schema.CoreAttribute, value any) error {
	name := attr.Name()
	switch {
	case op == scim.PatchOperationRemove:
		delete(target, name)
	case attr.MultiValued():
		list := asList(value)
		if op == scim.PatchOperationAdd {
			list = appendUnique(asList(target[name]), list)
		}
		setList(target, name, list)
	case attr.HasSubAttributes():
		// A complex attribute: the given sub-attributes are added or
		// replaced, the others are left unchanged (RFC 7644 §3.5.2.1,
		// §3.5.2.3).
		vm, ok := value.(map[string]any)
		if !ok {
			return patchError(scimerrors.ScimTypeInvalidValue, "the value of %q must be an object", name)
		}
		m, _ := target[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		for k, v := range vm {
			m[k] = v
		}
		target[name] = m
	default:
		target[name] = value
	}
	return nil
}

// applySub applies an operation to sub-attribute subName of an attribute
// of target without a filter: of every element of a multi-valued one (no
// element is a 400 noTarget but for remove), or of a complex one (removed
// when left empty).
func applySub(target map[string]any, op string, attr schema.CoreAttribute, subName string, value any) error {
	name := attr.Name()
	if attr.MultiValued() {
		// "emails.value" without a filter: every element.
		list := asList(target[name])
		if len(list) == 0 {
			if op == scim.PatchOperationRemove {
				return nil
			}
			return patchError(scimerrors.ScimTypeNoTarget, "%q has no values", name)
		}
		for _, e := range list {
			if em, ok := e.(map[string]any); ok {
				setSub(em, op, subName, value)
			}
		}
		setList(target, name, dropEmpty(list))
		return nil
	}
	m, _ := target[name].(map[string]any)
	if m == nil {
		if op == scim.PatchOperationRemove {
			return nil
		}
		m = map[string]any{}
	}
	setSub(m, op, subName, value)
	if len(m) == 0 {
		delete(target, name)
	} else {
		target[name] = m
	}
	return nil
}

// applyFiltered applies an operation to the elements of a multi-valued
// attribute that match a value filter. No match is a 400 noTarget for add
// and replace (RFC 7644 §3.5.2.3) and nothing to do for remove.
func (p *patcher) applyFiltered(target map[string]any, op string, attr schema.CoreAttribute, subName string, expr fp.Expression, value any) error {
	name := attr.Name()
	if !attr.MultiValued() {
		return patchError(scimerrors.ScimTypeInvalidPath, "a value filter needs a multi-valued attribute, %q is not", name)
	}
	unescapeFilter(expr)
	v := filter.NewFilterValidator(expr, schema.Schema{Attributes: filter.MultiValuedFilterAttributes(attr)})
	list := asList(target[name])
	var matched []int
	for i, e := range list {
		em, ok := e.(map[string]any)
		if !ok {
			em = map[string]any{"value": e}
		}
		if passes(v, em) {
			matched = append(matched, i)
		}
	}
	if len(matched) == 0 {
		if op == scim.PatchOperationRemove {
			return nil
		}
		return patchError(scimerrors.ScimTypeNoTarget, "no value of %q matches the filter", name)
	}
	for _, i := range matched {
		em, isMap := list[i].(map[string]any)
		switch {
		case subName != "" && isMap:
			setSub(em, op, subName, value)
		case op == scim.PatchOperationRemove:
			list[i] = nil
		case op == scim.PatchOperationReplace || !isMap:
			list[i] = value
		default: // add: merge into the element
			if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					em[k] = v
				}
			}
		}
	}
	setList(target, name, dropEmpty(list))
	return nil
}

func setSub(m map[string]any, op, sub string, value any) {
	if op == scim.PatchOperationRemove {
		delete(m, sub)
		return
	}
	m[sub] = value
}

func asList(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		return []any{v}
	}
}

func appendUnique(list, add []any) []any {
	for _, a := range add {
		dup := false
		for _, e := range list {
			dup = dup || reflect.DeepEqual(a, e)
		}
		if !dup {
			list = append(list, a)
		}
	}
	return list
}

// dropEmpty removes nil elements and empty objects.
func dropEmpty(list []any) []any {
	out := list[:0]
	for _, e := range list {
		if e == nil {
			continue
		}
		if m, ok := e.(map[string]any); ok && len(m) == 0 {
			continue
		}
		out = append(out, e)
	}
	return out
}

func setList(target map[string]any, name string, list []any) {
	if len(list) == 0 {
		delete(target, name)
		return
	}
	target[name] = list
}
