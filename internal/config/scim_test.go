package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// scimDoc is a config whose scim section is the given lines (indented
// under scim:).
func scimDoc(lines ...string) string {
	doc := "mysql:\n  dsn: \"agent:pw@tcp(127.0.0.1:3306)/drupal\"\nscim:\n  base_url: https://idp.example.com/scim/v2\n"
	for _, l := range lines {
		doc += "  " + l + "\n"
	}
	return doc
}

func TestSCIMAuthentication(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("  file-secret\n"), 0o600)
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte(" pass with spaces \n"), 0o600)
	vars := env(map[string]string{"CLIENT_SECRET": "env-secret\n", "PASS": "p@ss word\n"})

	c, err := Parse([]byte(scimDoc("token: tok")), "config.yaml", vars)
	if err != nil || c.SCIM.AuthMethod() != AuthToken {
		t.Fatalf("token: %v %v", err, c)
	}
	c, err = Parse([]byte(scimDoc("oauth2:", "  token_url: https://idp.example.com/oauth2/token", "  client_id: agent",
		"  client_secret: ${CLIENT_SECRET}", "  scopes: [scim.write, scim.read]")), "config.yaml", vars)
	if err != nil {
		t.Fatal(err)
	}
	if o := c.SCIM.OAuth2; c.SCIM.AuthMethod() != AuthOAuth2 || o.ClientSecret != "env-secret" || len(o.Scopes) != 2 || c.SCIM.Token != "" {
		t.Fatalf("oauth2: %+v", c.SCIM)
	}
	c, err = Parse([]byte(scimDoc("oauth2:", "  token_url: https://idp.example.com/oauth2/token", "  client_id: agent",
		"  client_secret_file: "+secretFile)), "config.yaml", vars)
	if err != nil || c.SCIM.OAuth2.ClientSecret != "file-secret" {
		t.Fatalf("client_secret_file: %v %+v", err, c)
	}
	c, err = Parse([]byte(scimDoc("basic:", "  username: agent", "  password: ${PASS}")), "config.yaml", vars)
	if err != nil || c.SCIM.AuthMethod() != AuthBasic || c.SCIM.Basic.Password != "p@ss word" {
		t.Fatalf("basic: %v %+v", err, c)
	}
	c, err = Parse([]byte(scimDoc("basic:", "  username: agent", "  password_file: "+passFile)), "config.yaml", vars)
	if err != nil || c.SCIM.Basic.Password != " pass with spaces " {
		t.Fatalf("password_file: %v %q", err, c.SCIM.Basic.Password)
	}
	c, err = Parse([]byte(scimDoc("oauth2:", "  token_url: http://idp.example.com/token", "  client_id: a", "  client_secret: s")), "config.yaml", vars)
	if err != nil || len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "scim.oauth2.token_url uses plain http") {
		t.Fatalf("plain http token URL: %v %v", err, c)
	}
}

func TestSCIMAuthenticationErrors(t *testing.T) {
	vars := env(map[string]string{"SECRET": "s3cret-QX7"})
	oauth := func(extra ...string) []string {
		return append([]string{"oauth2:"}, extra...)
	}
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"none", nil, "scim.token: is required (or scim.token_file), unless scim.oauth2 or scim.basic"},
		{"token and oauth2", append([]string{"token: t"}, oauth("  client_id: a")...), "config.yaml:6: scim.oauth2: set exactly one of scim.token (or scim.token_file), scim.oauth2 and scim.basic; found scim.token and scim.oauth2"},
		{"oauth2 and basic", append(oauth("  client_id: a"), "basic:", "  username: u"), "scim.basic: set exactly one of"},
		{"oauth2 without token_url", oauth("  client_id: a", "  client_secret: ${SECRET}"), "config.yaml:5: scim.oauth2.token_url: is required"},
		{"oauth2 relative token_url", oauth("  token_url: /token", "  client_id: a", "  client_secret: ${SECRET}"), `scim.oauth2.token_url: "/token" is not an absolute http(s) URL`},
		{"oauth2 without client_id", oauth("  token_url: https://x/t", "  client_secret: ${SECRET}"), "scim.oauth2.client_id: is required"},
		{"oauth2 without secret", oauth("  token_url: https://x/t", "  client_id: a"), "scim.oauth2.client_secret: is required (or scim.oauth2.client_secret_file)"},
		{"oauth2 both secrets", oauth("  token_url: https://x/t", "  client_id: a", "  client_secret: ${SECRET}", "  client_secret_file: /x"), "set either scim.oauth2.client_secret or scim.oauth2.client_secret_file"},
		{"oauth2 missing secret file", oauth("  token_url: https://x/t", "  client_id: a", "  client_secret_file: /nonexistent/secret"), "config.yaml:8: scim.oauth2.client_secret_file: open /nonexistent/secret"},
		{"oauth2 bad scope", oauth("  token_url: https://x/t", "  client_id: a", "  client_secret: ${SECRET}", `  scopes: ["a b"]`), `scim.oauth2.scopes[0]: "a b" is not a scope`},
		{"oauth2 unknown key", oauth("  client: a"), `unknown key "client" in scim.oauth2 (known keys: client_id, client_secret, client_secret_file, scopes, token_url)`},
		{"basic without username", []string{"basic:", "  password: ${SECRET}"}, "scim.basic.username: is required"},
		{"basic colon", []string{"basic:", "  username: a:b", "  password: ${SECRET}"}, "scim.basic.username: cannot hold ':'"},
		{"basic without password", []string{"basic:", "  username: a"}, "scim.basic.password: is required (or scim.basic.password_file)"},
		{"basic both passwords", []string{"basic:", "  username: a", "  password: ${SECRET}", "  password_file: /x"}, "set either scim.basic.password or scim.basic.password_file"},
		{"cert without key", []string{"token: t", "cert_file: /x.pem"}, "scim.key_file: is required with scim.cert_file"},
		{"key without cert", []string{"token: t", "key_file: /x.pem"}, "scim.cert_file: is required with scim.key_file"},
		{"unreadable cert", []string{"token: t", "cert_file: /nonexistent/c.pem", "key_file: /nonexistent/k.pem"}, "config.yaml:6: scim.cert_file: /nonexistent/c.pem with scim.key_file /nonexistent/k.pem: open /nonexistent/c.pem"},
		{"negative rate", []string{"token: t", "max_requests_per_second: -1"}, "config.yaml:6: scim.max_requests_per_second: -1 must be 0 (no limit)"},
		{"burst without rate", []string{"token: t", "burst: 5"}, "config.yaml:6: scim.burst: needs scim.max_requests_per_second"},
		{"negative burst", []string{"token: t", "max_requests_per_second: 3", "burst: -1"}, "scim.burst: -1 must be 1 or more"},
		{"bad capability", []string{"token: t", "capabilities:", "  etag: yes"}, `config.yaml:7: scim.capabilities.etag: "yes" is not one of auto, true, false`},
		{"unknown capability", []string{"token: t", "capabilities:", "  sort: true"}, `unknown key "sort" in scim.capabilities (known keys: bulk, etag, filter, patch)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(scimDoc(tt.lines...)), "config.yaml", vars)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "QX7") {
				t.Fatalf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestSCIMLimitsAndCapabilities(t *testing.T) {
	c, err := Parse([]byte(scimDoc("token: t")), "config.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	caps := c.SCIM.Capabilities
	if c.SCIM.MaxRequestsPerSecond != 0 || c.SCIM.Burst != 0 || caps.Patch != CapAuto || caps.Filter != CapAuto || caps.ETag != CapAuto || caps.Bulk != CapAuto {
		t.Fatalf("defaults: %+v", c.SCIM)
	}
	c, err = Parse([]byte(scimDoc("token: t", "max_requests_per_second: 0.5", "capabilities:", "  patch: true", "  filter: false", "  etag: auto")), "config.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.SCIM.MaxRequestsPerSecond != 0.5 || c.SCIM.Burst != 1 || c.SCIM.Capabilities.Patch != "true" || c.SCIM.Capabilities.Filter != "false" {
		t.Fatalf("values: %+v", c.SCIM)
	}
}

func TestClientCertificateFiles(t *testing.T) {
	ca, err := scimtest.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("agent")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	if _, err := Parse([]byte(scimDoc("token: t", "cert_file: "+cert, "key_file: "+key)), "config.yaml", env(nil)); err != nil {
		t.Fatal(err)
	}
	// The certificate given as the key: the pair does not load.
	_, err = Parse([]byte(scimDoc("token: t", "cert_file: "+cert, "key_file: "+cert)), "config.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "scim.cert_file: "+cert+" with scim.key_file "+cert) {
		t.Fatalf("err %v", err)
	}
}
