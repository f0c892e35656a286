package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/scim-agent/scim-agent/internal/config"
)

const unitPath = "systemd/scim-agent.service"

// parseUnit reads a systemd unit: section → key → values (a key may be
// given more than once).
func parseUnit(t *testing.T, p string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if unit[section] == nil {
				unit[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", p, n, line)
			}
			unit[section][strings.TrimSpace(k)] = append(unit[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestSystemdUnit(t *testing.T) {
	unit := parseUnit(t, unitPath)
	svc := unit["Service"]
	if svc == nil || unit["Unit"] == nil || unit["Install"] == nil {
		t.Fatalf("sections %v, want Unit, Service, Install", unit)
	}
	cfgPath := defaultConfigPath(t)
	for k, want := range map[string]string{
		"ExecStart":               "/usr/local/bin/scim-agent run --config " + cfgPath,
		"DynamicUser":             "yes",
		"StateDirectory":          "scim-agent",
		"WorkingDirectory":        "/var/lib/scim-agent",
		"ConfigurationDirectory":  "scim-agent",
		"EnvironmentFile":         "-/etc/scim-agent/env",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"CapabilityBoundingSet":   "",
		"Restart":                 "on-failure",
		"RestartSec":              "5",
		"KillSignal":              "SIGTERM",
	} {
		if got := svc[k]; !slices.Equal(got, []string{want}) {
			t.Errorf("[Service] %s = %q, want %q", k, got, want)
		}
	}
	if f := svc["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter %q, want @system-service first", f)
	}
	// The agent drains within 10s of SIGTERM; systemd must wait longer
	// before it sends SIGKILL.
	stop, err := strconv.Atoi(strings.Join(svc["TimeoutStopSec"], ""))
	if err != nil || stop < 15 {
		t.Errorf("TimeoutStopSec %q, want at least 15 (the agent drains within 10s)", svc["TimeoutStopSec"])
	}
	// Not ProcSubset=pid: the process collector behind /metrics reads
	// /proc/stat, and /metrics answers 500 without it.
	if got := svc["ProcSubset"]; len(got) > 0 && got[0] == "pid" {
		t.Error("ProcSubset=pid breaks /metrics (process collector reads /proc/stat)")
	}
	// EnvironmentFile must stay optional and root-only: it holds secrets,
	// which must never be written into the unit itself.
	for _, e := range svc["Environment"] {
		if regexp.MustCompile(`(?i)(password|token|secret)=`).MatchString(e) {
			t.Errorf("a secret in Environment=%s: use /etc/scim-agent/env", e)
		}
	}
	if got := unit["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("WantedBy %q", got)
	}
}

// TestSystemdVerify runs systemd's own checks where systemd-analyze is
// installed: `verify` (unknown keys, bad values) on a copy of the unit
// whose ExecStart points at an executable that exists here (verify
// checks that the binary exists), and the offline security analysis.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; TestSystemdUnit checks the keys")
	}
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	// Any executable will do for verify; this test binary is one.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "scim-agent.service")
	unit := strings.ReplaceAll(string(data), "ExecStart=/usr/local/bin/scim-agent ", "ExecStart="+exe+" ")
	if err := os.WriteFile(copyPath, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	// verify exits 0 on warnings such as an unknown key: any output is a
	// finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=true", "--no-pager", copyPath).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if err != nil && m == nil {
		t.Logf("systemd-analyze security --offline is not supported here (systemd < 252?): %v", err)
		return
	}
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("exposure level %s, want at most 2.0 (it was 1.2 when the unit was written)\n%s", m[1], out)
	}
}

// TestSystemdExampleConfigStaysInTheStateDirectory: the unit's header
// installs the repository's config.yaml; under ProtectSystem=strict its
// state file and control socket must be in the StateDirectory, the one
// writable place (and the one only the dynamic user and root may enter).
func TestSystemdExampleConfigStaysInTheStateDirectory(t *testing.T) {
	unit := parseUnit(t, unitPath)
	dir := "/var/lib/" + strings.Join(unit["Service"]["StateDirectory"], "") + "/"
	data, err := os.ReadFile(filepath.Join(repoRoot, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "config.yaml", func(k string) (string, bool) { return "x", true })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.State.Path, dir) {
		t.Errorf("config.yaml: state.path %s is not under the StateDirectory %s", cfg.State.Path, dir)
	}
	if !strings.HasPrefix(cfg.Admin.Socket, dir) {
		t.Errorf("config.yaml: admin.socket %s is not under the StateDirectory %s", cfg.Admin.Socket, dir)
	}
	if mode := strings.Join(unit["Service"]["StateDirectoryMode"], ""); mode != "0700" {
		t.Errorf("StateDirectoryMode %q, want 0700: the control socket's directory", mode)
	}
}
