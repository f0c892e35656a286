package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scim-agent/scim-agent/internal/agenttest"
	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// scrape reads /metrics and returns every sample by its series name with
// labels, e.g. `scim_agent_reconciles_total{kind="user",op="create",outcome="ok"}`.
func (h *harness) scrape() map[string]float64 {
	h.t.Helper()
	resp, err := http.Get("http://" + h.agent.AdminAddr() + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func sumPrefix(m map[string]float64, prefix string) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func TestMetricsMoveWithChanges(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	before := h.scrape()
	for _, name := range []string{"scim_agent_queue_depth", "scim_agent_lag_seconds", "scim_agent_parked_users",
		"scim_agent_deletion_guard_tripped", "scim_agent_ready", "scim_agent_initial_sync_done_users",
		"scim_agent_initial_sync_total_users"} {
		if _, ok := before[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}

	uid := h.create(drupaltest.User{Name: "metric", Mail: str("m@example.org"), Status: 1})
	h.settle() // else create and update may coalesce into one POST
	h.update(uid, func(u *drupaltest.User) { u.Mail = str("m2@example.org") })
	h.site.Login(t.Context(), uid, time.Now().Unix())
	h.scim.Reject(func(method string, attrs map[string]any) *scimtest.Fault {
		if name, _ := attrs["userName"].(string); name == "rejected" {
			return &scimtest.Fault{Status: 400, Detail: "no"}
		}
		return nil
	})
	h.create(drupaltest.User{Name: "rejected", Status: 1})
	h.settle()
	after := h.scrape()

	grew := func(key string, by float64) {
		t.Helper()
		if d := after[key] - before[key]; d < by {
			t.Errorf("%s grew by %v, want at least %v", key, d, by)
		}
	}
	grew(`scim_agent_reconciles_total{kind="user",op="create",outcome="ok"}`, 1)
	grew(`scim_agent_reconciles_total{kind="user",op="update",outcome="ok"}`, 1)
	grew(`scim_agent_reconciles_total{kind="user",op="create",outcome="failed"}`, 1)
	grew(`scim_agent_binlog_transactions_total`, 4)
	grew(`scim_agent_uids_enqueued_total`, 3)
	grew(`scim_agent_binlog_events_total{table="users_field_data"}`, 3)
	grew(`scim_agent_scim_request_duration_seconds{method="POST",status_class="2xx"}_count`, 1)
	grew(`scim_agent_scim_request_duration_seconds{method="POST",status_class="4xx"}_count`, 1)
	if after["scim_agent_parked_users"] != 1 {
		t.Errorf("parked users = %v, want 1", after["scim_agent_parked_users"])
	}
	if sumPrefix(after, "scim_agent_binlog_position_info{") != 1 {
		t.Errorf("position info series: %v", sumPrefix(after, "scim_agent_binlog_position_info{"))
	}
	if after["scim_agent_ready"] != 1 || after["scim_agent_lag_seconds"] != 0 || after["scim_agent_queue_depth"] != 0 {
		t.Errorf("ready %v lag %v depth %v", after["scim_agent_ready"], after["scim_agent_lag_seconds"], after["scim_agent_queue_depth"])
	}

	// While the server refuses, work waits: lag and retries rise.
	h.scim.SetDown(true)
	h.create(drupaltest.User{Name: "waiting", Status: 1})
	var m map[string]float64
	agenttest.Poll(20*time.Second, func() bool {
		m = h.scrape()
		return m["scim_agent_lag_seconds"] > 0 && sumPrefix(m, "scim_agent_scim_retries_total") > 0
	})
	if m["scim_agent_lag_seconds"] <= 0 {
		t.Errorf("lag stayed %v while the server was down", m["scim_agent_lag_seconds"])
	}
	h.scim.SetDown(false)
	h.settle()
	if m := h.scrape(); sumPrefix(m, "scim_agent_scim_retries_total") == 0 {
		t.Error("no retries counted for the outage")
	}
}

func TestReadinessFollowsTheSCIMServer(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get("http://" + h.agent.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
		return resp.StatusCode, body
	}
	waitFor := func(path string, want int) map[string]any {
		t.Helper()
		var code int
		var body map[string]any
		if !agenttest.Poll(agenttest.Timeout, func() bool { code, body = get(path); return code == want }) {
			t.Fatalf("%s stayed %d (%v), want %d", path, code, body, want)
		}
		return body
	}
	waitFor("/readyz", 200)
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	h.scim.SetDown(true)
	body := waitFor("/readyz", 503)
	if reason, _ := body["reason"].(string); !strings.Contains(reason, "SCIM") {
		t.Fatalf("reason = %q", reason)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatal("/healthz failed because the SCIM server is down: liveness must not depend on it")
	}
	h.scim.SetDown(false)
	waitFor("/readyz", 200)

	code, status := get("/status")
	if code != 200 || status["running"] != true || status["ready"] != true || status["position"] == "" {
		t.Fatalf("/status = %d %v", code, status)
	}
	for _, k := range []string{"lag_seconds", "queue_depth", "parked", "operations", "deletion_guard", "initial_sync_done"} {
		if _, ok := status[k]; !ok {
			t.Errorf("/status lacks %s", k)
		}
	}
}

func TestStatusSaysWhenTheStateFileCannotBeRead(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.settle()
	h.agent.store.Close() // as a failed disk would make reads fail
	if s := h.agent.Status(); !strings.Contains(s.Error, "read the state file") {
		t.Fatalf("status error = %q, want the state file named", s.Error)
	}
}
