package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	promqlparser "github.com/prometheus/prometheus/promql/parser"
)

// repoRoot is the module's root, where the Dockerfile lives.
const repoRoot = ".."

// metricDef is one metric the agent registers, as read from
// agent/metrics.go.
type metricDef struct {
	name string
	// kind is counter, gauge, histogram, summary, or "" when the source
	// names the metric in a way this reader does not understand (its
	// labels are then unknown and not checked).
	kind   string
	labels []string
}

// registeredMetrics reads every scim_agent_* metric the agent registers
// from the source of agent/metrics.go, with its type and label names. It
// understands the two ways that file registers metrics: the promFactory
// helpers (f.counterVec("name", "help", "label", ...)) and the
// prometheus.NewXxx(prometheus.XxxOpts{Name: "name"}, []string{...})
// constructors. Any other scim_agent_* literal still counts as a metric,
// of unknown type, so that a refactoring of metrics.go never makes a
// real metric look missing here.
func registeredMetrics(t *testing.T) map[string]metricDef {
	t.Helper()
	path := filepath.Join(repoRoot, "agent", "metrics.go")
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	defs := map[string]metricDef{}
	factoryKinds := map[string]string{
		"counter": "counter", "counterVec": "counter",
		"gauge": "gauge", "gaugeVec": "gauge", "gaugeFunc": "gauge",
		"histogram": "histogram", "histogramVec": "histogram",
	}
	optsKinds := map[string]string{
		"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary",
	}
	var literals []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if s, ok := stringLit(n); ok && strings.HasPrefix(s, "scim_agent_") {
				literals = append(literals, s)
			}
		case *ast.CallExpr:
			if len(n.Args) == 0 {
				return true
			}
			// f.counterVec("scim_agent_x", "help", "label", ...)
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
				if kind, ok := factoryKinds[sel.Sel.Name]; ok {
					if name, ok := stringLit(n.Args[0]); ok && strings.HasPrefix(name, "scim_agent_") {
						d := metricDef{name: name, kind: kind}
						for _, a := range n.Args[min(2, len(n.Args)):] {
							if l, ok := stringLit(a); ok {
								d.labels = append(d.labels, l)
							}
						}
						defs[name] = d
						return true
					}
				}
			}
			// prometheus.NewXxxVec(prometheus.XxxOpts{Name: "scim_agent_x"}, []string{...})
			opts, ok := n.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			kind := optsKinds[typeName(opts.Type)]
			for _, e := range opts.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok || fmt.Sprint(kv.Key) != "Name" {
					continue
				}
				name, ok := stringLit(kv.Value)
				if !ok || !strings.HasPrefix(name, "scim_agent_") || kind == "" {
					continue
				}
				d := metricDef{name: name, kind: kind}
				if len(n.Args) > 1 {
					if labels, ok := n.Args[1].(*ast.CompositeLit); ok {
						for _, l := range labels.Elts {
							if s, ok := stringLit(l); ok {
								d.labels = append(d.labels, s)
							}
						}
					}
				}
				defs[name] = d
			}
		}
		return true
	})
	for _, name := range literals {
		if _, ok := defs[name]; !ok {
			defs[name] = metricDef{name: name}
		}
	}
	if len(defs) < 10 {
		t.Fatalf("found only %d scim_agent_* metrics in %s: the reader no longer understands that file", len(defs), path)
	}
	// The runtime's own collectors, when metrics.go registers them.
	src, _ := os.ReadFile(path)
	if strings.Contains(string(src), "NewProcessCollector") {
		for _, n := range []string{"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_cpu_seconds_total",
			"process_open_fds", "process_max_fds", "process_start_time_seconds"} {
			defs[n] = metricDef{name: n, kind: "gauge"}
		}
		defs["process_cpu_seconds_total"] = metricDef{name: "process_cpu_seconds_total", kind: "counter"}
	}
	if strings.Contains(string(src), "NewGoCollector") {
		for _, n := range []string{"go_goroutines", "go_threads", "go_memstats_heap_inuse_bytes", "go_memstats_alloc_bytes"} {
			defs[n] = metricDef{name: n, kind: "gauge"}
		}
	}
	return defs
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.Ident:
		return e.Name
	}
	return ""
}

// promRefs are the metric and label names a PromQL expression uses.
type promRefs struct {
	metrics []string
	labels  []string
}

// grafanaMacros stand for Grafana's interval variables, which Grafana
// replaces before Prometheus sees the query; the values only need to
// parse.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// promParser is Prometheus's own PromQL parser, with the functions and
// features of the Prometheus version it comes from.
var promParser = promqlparser.NewParser(promqlparser.Options{})

// scanPromQL parses a PromQL expression (Grafana's interval macros
// allowed) and returns the metric names of its selectors and the label
// names of its matchers and of its by/without/on/ignoring clauses, in
// the order they appear.
func scanPromQL(expr string) (promRefs, error) {
	var refs promRefs
	e, err := promParser.ParseExpr(grafanaMacros.Replace(expr))
	if err != nil {
		return refs, err
	}
	promqlparser.Inspect(e, func(n promqlparser.Node, _ []promqlparser.Node) error {
		switch n := n.(type) {
		case *promqlparser.AggregateExpr:
			refs.labels = append(refs.labels, n.Grouping...)
		case *promqlparser.BinaryExpr:
			if n.VectorMatching != nil {
				refs.labels = append(refs.labels, n.VectorMatching.MatchingLabels...)
				refs.labels = append(refs.labels, n.VectorMatching.Include...)
			}
		case *promqlparser.VectorSelector:
			refs.metrics = append(refs.metrics, n.Name)
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" {
					refs.labels = append(refs.labels, m.Name)
				}
			}
		}
		return nil
	})
	return refs, nil
}

// alwaysLabels are labels every scraped series has (target labels) or
// that PromQL itself provides.
var alwaysLabels = []string{"instance", "job", "__name__"}

// checkExpr checks that expr is well formed and that every metric and
// label it names exists: a histogram's _bucket, _sum and _count series
// for histograms only, "le" only with a _bucket series, and "up" (the
// scrape's own series) with the target labels only.
func checkExpr(t *testing.T, where, expr string, defs map[string]metricDef) []string {
	t.Helper()
	refs, err := scanPromQL(expr)
	if err != nil {
		t.Errorf("%s: %v in %q", where, err, expr)
		return nil
	}
	allowed := slices.Clone(alwaysLabels)
	labelsKnown := true
	var used []string
	for _, m := range refs.metrics {
		if m == "up" {
			continue
		}
		base, suffix := m, ""
		d, ok := defs[m]
		if !ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if b, cut := strings.CutSuffix(m, s); cut {
					base, suffix = b, s
					d, ok = defs[b]
					break
				}
			}
		}
		switch {
		case !ok:
			t.Errorf("%s: metric %s is not registered by agent/metrics.go (expr %q)", where, m, expr)
			continue
		case suffix == "_bucket" && d.kind != "histogram" && d.kind != "":
			t.Errorf("%s: %s is a %s, it has no _bucket series", where, base, d.kind)
		case suffix != "" && d.kind != "histogram" && d.kind != "summary" && d.kind != "":
			t.Errorf("%s: %s is a %s, it has no %s series", where, base, d.kind, suffix)
		}
		if suffix == "_bucket" {
			allowed = append(allowed, "le")
		}
		if d.kind == "" {
			labelsKnown = false
		}
		allowed = append(allowed, d.labels...)
		used = append(used, m)
	}
	if labelsKnown {
		for _, l := range refs.labels {
			if !slices.Contains(allowed, l) {
				t.Errorf("%s: label %q belongs to none of the metrics %v (expr %q)", where, l, refs.metrics, expr)
			}
		}
	}
	return used
}

func TestScanPromQL(t *testing.T) {
	for _, c := range []struct {
		expr            string
		metrics, labels []string
		bad             bool
	}{
		{expr: `scim_agent_ready{instance=~"$instance"} == 0`, metrics: []string{"scim_agent_ready"}, labels: []string{"instance"}},
		{expr: `histogram_quantile(0.95, sum by (le, method) (rate(x_bucket{a="}",b!~'y'}[$__rate_interval])))`,
			metrics: []string{"x_bucket"}, labels: []string{"le", "method", "a", "b"}},
		{expr: "sum by (status_class) (rate(a[5m]))\n/ ignoring (status_class) group_left\nsum(rate(a[5m]))",
			metrics: []string{"a", "a"}, labels: []string{"status_class", "status_class"}},
		{expr: `a > 300 and on (instance) b offset 5m or absent(c{job="j"})`, metrics: []string{"a", "b", "c"}, labels: []string{"instance", "job"}},
		{expr: `sum(rate(a[5m])) by (op)`, metrics: []string{"a"}, labels: []string{"op"}},
		{expr: `topk without (b) (3, a)`, metrics: []string{"a"}, labels: []string{"b"}},
		{expr: `rate(a[5m]`, bad: true},
		{expr: `a{b="c}`, bad: true},
		{expr: `a{b}`, bad: true},
		{expr: `a]`, bad: true},
	} {
		refs, err := scanPromQL(c.expr)
		if c.bad {
			if err == nil {
				t.Errorf("%q: no error", c.expr)
			}
			continue
		}
		if err != nil || !slices.Equal(refs.metrics, c.metrics) || !slices.Equal(refs.labels, c.labels) {
			t.Errorf("%q: got %v %v %v, want %v %v", c.expr, refs.metrics, refs.labels, err, c.metrics, c.labels)
		}
	}
}

func TestRegisteredMetricsReader(t *testing.T) {
	defs := registeredMetrics(t)
	for name, want := range map[string]metricDef{
		"scim_agent_reconciles_total":              {kind: "counter", labels: []string{"kind", "op", "outcome"}},
		"scim_agent_scim_request_duration_seconds": {kind: "histogram", labels: []string{"method", "status_class"}},
		"scim_agent_lag_seconds":                   {kind: "gauge"},
	} {
		got := defs[name]
		if got.kind != want.kind || !slices.Equal(got.labels, want.labels) {
			t.Errorf("%s: read as %s %v, want %s %v", name, got.kind, got.labels, want.kind, want.labels)
		}
	}
}

// githubSlug is the anchor GitHub gives a Markdown heading.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)

// readmeAnchors are the anchors of deploy/README.md's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(b), -1) {
		anchors[githubSlug(m[1])] = true
	}
	return anchors
}

// readmeURL is where links to deploy/README.md point.
const readmeURL = "https://github.com/scim-agent/scim-agent/blob/main/deploy/README.md"

// checkReadmeLink checks that url points at an existing section of
// deploy/README.md.
func checkReadmeLink(t *testing.T, where, url string, anchors map[string]bool) {
	t.Helper()
	page, anchor, ok := strings.Cut(url, "#")
	if !ok || page != readmeURL {
		t.Errorf("%s: %q does not point at a section of %s", where, url, readmeURL)
		return
	}
	if !anchors[anchor] {
		t.Errorf("%s: deploy/README.md has no section #%s", where, anchor)
	}
}
