package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const minimal = `
mysql:
  dsn: "agent:${DB_PASSWORD}@tcp(127.0.0.1:3306)/drupal"
scim:
  base_url: https://idp.example.com/scim/v2
  token: ${SCIM_TOKEN}
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "config.yaml", env(map[string]string{"DB_PASSWORD": "s3cret", "SCIM_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MySQL.DSN != "agent:s3cret@tcp(127.0.0.1:3306)/drupal" || c.SCIM.Token != "tok" {
		t.Fatalf("env not expanded: %+v", c)
	}
	p := c.Provisioning
	if len(p.Operations) != 4 || p.OnDelete != "delete" || len(p.ExcludeUIDs) != 1 || p.ExcludeUIDs[0] != 0 ||
		p.Workers != 4 || p.MaxDeletes != 100 || p.MaxDeletesWindow != 10*time.Minute || p.ReconcileInterval != 0 {
		t.Fatalf("provisioning defaults: %+v", p)
	}
	if c.State.Path != DefaultStatePath || c.Log.Level != "info" || c.Log.Format != "json" || c.Admin.Listen != DefaultAdminListen {
		t.Fatalf("defaults: %+v", c)
	}
	if c.MySQL.ServerID < 1_000_000 {
		t.Fatalf("derived server id %d", c.MySQL.ServerID)
	}
	c2, _ := Parse([]byte(minimal), "config.yaml", env(map[string]string{"DB_PASSWORD": "other", "SCIM_TOKEN": "tok"}))
	if c2.MySQL.ServerID != c.MySQL.ServerID {
		t.Fatalf("server id not stable: %d vs %d", c.MySQL.ServerID, c2.MySQL.ServerID)
	}
	if !p.Excluded(0) || p.Excluded(1) || !p.Allows(OpDelete) {
		t.Fatal("Excluded/Allows")
	}
}

func TestExplicitValuesStay(t *testing.T) {
	doc := minimal + `
provisioning:
  reconcile_interval: 0
  operations: [create, update]
  exclude_uids: [1]
  max_deletes: 0
admin:
  listen: ""
`
	c, err := Parse([]byte(doc), "config.yaml", env(map[string]string{"DB_PASSWORD": "x", "SCIM_TOKEN": "t"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Provisioning.Allows(OpDelete) || c.Admin.Listen != "" || c.Provisioning.MaxDeletes != 0 {
		t.Fatalf("explicit values replaced by defaults: %+v", c)
	}
	if !c.Provisioning.Excluded(0) || !c.Provisioning.Excluded(1) {
		t.Fatal("uid 0 must stay excluded whatever exclude_uids says")
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "pw-QX7", "SCIM_TOKEN": "tok-QX7"})
	tests := []struct {
		name, doc, want string
	}{
		{"unknown top-level key", minimal + "logging:\n  level: info\n", `config.yaml:7: unknown key "logging" at the top level`},
		{"unknown nested key", minimal + "provisioning:\n  worker: 3\n", `config.yaml:8: unknown key "worker" in provisioning (known keys: exclude_uids, max_deletes,`},
		{"unset variable", strings.Replace(minimal, "${SCIM_TOKEN}", "${NOPE}", 1), `config.yaml:6: scim.token: environment variable NOPE is not set`},
		{"bad on_delete", minimal + "provisioning:\n  on_delete: remove\n", `config.yaml:8: provisioning.on_delete: "remove" is not one of delete, deactivate`},
		{"bad operation", minimal + "provisioning:\n  operations: [create, purge]\n", `provisioning.operations: "purge" is not one of`},
		{"workers out of range", minimal + "provisioning:\n  workers: 0\n", ``},
		{"wrong type", minimal + "provisioning:\n  workers: many\n", "config.yaml:8: provisioning.workers: cannot unmarshal !!str `many` into int"},
		{"wrong type in a flow mapping", minimal + "provisioning: {max_deletes: 5, workers: many}\n", "config.yaml:7: provisioning.workers: cannot unmarshal !!str `many` into int"},
		{"long wrong value in a flow mapping", minimal + "provisioning: {max_deletes: 5, workers: manymanymany}\n", "config.yaml:7: provisioning.workers: cannot unmarshal !!str `manyman...` into int"},
		{"wrong type in a list", minimal + "provisioning:\n  exclude_uids: [0, zero]\n", "config.yaml:8: provisioning.exclude_uids[1]: cannot unmarshal !!str `zero`"},
		{"second document", minimal + "---\nprovisioning:\n  workers: 9\n", "config.yaml:7: a second YAML document (after ---) would be ignored"},
		{"missing dsn", "scim:\n  base_url: https://x/scim\n  token: t\n", `config.yaml: mysql.dsn: is required`},
		{"dsn without database", strings.Replace(minimal, "/drupal", "/", 1), `config.yaml:3: mysql.dsn: names no database`},
		{"relative URL", strings.Replace(minimal, "https://idp.example.com/scim/v2", "/scim/v2", 1), `scim.base_url: "/scim/v2" is not an absolute http(s) URL`},
		{"token and token_file", minimal + "  token_file: /x\n", `set either scim.token or scim.token_file, not both`},
		{"password in mapping", minimal + "mapping:\n  displayName: pass\n", `config.yaml:8: mapping: displayName: source "pass" is Drupal's password hash`},
		{"bad prefix", strings.Replace(minimal, "mysql:\n", "mysql:\n  table_prefix: \"a;b\"\n", 1), `config.yaml:3: mysql.table_prefix: "a;b" may hold only`},
		{"duration without unit", minimal + "provisioning:\n  reconcile_interval: 6\n", `config.yaml:8: provisioning.reconcile_interval: "6" needs a unit`},
		{"not a duration", minimal + "provisioning:\n  max_deletes_window: soon\n", `provisioning.max_deletes_window: "soon" is not a duration`},
		{"reconcile too often", minimal + "provisioning:\n  reconcile_interval: 5s\n", `provisioning.reconcile_interval: 5s must be 0 (off) or at least 1m`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "config.yaml", vars)
			if err == nil {
				if tt.name == "workers out of range" {
					// workers: 0 means the default: not an error.
					return
				}
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "QX7") {
				t.Fatalf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestEnvironmentInNumbers(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "pw", "SCIM_TOKEN": "007", "WORKERS": "6", "SERVER_ID": "4242",
		"SKIP": "17", "MAX": "many"})
	doc := strings.Replace(minimal, "mysql:\n", "mysql:\n  server_id: \"${SERVER_ID}\"\n", 1) +
		"provisioning:\n  workers: ${WORKERS}\n  exclude_uids:\n    - 0\n    - ${SKIP}\n"
	cfg, err := Parse([]byte(doc), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Provisioning.Workers != 6 || cfg.MySQL.ServerID != 4242 || len(cfg.Provisioning.ExcludeUIDs) != 2 ||
		cfg.Provisioning.ExcludeUIDs[1] != 17 {
		t.Fatalf("workers %d, server_id %d, exclude_uids %v", cfg.Provisioning.Workers, cfg.MySQL.ServerID, cfg.Provisioning.ExcludeUIDs)
	}
	// A string stays a string, digits or not.
	if cfg.SCIM.Token != "007" {
		t.Fatalf("token = %q, want the digits kept as written", cfg.SCIM.Token)
	}
	_, err = Parse([]byte(minimal+"provisioning:\n  max_deletes: ${MAX}\n"), "config.yaml", vars)
	if err == nil || !strings.Contains(err.Error(), "config.yaml:8: provisioning.max_deletes: cannot unmarshal !!str `many`") {
		t.Fatalf("error = %v, want the line, key and value at fault", err)
	}
}

func TestTokenFromTheEnvironmentIsTrimmed(t *testing.T) {
	// A Secret made with `echo token > f; kubectl create secret --from-file`.
	c, err := Parse([]byte(minimal), "config.yaml", env(map[string]string{"DB_PASSWORD": "x", "SCIM_TOKEN": "env-token\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SCIM.Token != "env-token" {
		t.Fatalf("token = %q, want the newline trimmed", c.SCIM.Token)
	}
	if _, err := Parse([]byte(minimal), "config.yaml", env(map[string]string{"DB_PASSWORD": "x", "SCIM_TOKEN": " \n"})); err == nil ||
		!strings.Contains(err.Error(), "scim.token: is only blanks") {
		t.Fatalf("a blank token: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	os.WriteFile(path, []byte("  file-token\n"), 0o600)
	doc := strings.Replace(minimal, "token: ${SCIM_TOKEN}", "token_file: "+path, 1)
	c, err := Parse([]byte(doc), "config.yaml", env(map[string]string{"DB_PASSWORD": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SCIM.Token != "file-token" {
		t.Fatalf("token = %q", c.SCIM.Token)
	}
}

func TestRedactDSN(t *testing.T) {
	got := RedactDSN("agent:hunter2@tcp(db:3306)/drupal")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "agent:") {
		t.Fatalf("RedactDSN = %q", got)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	data, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatalf("the example config.yaml is missing: %v", err)
	}
	vars := env(map[string]string{"MYSQL_PASSWORD": "pw", "SCIM_TOKEN": "tok"})
	if _, err := Parse(data, "config.yaml", vars); err != nil {
		t.Fatalf("the example config.yaml does not load: %v", err)
	}
	// Its commented provisioning.scope works once uncommented.
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "  # scope:"); ok {
			l = "  scope:" + rest
		} else if rest, ok := strings.CutPrefix(l, "  #   - ["); ok {
			l = "    - [" + rest
		}
		lines = append(lines, l)
	}
	c, err := Parse([]byte(strings.Join(lines, "\n")), "config.yaml", vars)
	if err != nil {
		t.Fatalf("config.yaml with its scope example uncommented: %v", err)
	}
	if len(c.Provisioning.Scope) != 2 {
		t.Fatalf("the scope example has %d clauses, want 2", len(c.Provisioning.Scope))
	}
}

func TestDSNErrorNeverQuotesThePassword(t *testing.T) {
	tests := []struct {
		name, password, dsn, want string
	}{
		// go-sql-driver splits a DSN with no database at the password's
		// '/', and quotes one half or the other.
		{"slash in the password, no database", "Hq7xZ2pLm9/Wr4", "agent:${DB_PASSWORD}@tcp(127.0.0.1:3306)", "not shown"},
		{"slash and percent in the password", "ab/Wr4%zzSecretTail", "agent:${DB_PASSWORD}@tcp(127.0.0.1:3306)", "not shown"},
		// A message that quotes nothing of the password stays useful.
		{"no database", "plain", "agent:${DB_PASSWORD}@tcp(127.0.0.1:3306)", "missing the slash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "mysql:\n  dsn: \"" + tt.dsn + "\"\nscim:\n  base_url: https://idp.example.com/scim/v2\n  token: tok\n"
			_, err := Parse([]byte(doc), "config.yaml", env(map[string]string{"DB_PASSWORD": tt.password}))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "config.yaml:2: mysql.dsn: is not a valid DSN") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q, want the key and %q", err, tt.want)
			}
			for i := 0; i+4 <= len(tt.password); i++ {
				if piece := tt.password[i : i+4]; strings.Contains(err.Error(), piece) {
					t.Fatalf("error quotes %q of the password: %q", piece, err)
				}
			}
		})
	}
}

func TestEmptyOperationsWarn(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "x", "SCIM_TOKEN": "t"})
	for _, ops := range []string{"operations: []", "operations:", "operations: [create]"} {
		c, err := Parse([]byte(minimal+"provisioning:\n  "+ops+"\n"), "config.yaml", vars)
		if err != nil {
			t.Fatalf("%s: %v", ops, err)
		}
		warned := slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "provisioning.operations is empty") })
		if want := ops != "operations: [create]"; warned != want {
			t.Errorf("%s: warnings %q, want the empty-operations warning %v", ops, c.Warnings, want)
		}
	}
}

// TestAdminSocket: the control socket defaults to the state file's path
// plus .sock, and a path a Unix socket cannot have is an error naming
// the key.
func TestAdminSocket(t *testing.T) {
	vars := env(map[string]string{"DB_PASSWORD": "x", "SCIM_TOKEN": "t"})
	long := "/var/lib/" + strings.Repeat("d", 85) + "/state.db" // 108 bytes with .sock
	tests := []struct {
		name, doc, socket, err string
	}{
		{"default", minimal, DefaultStatePath + ".sock", ""},
		{"beside state.path", minimal + "state:\n  path: /var/lib/scim-agent/state.db\n", "/var/lib/scim-agent/state.db.sock", ""},
		{"empty is the default", minimal + "state:\n  path: /srv/s.db\nadmin:\n  socket: \"\"\n", "/srv/s.db.sock", ""},
		{"explicit", minimal + "admin:\n  socket: /run/scim-agent/control.sock\n", "/run/scim-agent/control.sock", ""},
		{"107 bytes fit", minimal + "admin:\n  socket: /" + strings.Repeat("s", 106) + "\n", "/" + strings.Repeat("s", 106), ""},
		{"derived too long", minimal + "state:\n  path: " + long + "\n", "",
			"config.yaml: admin.socket: " + long + ".sock (state.path + .sock) is 108 bytes; a Unix socket path may have at most 107: set admin.socket to a shorter path"},
		{"explicit too long", minimal + "admin:\n  socket: /" + strings.Repeat("s", 107) + "\n", "",
			"config.yaml:8: admin.socket: /" + strings.Repeat("s", 107) + " is 108 bytes; a Unix socket path may have at most 107"},
		{"abstract", minimal + "admin:\n  socket: \"@scim-agent\"\n", "",
			`config.yaml:8: admin.socket: "@scim-agent" starts with @, which names an abstract socket`},
		{"the state file itself", minimal + "state:\n  path: /srv/s.db\nadmin:\n  socket: /srv/s.db\n", "",
			"config.yaml:10: admin.socket: /srv/s.db is state.path: the socket needs a path of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc), "config.yaml", vars)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Socket != tt.socket {
				t.Fatalf("admin.socket = %q, want %q", c.Admin.Socket, tt.socket)
			}
		})
	}
}
