package config

import (
	"strings"
	"testing"
)

func TestGroups(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "s3cret", "SCIM_TOKEN": "tok"})
	c, err := Parse([]byte(minimal), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Groups; g.Enabled || g.OnRoleDelete != "delete" || g.MaxMembersPerRequest != 100 || g.Selects("editor") {
		t.Fatalf("groups defaults: %+v", g)
	}
	c, err = Parse([]byte(minimal+"groups:\n  enabled: true\n  exclude_roles: [robot]\n"), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string]bool{"editor": true, "robot": false, "anonymous": false, "authenticated": false} {
		if got := c.Groups.Selects(role); got != want {
			t.Errorf("Selects(%q) = %v, want %v", role, got, want)
		}
	}
	c, err = Parse([]byte(minimal+"groups:\n  enabled: true\n  roles: [editor, staff]\n  on_role_delete: keep\n"), "config.yaml", vars)
	if err != nil || !c.Groups.Selects("staff") || c.Groups.Selects("author") || c.Groups.OnRoleDelete != "keep" {
		t.Fatalf("groups.roles: %+v, %v", c.Groups, err)
	}

	for _, tt := range []struct{ yaml, want string }{
		{"groups:\n  roles: [Editor]\n", `config.yaml:8: groups.roles[0]: "Editor" is not a role's machine name`},
		{"groups:\n  exclude_roles: [authenticated]\n", `config.yaml:8: groups.exclude_roles[0]: "authenticated" is never stored`},
		{"groups:\n  on_role_delete: purge\n", `config.yaml:8: groups.on_role_delete: "purge" is not one of delete, keep`},
		{"groups:\n  max_members_per_request: 0\n", `groups.max_members_per_request: 0 is not between 1 and 10000`},
		{"groups:\n  enabeld: true\n", `unknown key "enabeld" in groups`},
	} {
		_, err := Parse([]byte(minimal+tt.yaml), "config.yaml", vars)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to say %q", tt.yaml, err, tt.want)
		}
	}
}
