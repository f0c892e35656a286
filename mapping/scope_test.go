package mapping

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupal"
)

func str(s string) *string { return &s }

func TestNewScopeRejectsBadConditions(t *testing.T) {
	tests := []struct {
		name      string
		cond      Condition
		wantField string
		wantErr   string
	}{
		{"no source", Condition{Op: ScopeEmpty}, "source", "is required"},
		{"unknown source", Condition{Source: "job", Op: ScopeEmpty}, "source", `unknown source "job"`},
		{"password hash", Condition{Source: "pass", Op: ScopeNotEmpty}, "source", "password hash"},
		{"constant", Condition{Source: "const:x", Op: ScopeEmpty}, "source", "is a constant"},
		{"field name with SQL in it", Condition{Source: "field_x; DROP TABLE users", Op: ScopeEmpty}, "source", "is not a field name"},
		{"unknown op", Condition{Source: "mail", Op: "contains", Value: str("x")}, "op", `"contains" is not one of equals, not_equals, in, not_in, matches, empty, not_empty`},
		{"equals without value", Condition{Source: "status", Op: ScopeEquals}, "value", "is required with equals"},
		{"equals with values", Condition{Source: "status", Op: ScopeEquals, Values: []string{"1"}}, "values", "use value, not values"},
		{"in without values", Condition{Source: "roles", Op: ScopeIn}, "values", "needs at least one value"},
		{"in with value", Condition{Source: "roles", Op: ScopeIn, Value: str("staff")}, "value", "use values: [...], not value"},
		{"empty with value", Condition{Source: "mail", Op: ScopeEmpty, Value: str("")}, "value", "takes no value"},
		{"bad pattern", Condition{Source: "mail", Op: ScopeMatches, Value: str(`@(example\.org$`)}, "value", "not a regular expression RE2 accepts"},
		{"Perl-only pattern", Condition{Source: "mail", Op: ScopeMatches, Value: str(`^(?!svc-)`)}, "value", "not a regular expression RE2 accepts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewScope([][]Condition{{{Source: "status", Op: ScopeEquals, Value: str("1")}, tt.cond}})
			var se ScopeErrors
			if !errors.As(err, &se) || len(se) != 1 {
				t.Fatalf("NewScope error = %v, want one ScopeError", err)
			}
			if e := se[0]; e.Clause != 0 || e.Condition != 1 || e.Field != tt.wantField || !strings.Contains(e.Msg, tt.wantErr) {
				t.Fatalf("error = %+v, want scope[0][1].%s containing %q", e, tt.wantField, tt.wantErr)
			}
		})
	}
	if _, err := NewScope([][]Condition{{}}); err == nil || !strings.Contains(err.Error(), "scope[0]: a clause needs at least one condition") {
		t.Fatalf("empty clause: %v", err)
	}
}

func TestScopeEvaluate(t *testing.T) {
	staffOrActiveEditor := [][]Condition{
		{{Source: "roles", Op: ScopeIn, Values: []string{"staff", "editor"}}, {Source: "status", Op: ScopeEquals, Value: str("1")}},
		{{Source: "mail", Op: ScopeMatches, Value: str(`@example\.org$`)}},
	}
	tests := []struct {
		name    string
		clauses [][]Condition
		acct    drupal.Account
		in      bool
		clause  int
		checks  []string // clause.condition:holds value
	}{
		{"empty scope", nil, account(map[string]any{}), true, 0, nil},
		{"first clause holds", staffOrActiveEditor,
			account(map[string]any{"roles": []string{"editor"}, "status": int64(1), "mail": "e@other.test"}), true, 1,
			[]string{"1.1:true [editor]", `1.2:true "1"`}},
		{"AND fails, OR holds", staffOrActiveEditor,
			account(map[string]any{"roles": []string{"editor"}, "status": int64(0), "mail": "e@example.org"}), true, 2,
			[]string{"1.1:true [editor]", `1.2:false "0"`, `2.1:true "e@example.org"`}},
		{"no clause holds", staffOrActiveEditor,
			account(map[string]any{"roles": []string(nil), "status": int64(1), "mail": nil}), false, 0,
			[]string{"1.1:false no roles", "2.1:false NULL"}},
		{"not_in roles", [][]Condition{{{Source: "roles", Op: ScopeNotIn, Values: []string{"robot"}}}},
			account(map[string]any{"roles": []string{"editor", "robot"}}), false, 0, []string{"1.1:false [editor, robot]"}},
		{"roles equals is holds", [][]Condition{{{Source: "roles", Op: ScopeEquals, Value: str("robot")}}},
			account(map[string]any{"roles": []string{"editor", "robot"}}), true, 1, []string{"1.1:true [editor, robot]"}},
		{"roles empty", [][]Condition{{{Source: "roles", Op: ScopeEmpty}}},
			account(map[string]any{"roles": []string(nil)}), true, 1, []string{"1.1:true no roles"}},
		{"not_equals on uid", [][]Condition{{{Source: "uid", Op: ScopeNotEquals, Value: str("7")}}},
			account(map[string]any{}), false, 0, []string{`1.1:false "7"`}},
		{"in on langcode", [][]Condition{{{Source: "langcode", Op: ScopeIn, Values: []string{"de", "en"}}}},
			account(map[string]any{}), true, 1, []string{`1.1:true "en"`}},
		{"not_empty field", [][]Condition{{{Source: "field_department", Op: ScopeNotEmpty}}},
			account(map[string]any{"field_department.field_department_value": ""}), false, 0, []string{`1.1:false ""`}},
		{"empty NULL field", [][]Condition{{{Source: "field_department.target_id", Op: ScopeEmpty}}},
			account(map[string]any{"field_department.field_department_target_id": nil}), true, 1, []string{"1.1:true NULL"}},
		{"not_in mail", [][]Condition{{{Source: "mail", Op: ScopeNotIn, Values: []string{"svc@example.org"}}}},
			account(map[string]any{"mail": "svc@example.org"}), false, 0, []string{`1.1:false "svc@example.org"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewScope(tt.clauses)
			if err != nil {
				t.Fatal(err)
			}
			d := s.Evaluate(tt.acct)
			if d.In != tt.in || d.Clause != tt.clause || s.In(tt.acct) != tt.in {
				t.Fatalf("Evaluate = %+v, want in %v by clause %d", d, tt.in, tt.clause)
			}
			var checks []string
			for _, c := range d.Checks {
				checks = append(checks, fmt.Sprintf("%d.%d:%v %s", c.Clause, c.Condition, c.Holds, c.Value))
			}
			if !reflect.DeepEqual(checks, tt.checks) {
				t.Fatalf("checks = %q, want %q", checks, tt.checks)
			}
		})
	}
}

func TestScopeDecisionAndConditionText(t *testing.T) {
	s, err := NewScope([][]Condition{
		{{Source: "roles", Op: ScopeIn, Values: []string{"staff", "content editor"}}, {Source: "status", Op: ScopeEquals, Value: str("1")}},
		{{Source: "mail", Op: ScopeMatches, Value: str(`@example\.org$`)}, {Source: "name", Op: ScopeNotEmpty}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Evaluate(account(map[string]any{"roles": []string{"staff"}, "status": int64(0), "mail": "x@other.test", "name": "x"}))
	var tests []string
	for _, c := range d.Checks {
		tests = append(tests, c.Test)
	}
	want := []string{"roles in [staff, 'content editor']", "status equals 1", `mail matches '@example\.org$'`}
	if !reflect.DeepEqual(tests, want) {
		t.Fatalf("tests = %q, want %q", tests, want)
	}
	if got := d.String(); got != "out of scope: no clause holds (clause 1 fails at condition 2, clause 2 fails at condition 1)" {
		t.Fatalf("String() = %q", got)
	}
	if got := (Decision{In: true, Clause: 2}).String(); got != "in scope: clause 2 holds" {
		t.Fatalf("String() = %q", got)
	}
	var none *Scope
	if !none.Everyone() || !none.Evaluate(account(nil)).In {
		t.Fatal("a nil scope must let everyone in")
	}
}

func TestScopeSources(t *testing.T) {
	s, err := NewScope([][]Condition{
		{{Source: "roles", Op: ScopeNotEmpty}, {Source: "status", Op: ScopeEquals, Value: str("1")}},
		{{Source: "mail", Op: ScopeEmpty}, {Source: "field_team.target_id", Op: ScopeNotEmpty}, {Source: "uid", Op: ScopeNotEquals, Value: str("1")},
			{Source: "status", Op: ScopeEquals, Value: str("1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := drupal.Sources{FieldDataColumns: []string{"mail", "status"}, Roles: true,
		Fields: []drupal.Field{{Name: "field_team", Column: "field_team_target_id"}}}
	if got := s.Sources(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Sources() = %+v, want %+v", got, want)
	}
	m, _ := New(nil)
	merged := m.Sources().Merge(s.Sources())
	if !reflect.DeepEqual(merged.FieldDataColumns, []string{"mail", "name", "preferred_langcode", "status", "timezone"}) || !merged.Roles ||
		len(merged.Fields) != 1 {
		t.Fatalf("merged = %+v", merged)
	}
}

func TestActive(t *testing.T) {
	for _, tt := range []struct {
		res  map[string]any
		want bool
	}{
		{map[string]any{"active": true}, true},
		{map[string]any{"active": false}, false},
		{map[string]any{"Active": "False"}, false},
		{map[string]any{"active": "true"}, true},
		{map[string]any{}, true},
	} {
		if got := Active(tt.res); got != tt.want {
			t.Errorf("Active(%v) = %v, want %v", tt.res, got, tt.want)
		}
	}
}
