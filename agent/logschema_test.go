package agent

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// logSchema is the documented log contract (README, "Log messages"): for
// every message, the fields each of its lines carries besides ts, level
// and msg, and the levels it may be logged at. A line with a message not
// listed here, a missing field or another level fails the test run.
var logSchema = map[string]struct {
	levels string
	fields []string
}{
	MsgSCIMRequest:                    {"info warn", []string{"op", "uid|role", "userName|role", "scim_id", "binlog_pos"}},
	MsgLenientCreate:                  {"warn", []string{"uid|role", "userName|role", "scim_id", "status", "detail", "binlog_pos"}},
	MsgSCIMDryRun:                     {"info", []string{"op", "uid|role", "method", "path", "body", "binlog_pos"}},
	"scim.retry":                      {"warn", []string{"method", "path", "attempt", "retry_in_ms"}},
	MsgReconcileParked:                {"error warn", []string{"uid|role", "op", "userName|role", "scim_id", "status", "scim_type", "detail", "failures", "dry_run", "binlog_pos"}},
	MsgReconcileSkipped:               {"info", []string{"uid|role", "userName|role", "detail", "binlog_pos"}},
	MsgReconcileUnchanged:             {"debug", []string{"uid|role", "binlog_pos"}},
	"reconcile.error":                 {"warn", []string{"uid|role", "binlog_pos", "attempt", "retry_in_ms", "error"}},
	MsgReconcileWaiting:               {"info", []string{"uid|role", "userName|role", "detail"}},
	MsgPositionSaved:                  {"debug", []string{"binlog_pos", "gtid"}},
	MsgPositionPurged:                 {"error", []string{"position", "error"}},
	MsgColumnsUnknown:                 {"error", []string{"position", "error"}},
	MsgResyncNeeded:                   {"error", []string{"position", "error"}},
	MsgSyncStart:                      {"info", []string{"reason", "total", "known"}},
	MsgSyncProgress:                   {"info", []string{"done", "total", "rate_per_s"}},
	MsgSyncDone:                       {"info", []string{"reason", "done", "total", "duration_ms"}},
	MsgCheckOK:                        {"info", []string{"check", "detail"}},
	MsgCheckWarn:                      {"warn", []string{"check", "detail", "fix"}},
	MsgCheckFailed:                    {"error", []string{"check", "detail", "fix"}},
	MsgAgentStart:                     {"info", []string{"version", "workers", "patch", "dry_run"}},
	MsgAgentStop:                      {"info warn error", nil},
	MsgGuardTripped:                   {"error", []string{"count", "max", "window", "detail"}},
	MsgGuardHeld:                      {"warn", []string{"uid", "op"}},
	MsgGuardApproved:                  {"info", []string{"held"}},
	MsgConfigWarning:                  {"warn", []string{"detail"}},
	MsgDriftStart:                     {"info", []string{"managed"}},
	MsgDriftProgress:                  {"info", []string{"done", "total", "rate_per_s"}},
	MsgDriftDone:                      {"info", []string{"checked", "drifted", "orphans", "missing", "unprovisioned", "unreadable", "groups", "duration_ms"}},
	MsgDriftFailed:                    {"error", []string{"error"}},
	"admin.error":                     {"error", []string{"error"}},
	"binlog.connected":                {"info", []string{"position", "flavor", "server", "version"}},
	"binlog.reconnect":                {"warn", []string{"error", "attempt", "wait", "position"}},
	"binlog.stopped":                  {"info", []string{"position"}},
	"binlog.columns_loaded":           {"info", []string{"table", "columns"}},
	"binlog.unterminated_transaction": {"warn", []string{"file"}},
	"binlog.gtid_unknown":             {"info debug", []string{"position"}},
	"binlog.driver":                   {"debug", nil},
}

// checkCollectedLogs parses every collected line as JSON and checks it
// against logSchema, and greps every line for the secrets the test agents
// were given.
func checkCollectedLogs() error {
	lines := collectedLines()
	// With -run, only some tests ran: check what they logged, but do not
	// ask for every message.
	partial := flag.Lookup("test.run").Value.String() != ""
	if len(lines) == 0 {
		if partial {
			return nil
		}
		return errors.New("no log lines were collected")
	}
	var problems []string
	seen := map[string]int{}
	for i, line := range lines {
		for _, secret := range logSink.secrets {
			if strings.Contains(line, secret) {
				problems = append(problems, fmt.Sprintf("line %d leaks a secret: %s", i+1, line))
			}
		}
		for _, prefix := range drupaltest.HashPrefixes {
			if strings.Contains(line, prefix) {
				problems = append(problems, fmt.Sprintf("line %d holds a password hash: %s", i+1, line))
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			problems = append(problems, fmt.Sprintf("line %d is not JSON: %v: %s", i+1, err, line))
			continue
		}
		if dup := duplicateKey(line); dup != "" {
			problems = append(problems, fmt.Sprintf("line %d has the key %q twice: %s", i+1, dup, line))
		}
		msg, _ := m["msg"].(string)
		level, _ := m["level"].(string)
		if _, ok := m["ts"].(string); !ok || level == "" || msg == "" {
			problems = append(problems, fmt.Sprintf("line %d lacks ts, level or msg: %s", i+1, line))
			continue
		}
		seen[msg]++
		spec, ok := logSchema[msg]
		if !ok {
			problems = append(problems, fmt.Sprintf("line %d: message %q is not documented: %s", i+1, msg, line))
			continue
		}
		if !strings.Contains(" "+spec.levels+" ", " "+level+" ") {
			problems = append(problems, fmt.Sprintf("line %d: %s at level %s, documented %s", i+1, msg, level, spec.levels))
		}
		for _, f := range spec.fields {
			// "uid|role": a user's line carries uid, a group's role.
			found := false
			for _, alt := range strings.Split(f, "|") {
				_, ok := m[alt]
				found = found || ok
			}
			if !found {
				problems = append(problems, fmt.Sprintf("line %d: %s lacks field %q: %s", i+1, msg, f, line))
			}
		}
	}
	// The tests must exercise the messages that matter to dashboards.
	for _, msg := range []string{MsgSCIMRequest, MsgReconcileParked, MsgReconcileUnchanged, MsgSyncStart, MsgSyncDone,
		MsgAgentStart, MsgAgentStop, "scim.retry", "binlog.connected"} {
		if seen[msg] == 0 && !partial {
			problems = append(problems, fmt.Sprintf("no test produced a %s line", msg))
		}
	}
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	if path := os.Getenv("SCIM_AGENT_LOG_SAMPLES"); path != "" {
		writeSamples(path, lines)
	}
	msgs := make([]string, 0, len(seen))
	for m, n := range seen {
		msgs = append(msgs, fmt.Sprintf("%s=%d", m, n))
	}
	sort.Strings(msgs)
	fmt.Printf("log check: %d lines, every one documented: %s\n", len(lines), strings.Join(msgs, " "))
	return nil
}

// writeSamples writes the first line of each message to path, for the
// README's log table (SCIM_AGENT_LOG_SAMPLES=/tmp/samples go test ./agent).
func writeSamples(path string, lines []string) {
	first := map[string]string{}
	for _, line := range lines {
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		msg, _ := m["msg"].(string)
		if _, ok := first[msg]; !ok {
			first[msg] = line
		}
	}
	var out []string
	for _, line := range first {
		out = append(out, line)
	}
	sort.Strings(out)
	os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// duplicateKey returns a top-level key that occurs twice in a JSON
// object, or "".
func duplicateKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	keys := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := t.(string)
		if keys[k] {
			return k
		}
		keys[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}
