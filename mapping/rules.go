// Package mapping turns a Drupal user account into the SCIM User the agent
// wants on the server, and compares two such users attribute by attribute.
//
// A mapping is a set of rules, each "SCIM path ← Drupal source". The
// built-in rules (Default) follow Drupal's user entity; the `mapping:`
// section of config.yaml overrides or removes them one path at a time.
// Drupal's password hash (`pass`) can never be a source.
package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/scim-agent/scim-agent/internal/drupal"
)

// Schema URNs of the resources the agent writes.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
)

// Default returns the built-in mapping, SCIM path → Drupal source.
func Default() map[string]string {
	return map[string]string{
		"userName":          "name",
		"externalId":        "uuid",
		"emails":            "mail",
		"active":            "status",
		"displayName":       "name",
		"preferredLanguage": "preferred_langcode",
		"timezone":          "timezone",
	}
}

// targetKind says how a source value becomes a SCIM value.
type targetKind int

const (
	kindString    targetKind = iota // a string attribute or sub-attribute
	kindBool                        // active
	kindTypedList                   // emails, phoneNumbers: [{value, type: work, primary: true}]
	kindValueList                   // roles, entitlements: [{value}] per value
)

// simpleTargets are the core User attributes a rule may write, with their kind.
var simpleTargets = map[string]targetKind{
	"userName": kindString, "externalId": kindString, "displayName": kindString, "nickName": kindString,
	"profileUrl": kindString, "title": kindString, "userType": kindString, "preferredLanguage": kindString,
	"locale": kindString, "timezone": kindString, "active": kindBool,
	"emails": kindTypedList, "phoneNumbers": kindTypedList,
	"roles": kindValueList, "entitlements": kindValueList,
}

var nameSubAttributes = map[string]bool{
	"formatted": true, "familyName": true, "givenName": true, "middleName": true,
	"honorificPrefix": true, "honorificSuffix": true,
}

var enterpriseAttributes = map[string]bool{
	"employeeNumber": true, "costCenter": true, "organization": true, "division": true, "department": true,
}

var (
	usersColumns     = map[string]bool{"uid": true, "uuid": true, "langcode": true}
	fieldDataColumns = map[string]bool{
		"name": true, "mail": true, "status": true, "timezone": true, "preferred_langcode": true,
		"preferred_admin_langcode": true, "init": true, "created": true, "changed": true,
		"access": true, "login": true,
	}
	identifier = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// sourceKind says where a source value is read.
type sourceKind int

const (
	sourceUsers     sourceKind = iota // a column of users
	sourceFieldData                   // a column of the default users_field_data row
	sourceRoles                       // the role machine names in user__roles
	sourceField                       // a column of a configurable field table user__<field>
	sourceConstant                    // a fixed value
)

// source is where a rule reads its value.
type source struct {
	kind   sourceKind
	column string // users / users_field_data column, or the field table's value column
	field  string // sourceField: the field name, e.g. field_first_name
	value  string // sourceConstant: the value
}

// key names the value in drupal.Account.Values.
func (s source) key() string {
	switch s.kind {
	case sourceRoles:
		return "roles"
	case sourceField:
		return s.field + "." + s.column
	case sourceConstant:
		return ""
	default:
		return s.column
	}
}

// rule maps one source to one SCIM path.
type rule struct {
	path   string // SCIM attribute path: "userName", "name.givenName", EnterpriseSchema+":department"
	kind   targetKind
	source source
}

// Mapper maps Drupal accounts to SCIM users with a fixed set of rules.
type Mapper struct {
	rules []rule // sorted by path
}

// New builds a Mapper from Default overridden by overrides (SCIM path →
// source). An override with an empty source removes the default rule of
// that path. The error names the offending path or source.
func New(overrides map[string]string) (*Mapper, error) {
	merged := Default()
	for path, src := range overrides {
		if strings.TrimSpace(src) == "" {
			delete(merged, path)
			continue
		}
		merged[path] = src
	}
	m := &Mapper{}
	for path, src := range merged {
		r, err := parseRule(path, src)
		if err != nil {
			return nil, err
		}
		m.rules = append(m.rules, r)
	}
	sort.Slice(m.rules, func(i, j int) bool { return m.rules[i].path < m.rules[j].path })
	if !m.has("userName") {
		return nil, fmt.Errorf("mapping: userName must be mapped (SCIM requires it)")
	}
	return m, nil
}

func (m *Mapper) has(path string) bool {
	for _, r := range m.rules {
		if r.path == path {
			return true
		}
	}
	return false
}

func parseRule(path, src string) (rule, error) {
	r := rule{path: path}
	switch {
	case strings.HasPrefix(path, "name."):
		if !nameSubAttributes[strings.TrimPrefix(path, "name.")] {
			return r, fmt.Errorf("mapping: unknown SCIM attribute %q (name has formatted, familyName, givenName, middleName, honorificPrefix, honorificSuffix)", path)
		}
		r.kind = kindString
	case strings.HasPrefix(path, EnterpriseSchema+":"):
		if !enterpriseAttributes[strings.TrimPrefix(path, EnterpriseSchema+":")] {
			return r, fmt.Errorf("mapping: unknown SCIM attribute %q (the enterprise extension has employeeNumber, costCenter, organization, division, department)", path)
		}
		r.kind = kindString
	default:
		kind, ok := simpleTargets[path]
		if !ok {
			if path == "password" {
				return r, fmt.Errorf("mapping: %q cannot be mapped: the agent never sends passwords", path)
			}
			return r, fmt.Errorf("mapping: unknown SCIM attribute %q", path)
		}
		r.kind = kind
	}
	s, err := parseSource(src)
	if err != nil {
		return r, fmt.Errorf("mapping: %s: %w", path, err)
	}
	if s.kind == sourceRoles && r.kind != kindValueList {
		return r, fmt.Errorf("mapping: %s: roles is a list and can only be mapped to roles or entitlements", path)
	}
	r.source = s
	return r, nil
}

func parseSource(src string) (source, error) {
	src = strings.TrimSpace(src)
	switch {
	case strings.HasPrefix(src, "const:"):
		return source{kind: sourceConstant, value: strings.TrimPrefix(src, "const:")}, nil
	case src == "pass":
		return source{}, fmt.Errorf("source %q is Drupal's password hash and is never sent", src)
	case src == "roles":
		return source{kind: sourceRoles}, nil
	case usersColumns[src]:
		return source{kind: sourceUsers, column: src}, nil
	case fieldDataColumns[src]:
		return source{kind: sourceFieldData, column: src}, nil
	case strings.HasPrefix(src, "field_"):
		field, prop, _ := strings.Cut(src, ".")
		if prop == "" {
			prop = "value"
		}
		if !identifier.MatchString(field) || !identifier.MatchString(prop) {
			return source{}, fmt.Errorf("source %q is not a field name like field_first_name or field_first_name.value", src)
		}
		return source{kind: sourceField, field: field, column: field + "_" + prop}, nil
	}
	return source{}, fmt.Errorf("%w %q (use a users_field_data column such as name or mail, uuid, roles, field_<name>[.<property>] or const:<value>)", errUnknownSource, src)
}

// errUnknownSource marks a source parseSource does not know.
var errUnknownSource = errors.New("unknown source")

// FromUUID reports whether path is mapped from the user's uuid.
func (m *Mapper) FromUUID(path string) bool {
	for _, r := range m.rules {
		if r.path == path {
			return r.source.kind == sourceUsers && r.source.column == "uuid"
		}
	}
	return false
}

// Paths returns every SCIM path the mapping manages, sorted. The agent
// never touches other attributes of a server's user.
func (m *Mapper) Paths() []string {
	paths := make([]string, len(m.rules))
	for i, r := range m.rules {
		paths[i] = r.path
	}
	return paths
}

// Sources returns what the mapping reads, for the reader's query and for
// the binlog filter (which changes count).
func (m *Mapper) Sources() drupal.Sources {
	srcs := make([]source, len(m.rules))
	for i, r := range m.rules {
		srcs[i] = r.source
	}
	return sourcesOf(srcs)
}

// sourcesOf returns what reading srcs takes: the users_field_data
// columns, the roles, the configurable fields (each once, sorted).
func sourcesOf(srcs []source) drupal.Sources {
	var s drupal.Sources
	for _, src := range srcs {
		switch src.kind {
		case sourceFieldData:
			s = s.Merge(drupal.Sources{FieldDataColumns: []string{src.column}})
		case sourceRoles:
			s.Roles = true
		case sourceField:
			s = s.Merge(drupal.Sources{Fields: []drupal.Field{{Name: src.field, Column: src.column}}})
		}
	}
	return s
}
