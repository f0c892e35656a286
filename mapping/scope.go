package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/scim-agent/scim-agent/internal/drupal"
)

// Scope operators: what a condition of provisioning.scope tests.
const (
	ScopeEquals    = "equals"     // the value is value (roles: holds value)
	ScopeNotEquals = "not_equals" // the value is not value (roles: does not hold it)
	ScopeIn        = "in"         // the value is one of values (roles: holds any of them)
	ScopeNotIn     = "not_in"     // the value is none of values (roles: holds none of them)
	ScopeMatches   = "matches"    // the value matches the RE2 expression value (roles: one of them does)
	ScopeEmpty     = "empty"      // NULL or "" (roles: holds none)
	ScopeNotEmpty  = "not_empty"  // neither (roles: holds one at least)
)

// scopeOps lists the operators in the order error messages name them.
var scopeOps = []string{ScopeEquals, ScopeNotEquals, ScopeIn, ScopeNotIn, ScopeMatches, ScopeEmpty, ScopeNotEmpty}

// Condition is one test of a provisioning.scope clause as configured: a
// source (as the mapping names them, constants aside), an operator, and
// the value (equals, not_equals, matches) or values (in, not_in) it
// compares with; empty and not_empty take neither.
type Condition struct {
	Source string
	Op     string
	Value  *string
	Values []string
}

// ScopeError is what is wrong with one condition: Clause and Condition
// count from 0, Field is the condition's key at fault (source, op, value
// or values; "" for the clause itself).
type ScopeError struct {
	Clause, Condition int
	Field             string
	Msg               string
}

// Error names the condition, the key and the problem.
func (e ScopeError) Error() string {
	where := fmt.Sprintf("scope[%d]", e.Clause)
	if e.Condition >= 0 {
		where += fmt.Sprintf("[%d]", e.Condition)
	}
	if e.Field != "" {
		where += "." + e.Field
	}
	return where + ": " + e.Msg
}

// ScopeErrors are every problem of a scope, so that a config names them
// all at once.
type ScopeErrors []ScopeError

// Error lists the problems, one a line.
func (es ScopeErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Scope decides which Drupal users are provisioned (provisioning.scope):
// a user is in when any clause holds, and a clause holds when every one
// of its conditions does. An empty scope lets everyone in. It is pure:
// the decision depends on the account's values alone.
type Scope struct {
	clauses [][]condition
}

// condition is a Condition ready to test.
type condition struct {
	src    source
	name   string // the source as configured
	op     string
	value  string
	values []string
	re     *regexp.Regexp
}

// NewScope checks and prepares clauses. The error is a ScopeErrors
// naming each condition at fault: an unknown source or operator, a value
// missing or given where the operator takes none, a pattern RE2 does not
// accept.
func NewScope(clauses [][]Condition) (*Scope, error) {
	s := &Scope{}
	var errs ScopeErrors
	for i, clause := range clauses {
		if len(clause) == 0 {
			errs = append(errs, ScopeError{Clause: i, Condition: -1, Msg: "a clause needs at least one condition (an empty one would let everyone in)"})
			continue
		}
		var conds []condition
		for j, c := range clause {
			cond, field, err := newCondition(c)
			if err != nil {
				errs = append(errs, ScopeError{Clause: i, Condition: j, Field: field, Msg: err.Error()})
				continue
			}
			conds = append(conds, cond)
		}
		s.clauses = append(s.clauses, conds)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// newCondition checks one condition; field names the key at fault.
func newCondition(c Condition) (cond condition, field string, err error) {
	name := strings.TrimSpace(c.Source)
	switch {
	case name == "":
		return cond, "source", errors.New("is required (a users_field_data column such as mail or status, uid, uuid, langcode, roles or field_<name>[.<property>])")
	case name == "pass":
		return cond, "source", errors.New(`"pass" is Drupal's password hash: the agent never reads it`)
	case strings.HasPrefix(name, "const:"):
		return cond, "source", fmt.Errorf("%q is a constant: a scope tests what a user has", name)
	}
	src, err := parseSource(name)
	switch {
	case errors.Is(err, errUnknownSource):
		return cond, "source", fmt.Errorf("unknown source %q (use a users_field_data column such as mail or status, uid, uuid, langcode, roles or field_<name>[.<property>])", name)
	case err != nil:
		return cond, "source", err
	}
	cond = condition{src: src, name: name, op: c.Op}
	if !slices.Contains(scopeOps, c.Op) {
		return cond, "op", fmt.Errorf("%q is not one of %s", c.Op, strings.Join(scopeOps, ", "))
	}
	switch c.Op {
	case ScopeEquals, ScopeNotEquals, ScopeMatches:
		if c.Values != nil {
			return cond, "values", fmt.Errorf("%s compares with one value: use value, not values", c.Op)
		}
		if c.Value == nil {
			return cond, "value", fmt.Errorf("is required with %s", c.Op)
		}
		cond.value = *c.Value
	case ScopeIn, ScopeNotIn:
		if c.Value != nil {
			return cond, "value", fmt.Errorf("%s compares with a list: use values: [...], not value", c.Op)
		}
		if len(c.Values) == 0 {
			return cond, "values", fmt.Errorf("%s needs at least one value", c.Op)
		}
		cond.values = slices.Clone(c.Values)
	default:
		if c.Value != nil || c.Values != nil {
			field = "value"
			if c.Value == nil {
				field = "values"
			}
			return cond, field, fmt.Errorf("%s takes no value", c.Op)
		}
	}
	if c.Op == ScopeMatches {
		if cond.re, err = regexp.Compile(cond.value); err != nil {
			return cond, "value", fmt.Errorf("%s is not a regular expression RE2 accepts: %v", quoteValue(cond.value), err)
		}
	}
	return cond, "", nil
}

// Everyone reports whether the scope lets every user in (it has no
// clause).
func (s *Scope) Everyone() bool { return s == nil || len(s.clauses) == 0 }

// Sources returns what the scope reads, for the reader's query and the
// binlog filter: the mapping's sources plus these are what a change must
// touch to matter.
func (s *Scope) Sources() drupal.Sources {
	if s == nil {
		return drupal.Sources{}
	}
	var srcs []source
	for _, clause := range s.clauses {
		for _, c := range clause {
			srcs = append(srcs, c.src)
		}
	}
	return sourcesOf(srcs)
}

// In reports whether the account is in scope.
func (s *Scope) In(a drupal.Account) bool { return s.Evaluate(a).In }

// Decision is the scope's verdict on one account and how it was reached,
// for explaining it: the conditions tested, in order, until a clause
// held or every clause failed at one of its conditions.
type Decision struct {
	In bool `json:"in"`
	// Everyone: provisioning.scope is empty, so everyone is in.
	Everyone bool `json:"everyone,omitempty"`
	// Clause is the clause that let the user in, counted from 1; 0 when
	// none did.
	Clause int     `json:"clause,omitempty"`
	Checks []Check `json:"checks,omitempty"`
}

// Check is one condition tested.
type Check struct {
	// Clause and Condition count from 1, as a person reads the list.
	Clause    int `json:"clause"`
	Condition int `json:"condition"`
	// Test is the condition as configured: `roles in [staff, editor]`.
	Test string `json:"test"`
	// Value is what the account holds there: "ann@example.org" quoted,
	// NULL, or a list of roles.
	Value string `json:"value"`
	Holds bool   `json:"holds"`
}

// String sums the decision up: which clause let the user in, or that
// none did and where each failed.
func (d Decision) String() string {
	switch {
	case d.Everyone:
		return "in scope: provisioning.scope is empty (everyone)"
	case d.In:
		return fmt.Sprintf("in scope: clause %d holds", d.Clause)
	}
	var fails []string
	for _, c := range d.Checks {
		if !c.Holds {
			fails = append(fails, fmt.Sprintf("clause %d fails at condition %d", c.Clause, c.Condition))
		}
	}
	return "out of scope: no clause holds (" + strings.Join(fails, ", ") + ")"
}

// Evaluate decides whether the account is in scope, and records how.
func (s *Scope) Evaluate(a drupal.Account) Decision {
	if s.Everyone() {
		return Decision{In: true, Everyone: true}
	}
	var d Decision
	for i, clause := range s.clauses {
		holds := true
		for j, c := range clause {
			ok, value := c.holds(a)
			d.Checks = append(d.Checks, Check{Clause: i + 1, Condition: j + 1, Test: c.String(), Value: value, Holds: ok})
			if !ok {
				holds = false
				break
			}
		}
		if holds {
			d.In, d.Clause = true, i+1
			return d
		}
	}
	return d
}

// String renders the condition as configured: `mail matches '@example\.org$'`.
func (c condition) String() string {
	switch c.op {
	case ScopeIn, ScopeNotIn:
		vals := make([]string, len(c.values))
		for i, v := range c.values {
			vals[i] = quoteValue(v)
		}
		return fmt.Sprintf("%s %s [%s]", c.name, c.op, strings.Join(vals, ", "))
	case ScopeEmpty, ScopeNotEmpty:
		return c.name + " " + c.op
	}
	return fmt.Sprintf("%s %s %s", c.name, c.op, quoteValue(c.value))
}

// holds tests the condition on an account and returns what the account
// holds there, rendered for a person.
func (c condition) holds(a drupal.Account) (bool, string) {
	raw := c.src.raw(a)
	if c.src.kind == sourceRoles {
		roles, _ := raw.([]string)
		return c.holdsRoles(roles), renderRoles(roles)
	}
	s := text(raw)
	shown := "NULL"
	if raw != nil {
		shown = fmt.Sprintf("%q", s)
	}
	switch c.op {
	case ScopeEquals:
		return s == c.value, shown
	case ScopeNotEquals:
		return s != c.value, shown
	case ScopeIn:
		return slices.Contains(c.values, s), shown
	case ScopeNotIn:
		return !slices.Contains(c.values, s), shown
	case ScopeMatches:
		return c.re.MatchString(s), shown
	case ScopeEmpty:
		return s == "", shown
	}
	return s != "", shown // not_empty
}

// holdsRoles tests the condition on a user's roles: equals and in hold
// when the user holds the role (any of them), their negations when it
// holds none.
func (c condition) holdsRoles(roles []string) bool {
	switch c.op {
	case ScopeEquals:
		return slices.Contains(roles, c.value)
	case ScopeNotEquals:
		return !slices.Contains(roles, c.value)
	case ScopeIn:
		return slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(c.values, r) })
	case ScopeNotIn:
		return !slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(c.values, r) })
	case ScopeMatches:
		return slices.ContainsFunc(roles, c.re.MatchString)
	case ScopeEmpty:
		return len(roles) == 0
	}
	return len(roles) > 0 // not_empty
}

// renderRoles shows a role list: [editor, staff], or "no roles".
func renderRoles(roles []string) string {
	if len(roles) == 0 {
		return "no roles"
	}
	return "[" + strings.Join(roles, ", ") + "]"
}

// plainValue is what a value may hold to be shown without quotes.
var plainValue = regexp.MustCompile(`^[A-Za-z0-9_.@+-]+$`)

// quoteValue shows a configured value as YAML would take it back: bare
// when it is a plain word, else in single quotes (a quote doubled).
func quoteValue(v string) string {
	if plainValue.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
