package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/mapping"
)

// issueScope is provisioning.scope exactly as README documents it.
const issueScope = `provisioning:
  scope:
    - [{source: roles, op: in, values: [staff, editor]}, {source: status, op: equals, value: "1"}]
    - [{source: mail, op: matches, value: '@example\.org$'}]
  out_of_scope: deactivate
`

func TestScope(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "s3cret", "SCIM_TOKEN": "tok"})
	c, err := Parse([]byte(minimal), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Provisioning; len(p.Scope) != 0 || p.OutOfScope != OutOfScopeDeactivate {
		t.Fatalf("defaults: scope %v, out_of_scope %q", p.Scope, p.OutOfScope)
	}
	c, err = Parse([]byte(minimal+issueScope), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	one, pattern := "1", `@example\.org$`
	want := [][]mapping.Condition{
		{{Source: "roles", Op: "in", Values: []string{"staff", "editor"}}, {Source: "status", Op: "equals", Value: &one}},
		{{Source: "mail", Op: "matches", Value: &pattern}},
	}
	if got := c.Provisioning.ScopeClauses(); !reflect.DeepEqual(got, want) {
		t.Fatalf("scope = %+v, want %+v", got, want)
	}
	// Block style, and a bare number as the value.
	block := "provisioning:\n  out_of_scope: ignore\n  scope:\n    - - source: status\n        op: equals\n        value: 1\n"
	if c, err = Parse([]byte(minimal+block), "config.yaml", vars); err != nil {
		t.Fatal(err)
	}
	if cl := c.Provisioning.ScopeClauses(); c.Provisioning.OutOfScope != "ignore" || *cl[0][0].Value != "1" {
		t.Fatalf("block style: %+v", c.Provisioning)
	}

	for _, tt := range []struct{ yaml, want string }{
		{"provisioning:\n  out_of_scope: disable\n", `config.yaml:8: provisioning.out_of_scope: "disable" is not one of deactivate, delete, ignore`},
		{"provisioning:\n  scope:\n    - [{source: roles, op: in, values: [staff]}]\n    - [{source: mial, op: empty}]\n",
			`config.yaml:10: provisioning.scope[1][0].source: unknown source "mial"`},
		{"provisioning:\n  scope:\n    - [{source: pass, op: not_empty}]\n", `config.yaml:9: provisioning.scope[0][0].source: "pass" is Drupal's password hash`},
		{"provisioning:\n  scope:\n    - [{source: mail, op: like, value: x}]\n",
			`config.yaml:9: provisioning.scope[0][0].op: "like" is not one of equals, not_equals, in, not_in, matches, empty, not_empty`},
		{"provisioning:\n  scope:\n    - [{source: mail, op: matches, value: '@(example'}]\n",
			`config.yaml:9: provisioning.scope[0][0].value: '@(example' is not a regular expression RE2 accepts`},
		{"provisioning:\n  scope:\n    - - source: mail\n        op: matches\n", `config.yaml:9: provisioning.scope[0][0].value: is required with matches`},
		{"provisioning:\n  scope:\n    - - source: roles\n        op: in\n        value: staff\n", `config.yaml:11: provisioning.scope[0][0].value: in compares with a list`},
		{"provisioning:\n  scope:\n    - []\n", `config.yaml:9: provisioning.scope[0]: a clause needs at least one condition`},
		{"provisioning:\n  scope:\n    - {source: mail, op: empty}\n", `config.yaml:9: provisioning.scope[0]: a clause is a list of conditions`},
		{"provisioning:\n  scope:\n    - [{source: mail, op: empty, vaule: x}]\n", `config.yaml:9: unknown key "vaule" in provisioning.scope[0][0]`},
		{"provisioning:\n  scope:\n    - [{source: mail, op: matches, value: [a, b]}]\n", `config.yaml:9: provisioning.scope[0][0].value: must be a single value, not a list`},
	} {
		_, err := Parse([]byte(minimal+tt.yaml), "config.yaml", vars)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to say %q", tt.yaml, err, tt.want)
		}
	}
}
