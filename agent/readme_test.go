package agent

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// readmeTable returns the rows of the first Markdown table under the
// README heading "## "+section, each row as its cells.
func readmeTable(t *testing.T, section string) [][]string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## "+section+"\n")
	if !ok {
		t.Fatalf("README.md: no section %q", section)
	}
	rest, _, _ = strings.Cut(rest, "\n## ")
	var rows [][]string
	inTable := false
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		rows = append(rows, cells)
	}
	if len(rows) < 2 {
		t.Fatalf("README.md %q: no table", section)
	}
	return rows[1:] // without the header
}

var backticked = regexp.MustCompile("`([^`]+)`")

func codeSpans(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestREADMEDocumentsEveryLogMessage holds the README's log table to the
// contract the log check enforces (logSchema): the same messages, and
// each message's fields named in its row.
func TestREADMEDocumentsEveryLogMessage(t *testing.T) {
	documented := map[string][]string{} // msg -> code spans of its row's fields
	for _, row := range readmeTable(t, "Log messages") {
		if len(row) < 3 {
			t.Errorf("README log table: row %q has fewer than 3 cells", strings.Join(row, "|"))
			continue
		}
		for _, msg := range codeSpans(row[0]) {
			documented[msg] = codeSpans(row[2])
		}
	}
	for msg, want := range logSchema {
		fields, ok := documented[msg]
		if !ok {
			t.Errorf("README log table: message %s is not documented", msg)
			continue
		}
		for _, f := range want.fields {
			for _, alt := range strings.Split(f, "|") {
				if !slices.Contains(fields, alt) {
					t.Errorf("README log table: %s: field %s is not named (row names %v)", msg, alt, fields)
				}
			}
		}
	}
	for msg := range documented {
		if _, ok := logSchema[msg]; !ok {
			t.Errorf("README log table: %s is documented but not in the log contract (logSchema)", msg)
		}
	}
}

// descName reads the metric name and variable labels from a Desc's
// String(), the only public view of them.
var descName = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// TestREADMEDocumentsEveryMetric holds the README's metric table to the
// metrics the agent registers: the same scim_agent_* names, each with its
// labels.
func TestREADMEDocumentsEveryMetric(t *testing.T) {
	registered := map[string][]string{}
	ch := make(chan *prometheus.Desc)
	go func() {
		newMetrics(&Agent{}).registry.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		m := descName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		if strings.HasPrefix(m[1], "scim_agent_") {
			var labels []string
			for l := range strings.SplitSeq(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
			registered[m[1]] = labels
		}
	}
	if len(registered) < 10 {
		t.Fatalf("read only %d scim_agent_ metrics from the registry: %v", len(registered), registered)
	}

	documented := map[string][]string{} // metric -> code spans of its labels cell
	for _, row := range readmeTable(t, "Metrics") {
		if len(row) < 3 {
			t.Errorf("README metric table: row %q has fewer than 3 cells", strings.Join(row, "|"))
			continue
		}
		for _, name := range codeSpans(row[0]) {
			documented[name] = codeSpans(row[2])
		}
	}
	for name, labels := range registered {
		got, ok := documented[name]
		if !ok {
			t.Errorf("README metric table: %s is not documented", name)
			continue
		}
		for _, l := range labels {
			if !slices.Contains(got, l) {
				t.Errorf("README metric table: %s: label %s is not named (row names %v)", name, l, got)
			}
		}
	}
	for name := range documented {
		if _, ok := registered[name]; !ok {
			t.Errorf("README metric table: %s is documented but not registered", name)
		}
	}
}
