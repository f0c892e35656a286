package agent

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/scim-agent/scim-agent/binlog"
)

// metrics are the agent's Prometheus metrics, all under scim_agent_. Each
// Agent has its own registry, so tests can run several side by side.
type metrics struct {
	registry *prometheus.Registry

	binlogEvents *prometheus.CounterVec
	transactions prometheus.Counter
	enqueued     prometheus.Counter
	reconciles   *prometheus.CounterVec
	scimDuration *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	syncDone     prometheus.Gauge
	syncTotal    prometheus.Gauge
	position     *prometheus.GaugeVec

	mu      sync.Mutex
	lastPos binlog.Position
}

// gaugeSource is what the gauges read when scraped.
type gaugeSource interface {
	queueDepth() int
	Lag() time.Duration
	parkedCount() int
	parkedGroups() int
	guardTripped() bool
	guardHeld() int
	Readiness() Readiness
}

// newMetrics registers the metrics; the gauges read src when scraped.
func newMetrics(src gaugeSource) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promFactory{m.registry}
	m.binlogEvents = f.counterVec("scim_agent_binlog_events_total",
		"Rows events read from the binlog, by table (tables of the Drupal database only).", "table")
	m.transactions = f.counter("scim_agent_binlog_transactions_total",
		"Committed binlog transactions read.")
	m.enqueued = f.counter("scim_agent_uids_enqueued_total",
		"uids queued for a reconcile (a uid named by several transactions counts each time).")
	m.reconciles = f.counterVec("scim_agent_reconciles_total",
		"Reconciles by kind (user, group), operation (create, update, deactivate, reactivate, delete, none) and outcome (ok, adopted, unchanged, skipped, failed, held, waiting).",
		"kind", "op", "outcome")
	m.scimDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scim_agent_scim_request_duration_seconds",
		Help:    "SCIM requests by method and status class (2xx, 4xx, 5xx, error), retries included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"method", "status_class"})
	m.registry.MustRegister(m.scimDuration)
	m.retries = f.counterVec("scim_agent_scim_retries_total",
		"SCIM request attempts that failed and were retried, by method and status class (5xx, 4xx for 429, error).", "method", "status_class")
	m.syncDone = f.gauge("scim_agent_initial_sync_done_users", "Users reconciled by the running full sync.")
	m.syncTotal = f.gauge("scim_agent_initial_sync_total_users", "Users the running full sync walks.")
	m.position = f.gaugeVec("scim_agent_binlog_position_info",
		"The last saved binlog position, as labels; the value is always 1.", "file", "pos", "gtid")

	f.gaugeFunc("scim_agent_queue_depth", "uids waiting for a worker.",
		func() float64 { return float64(src.queueDepth()) })
	f.gaugeFunc("scim_agent_lag_seconds",
		"Seconds between now and the commit of the oldest binlog transaction not yet fully handled; 0 when caught up.",
		func() float64 { return src.Lag().Seconds() })
	f.gaugeFunc("scim_agent_parked_groups", "Roles whose group's last reconcile failed permanently.",
		func() float64 { return float64(src.parkedGroups()) })
	f.gaugeFunc("scim_agent_parked_users", "uids whose last reconcile failed permanently.",
		func() float64 { return float64(src.parkedCount()) })
	f.gaugeFunc("scim_agent_deletion_guard_tripped",
		"1 while the deletion guard holds deprovisioning back, waiting for approve-deletes.",
		func() float64 { return boolFloat(src.guardTripped()) })
	f.gaugeFunc("scim_agent_deletion_guard_held_users", "uids held back by the deletion guard.",
		func() float64 { return float64(src.guardHeld()) })
	f.gaugeFunc("scim_agent_ready", "1 when /readyz answers 200.",
		func() float64 { return boolFloat(src.Readiness().Ready) })
	return m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promFactory registers metrics as it makes them.
type promFactory struct{ r *prometheus.Registry }

func (f promFactory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f promFactory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f promFactory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f promFactory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f promFactory) gaugeFunc(name, help string, fn func() float64) {
	f.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// observeRowsEvent counts one rows event of the Drupal database's table.
func (m *metrics) observeRowsEvent(table string) { m.binlogEvents.WithLabelValues(table).Inc() }

// observeTransaction counts one committed transaction and the keys it
// queued.
func (m *metrics) observeTransaction(keys int) {
	m.transactions.Inc()
	m.enqueued.Add(float64(keys))
}

// syncStarted publishes the size of a full sync that begins.
func (m *metrics) syncStarted(total int) {
	m.syncTotal.Set(float64(total))
	m.syncDone.Set(0)
}

// syncProgressed publishes how far the full sync got.
func (m *metrics) syncProgressed(done int) { m.syncDone.Set(float64(done)) }

// observeRequest records one SCIM call (its retries are counted as they
// happen, by observeRetry).
func (m *metrics) observeRequest(method string, status int, d time.Duration) {
	m.scimDuration.WithLabelValues(method, statusClass(status)).Observe(d.Seconds())
}

// observeRetry counts one retried attempt.
func (m *metrics) observeRetry(method string, status int) {
	m.retries.WithLabelValues(method, statusClass(status)).Inc()
}

func statusClass(status int) string {
	if status <= 0 {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}

// observeReconcile counts one reconcile.
func (m *metrics) observeReconcile(res Result) {
	op, outcome := res.Op, "ok"
	switch res.Outcome {
	case Unchanged, Skipped, Failed, Held, Waiting, Adopted:
		outcome = string(res.Outcome)
	}
	if op == "" {
		op = "none"
	}
	kind := "user"
	if res.Role != "" {
		kind = "group"
	}
	m.reconciles.WithLabelValues(kind, op, outcome).Inc()
}

// observePosition publishes a newly saved position.
func (m *metrics) observePosition(p binlog.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastPos != (binlog.Position{}) {
		m.position.DeleteLabelValues(m.lastPos.File, strconv.FormatUint(uint64(m.lastPos.Offset), 10), m.lastPos.GTID)
	}
	m.position.WithLabelValues(p.File, strconv.FormatUint(uint64(p.Offset), 10), p.GTID).Set(1)
	m.lastPos = p
}
