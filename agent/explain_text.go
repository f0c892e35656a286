package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/scim-agent/scim-agent/internal/state"
)

// WriteText writes the explanation for a person: the eight steps of the
// reconcile, numbered, in the order they happen.
func (e *Explanation) WriteText(w io.Writer) error {
	t := &textWriter{}
	t.head(fmt.Sprintf("uid %d", e.UID), e.Decision.Outcome, e.DryRun)
	e.writeDrupal(t)
	e.writeScope(t)
	e.writeDesired(t)
	e.writeRecord(t)
	e.writeServer(t)
	e.writeDifference(t)
	e.writeDecision(t)
	e.writeRequests(t)
	return t.flush(w)
}

// textWriter indents lines.
type textWriter struct{ buf bytes.Buffer }

// head writes the first line: what is explained, how it ended, and
// whether it was a dry run.
func (t *textWriter) head(subject string, outcome Outcome, dry bool) {
	line := fmt.Sprintf("%s: %s", subject, outcome)
	if dry {
		line += " (dry run: nothing sent, nothing saved)"
	}
	t.line(0, "%s", line)
}

// flush writes what was written to w.
func (t *textWriter) flush(w io.Writer) error {
	_, err := w.Write(t.buf.Bytes())
	return err
}

func (t *textWriter) line(indent int, format string, args ...any) {
	t.buf.WriteString(strings.Repeat(" ", indent))
	fmt.Fprintf(&t.buf, format, args...)
	t.buf.WriteByte('\n')
}

// block writes JSON indented under a line.
func (t *textWriter) block(indent int, raw json.RawMessage) {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, strings.Repeat(" ", indent), "  "); err != nil {
		t.line(indent, "%s", raw)
		return
	}
	t.buf.WriteString(strings.Repeat(" ", indent))
	t.buf.Write(out.Bytes())
	t.buf.WriteByte('\n')
}

func (e *Explanation) writeDrupal(t *textWriter) {
	t.line(0, "1. Drupal (the rows read)")
	switch {
	case e.Drupal.Skipped != "":
		t.line(3, "%s", e.Drupal.Skipped)
		return
	case !e.Drupal.Found:
		t.line(3, "no such user: uid %d has no row in users", e.UID)
		return
	}
	width := 0
	for _, r := range e.Drupal.Rows {
		width = max(width, len(r.Table))
	}
	for _, r := range e.Drupal.Rows {
		cols := make([]string, 0, len(r.Values))
		for _, c := range columnOrder(r.Values) {
			cols = append(cols, c+"="+drupalValue(r.Values[c]))
		}
		t.line(3, "%-*s  %s", width, r.Table, strings.Join(cols, " "))
	}
	if len(e.Drupal.Rows) == 1 {
		t.line(3, "(no users_field_data row yet)")
	}
}

// drupalValue shows a value read from Drupal: strings quoted, NULL,
// numbers, role lists.
func drupalValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return fmt.Sprintf("%q", x)
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case float64:
		return fmt.Sprint(int64(x))
	}
	return fmt.Sprint(v)
}

// columnOrder lists a row's columns: uid first, the others sorted.
func columnOrder(values map[string]any) []string {
	keys := mapKeys(values)
	if i := slices.Index(keys, "uid"); i > 0 {
		keys = append([]string{"uid"}, slices.Delete(keys, i, i+1)...)
	}
	return keys
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (e *Explanation) writeScope(t *textWriter) {
	t.line(0, "2. Scope")
	if e.Scope == nil {
		t.line(3, "not evaluated")
		return
	}
	t.line(3, "%s", e.Scope)
	for _, c := range e.Scope.Checks {
		verdict := "no"
		if c.Holds {
			verdict = "yes"
		}
		t.line(5, "clause %d, condition %d: %s: %s (%s)", c.Clause, c.Condition, c.Test, verdict, c.Value)
	}
}

func (e *Explanation) writeDesired(t *textWriter) {
	t.line(0, "3. Desired SCIM resource")
	if e.Desired == nil {
		t.line(3, "none")
		return
	}
	t.block(3, e.Desired)
}

func (e *Explanation) writeRecord(t *textWriter) {
	t.line(0, "4. State file")
	rec := e.Record
	if rec == nil {
		t.line(3, "no record of uid %d", e.UID)
		return
	}
	field := func(name, format string, args ...any) { t.line(3, "%-11s %s", name, fmt.Sprintf(format, args...)) }
	if rec.SCIMID == "" {
		field("scim_id", "none (no account known)")
	} else {
		field("scim_id", "%s", rec.SCIMID)
	}
	field("userName", "%q", rec.UserName)
	if rec.ExternalID != "" {
		field("externalId", "%s", rec.ExternalID)
	}
	if rec.SCIMID != "" {
		field("active", "%v (as last pushed)", rec.Active)
	}
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{rec.Creating, "creating (a POST's outcome never saved)"}, {rec.Gone, "gone (deactivated after its Drupal user was deleted)"},
		{rec.OutOfScope, "out of scope (deactivated for leaving provisioning.scope)"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) > 0 {
		field("flags", "%s", strings.Join(flags, ", "))
	}
	if rec.Version != "" {
		field("version", "%s", rec.Version)
	}
	if len(rec.Pushed) == 0 {
		field("pushed", "nothing")
	} else {
		field("pushed", "fingerprints of the values last sent:")
		width := 0
		for p := range rec.Pushed {
			width = max(width, len(p))
		}
		for _, p := range mapKeys(rec.Pushed) {
			t.line(5, "%-*s  %016x", width, p, rec.Pushed[p])
		}
	}
	if p := rec.Parked; p != nil {
		field("parked", "%s", parkedLine(p))
	}
}

// parkedLine describes a record's parked failure: what failed, when, how
// often and the server's detail.
func parkedLine(p *state.Parked) string {
	return fmt.Sprintf("%s at %s, %d failure(s): %s", parkedStatus(p.Op, p.Status, p.ScimType), p.At.UTC().Format(time.RFC3339), p.Failures, p.Detail)
}

func parkedStatus(op string, status int, scimType string) string {
	s := op
	if status != 0 {
		s += fmt.Sprintf(" %d", status)
	}
	if scimType != "" {
		s += " (" + scimType + ")"
	}
	return s
}

func (e *Explanation) writeServer(t *textWriter) {
	t.line(0, "5. Server")
	if len(e.Server) == 0 {
		switch {
		case e.Difference != nil && e.Difference.Against == "pushed":
			t.line(3, "not read: compared with the fingerprints of what was last pushed")
		case e.Record == nil || e.Record.SCIMID == "" && !e.Record.Creating:
			t.line(3, "not read: no account of uid %d is known", e.UID)
		default:
			t.line(3, "not read")
		}
		return
	}
	writeServerSteps(t, e.Server)
}

// writeServerSteps writes each look at the server: what was read, its
// status and note, and the resource.
func writeServerSteps(t *textWriter, steps []ServerStep) {
	for _, s := range steps {
		what := "GET " + s.Path
		if s.Read == "lookup" {
			what = "lookup " + s.Filter
		}
		if s.Status != 0 {
			what += fmt.Sprintf(": %d", s.Status)
		}
		if s.Matches != nil {
			what += fmt.Sprintf(", %d listed", *s.Matches)
		}
		if s.Note != "" {
			what += ": " + s.Note
		}
		t.line(3, "%s", what)
		if s.Resource != nil {
			t.block(5, s.Resource)
		}
	}
}

func (e *Explanation) writeDifference(t *textWriter) {
	d := e.Difference
	if d == nil {
		writeDiffHead(t, "", "", "")
		return
	}
	writeDiffHead(t, d.Against, "with what was last pushed (fingerprints):", "no account on the server: every attribute is sent")
	if len(d.Changes) == 0 {
		t.line(5, "none: every mapped attribute matches")
		return
	}
	width := 0
	for _, c := range d.Changes {
		width = max(width, len(c.Path))
	}
	for _, c := range d.Changes {
		var was string
		switch {
		case d.Against == "server" && c.Server == nil:
			was = "server: absent"
		case d.Against == "server":
			was = "server: " + string(c.Server)
		case d.Against == "pushed":
			was = "pushed: " + c.Pushed
		}
		switch {
		case c.Change == "remove" && was != "":
			t.line(5, "%-*s  remove (%s)", width, c.Path, was)
		case c.Change == "remove":
			t.line(5, "%-*s  remove", width, c.Path)
		case was != "":
			t.line(5, "%-*s  %s (%s)", width, c.Path, c.Wanted, was)
		default:
			t.line(5, "%-*s  %s", width, c.Path, c.Wanted)
		}
	}
}

// writeDiffHead writes step 6's heading and what was compared with:
// the server's copy, what was last pushed (pushed says so) or nothing
// (none says so); against "" is no comparison at all.
func writeDiffHead(t *textWriter, against, pushed, none string) {
	t.line(0, "6. Difference")
	switch against {
	case "":
		t.line(3, "not compared")
	case "server":
		t.line(3, "with the server's copy:")
	case "pushed":
		t.line(3, "%s", pushed)
	default:
		t.line(3, "%s", none)
	}
}

func (e *Explanation) writeDecision(t *textWriter) { writeDecisionStep(t, e.Decision) }

// writeDecisionStep writes step 7: the action, why, and the outcome.
func writeDecisionStep(t *textWriter, d DecisionStep) {
	t.line(0, "7. Decision")
	t.line(3, "%s: %s", d.Action, d.Why)
	out := string(d.Outcome)
	if d.Detail != "" && d.Detail != d.Why {
		out += ": " + d.Detail
	}
	t.line(3, "outcome: %s", out)
}

func (e *Explanation) writeRequests(t *textWriter) { writeRequestSteps(t, e.Requests) }

// writeRequestSteps writes step 8: each request, its status and body.
func writeRequestSteps(t *textWriter, reqs []RequestStep) {
	t.line(0, "8. Requests")
	if len(reqs) == 0 {
		t.line(3, "none")
		return
	}
	for _, r := range reqs {
		line := r.Method + " " + r.Path
		switch {
		case !r.Sent:
			line += ": not sent (dry run)"
		case r.Error != "" && r.Status == 0:
			line += ": " + r.Error
		default:
			line += fmt.Sprintf(": %d", r.Status)
			if r.Error != "" {
				line += " " + strings.TrimPrefix(r.Error, fmt.Sprintf("%d ", r.Status))
			}
		}
		if r.Attempts > 1 {
			line += fmt.Sprintf(" (%d attempts)", r.Attempts)
		}
		t.line(3, "%s", line)
		if r.Body != nil {
			t.block(5, r.Body)
		}
	}
}
