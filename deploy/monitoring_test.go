package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// grafanaPanel is the part of a Grafana panel the tests read.
type grafanaPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *grafanaRef              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Datasource *grafanaRef `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaDashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int            `json:"schemaVersion"`
	Title         string         `json:"title"`
	UID           string         `json:"uid"`
	ID            *int           `json:"id"`
	Panels        []grafanaPanel `json:"panels"`
	Links         []struct {
		URL string `json:"url"`
	} `json:"links"`
	Templating struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Datasource *grafanaRef `json:"datasource"`
			Definition string      `json:"definition"`
			Query      struct {
				Query string `json:"query"`
			} `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

const dsInput = "${DS_PROMETHEUS}"

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/scim-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/scim-agent.json: %v", err)
	}
	defs := registeredMetrics(t)

	// Importable: a Prometheus datasource input, no fixed id, a stable
	// uid, a schema version Grafana 10 and 11 import as is.
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want 36..41", d.SchemaVersion)
	}
	if d.ID != nil || d.UID == "" || d.Title == "" {
		t.Errorf("id %v, uid %q, title %q: want a null id, a uid and a title", d.ID, d.UID, d.Title)
	}
	if bytes.Contains(data, []byte(`"uid": "prometheus"`)) || regexp.MustCompile(`"uid":\s*"[A-Za-z0-9]{9,14}"`).Match(data) {
		t.Error("a datasource uid of one Grafana instance is left in the dashboard: use ${DS_PROMETHEUS}")
	}
	anchors := readmeAnchors(t)
	for _, l := range d.Links {
		if strings.HasPrefix(l.URL, readmeURL) {
			checkReadmeLink(t, "dashboard link", l.URL, anchors)
		}
	}

	used := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Datasource == nil || v.Datasource.UID != dsInput {
			t.Errorf("variable %s: datasource %+v, want uid %s", v.Name, v.Datasource, dsInput)
		}
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Query.Query)
		if m == nil || v.Definition != v.Query.Query {
			t.Errorf("variable %s: query %q (definition %q), want label_values(metric, label)", v.Name, v.Query.Query, v.Definition)
			continue
		}
		checkExpr(t, "variable "+v.Name, m[1]+`{`+m[2]+`=""}`, defs)
		used[m[1]] = true
	}

	var panels []grafanaPanel
	var flatten func([]grafanaPanel)
	flatten = func(ps []grafanaPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			flatten(p.Panels)
		}
	}
	flatten(d.Panels)
	ids := map[int]string{}
	var cells []grafanaPanel
	for _, p := range panels {
		where := "panel " + p.Title
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("%s: id %d already used by %s", where, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		for _, c := range cells {
			o := c.GridPos
			if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
				t.Errorf("%s overlaps %s", where, c.Title)
			}
		}
		cells = append(cells, p)
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsInput || p.Datasource.Type != "prometheus" {
			t.Errorf("%s: datasource %+v, want prometheus %s", where, p.Datasource, dsInput)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		refIDs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Datasource == nil || q.Datasource.UID != dsInput {
				t.Errorf("%s: query %s datasource %+v, want %s", where, q.RefID, q.Datasource, dsInput)
			}
			if q.RefID == "" || refIDs[q.RefID] {
				t.Errorf("%s: missing or repeated refId %q", where, q.RefID)
			}
			refIDs[q.RefID] = true
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("%s: query %s has no expression", where, q.RefID)
				continue
			}
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("%s: query %s ignores the $instance variable: %q", where, q.RefID, q.Expr)
			}
			for _, m := range checkExpr(t, where, q.Expr, defs) {
				used[m] = true
			}
		}
	}

	// The panels the dashboard exists for.
	for _, m := range []string{
		"scim_agent_reconciles_total",                     // throughput by op/outcome
		"scim_agent_scim_request_duration_seconds_count",  // SCIM error rate
		"scim_agent_scim_request_duration_seconds_bucket", // latency p50/p95
		"scim_agent_lag_seconds",
		"scim_agent_queue_depth",
		"scim_agent_parked_users",
		"scim_agent_parked_groups",
		"scim_agent_scim_retries_total",
		"scim_agent_initial_sync_done_users",
		"scim_agent_initial_sync_total_users",
		"scim_agent_deletion_guard_tripped",
		"scim_agent_ready",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	var unused []string
	for name := range defs {
		if strings.HasPrefix(name, "scim_agent_") && !used[name] && !used[name+"_count"] && !used[name+"_bucket"] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("registered but on no panel (add one if it matters): %v", unused)
	}
}

// ruleFile is a Prometheus rule file, decoded strictly: a misspelt key
// is an error, as it is for Prometheus.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           *string           `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPrometheusAlerts checks alerts.yaml without Prometheus: a strict
// load, the fields every alert needs, durations Prometheus parses, and
// metrics the agent really exports. TestPrometheusAlertsPromtool adds
// Prometheus's own checks where promtool is installed.
func TestPrometheusAlerts(t *testing.T) {
	var rf ruleFile
	decodeStrict(t, "prometheus/alerts.yaml", &rf)
	defs := registeredMetrics(t)
	anchors := readmeAnchors(t)
	seen := map[string]rule{}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a name and rules are required", g.Name)
		}
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("group %s: interval: %v", g.Name, err)
			}
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: a rule that is not an alert (record %q)", g.Name, r.Record)
				continue
			}
			if !regexp.MustCompile(`^ScimAgent[A-Z][A-Za-z]+$`).MatchString(r.Alert) {
				t.Errorf("%s: alert names are ScimAgentCamelCase", where)
			}
			if _, dup := seen[r.Alert]; dup {
				t.Errorf("%s: defined twice", where)
			}
			seen[r.Alert] = r
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			} else {
				checkExpr(t, where, r.Expr, defs)
			}
			if r.For == nil {
				t.Errorf("%s: no for (write for: 0m to fire at once)", where)
			} else if _, err := model.ParseDuration(*r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, *r.For, err)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if u := r.Annotations["runbook_url"]; u != "" {
				checkReadmeLink(t, where+" runbook_url", u, anchors)
			}
			for k, v := range r.Annotations {
				if strings.Count(v, "{{") != strings.Count(v, "}}") {
					t.Errorf("%s: annotation %s has unbalanced {{ }}", where, k)
				}
			}
		}
	}

	// The alerts operators were promised, on the right metric and delay.
	for name, want := range map[string]struct{ metric, for_ string }{
		"ScimAgentDown":                 {"up", "5m"},
		"ScimAgentNotReady":             {"scim_agent_ready", "5m"},
		"ScimAgentLagHigh":              {"scim_agent_lag_seconds", "5m"},
		"ScimAgentParkedUsers":          {"scim_agent_parked_users", "15m"},
		"ScimAgentParkedGroups":         {"scim_agent_parked_groups", "15m"},
		"ScimAgentDeletionGuardTripped": {"scim_agent_deletion_guard_tripped", "0m"},
	} {
		r, ok := seen[name]
		switch {
		case !ok:
			t.Errorf("no alert %s", name)
		case !strings.Contains(r.Expr, want.metric):
			t.Errorf("%s: expr %q does not use %s", name, r.Expr, want.metric)
		case r.For == nil:
			t.Errorf("%s: no for, want %s", name, want.for_)
		case *r.For != want.for_:
			t.Errorf("%s: for %s, want %s", name, *r.For, want.for_)
		}
	}
	if r := seen["ScimAgentNotReady"]; !strings.Contains(r.Expr, "absent(") {
		t.Error("ScimAgentNotReady must also fire when no agent reports readiness (absent)")
	}
	if r := seen["ScimAgentLagHigh"]; !regexp.MustCompile(`>\s*300\b`).MatchString(r.Expr) {
		t.Errorf("ScimAgentLagHigh: expr %q, want lag > 300", r.Expr)
	}

	// Every alert has a unit test that makes it fire.
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	data, err := os.ReadFile("prometheus/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatalf("prometheus/alerts_test.yaml: %v", err)
	}
	if !slices.Equal(tests.RuleFiles, []string{"alerts.yaml"}) {
		t.Errorf("alerts_test.yaml tests %v, want [alerts.yaml]", tests.RuleFiles)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for name := range seen {
		if !fires[name] {
			t.Errorf("%s: no case in prometheus/alerts_test.yaml expects it to fire", name)
		}
	}
}

// TestPrometheusAlertsPromtool runs Prometheus's own checks: the rule
// file parses as Prometheus parses it (PromQL included) and the unit
// tests of alerts_test.yaml pass. `make test` provides promtool (taken
// from Debian's prometheus package) and names it in $PROMTOOL, which
// makes it required; a bare `go test` without promtool on the PATH skips
// and TestPrometheusAlerts still checks the file's structure.
func TestPrometheusAlertsPromtool(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Skip("promtool not installed and $PROMTOOL unset (make test provides it); TestPrometheusAlerts checks the structure")
		}
	} else if _, err := os.Stat(promtool); err != nil {
		t.Fatalf("PROMTOOL=%s: %v", promtool, err)
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
