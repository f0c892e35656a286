package agent

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the explanation for a person: the eight steps of the
// role's reconcile, numbered as a user's are.
func (e *RoleExplanation) WriteText(w io.Writer) error {
	t := &textWriter{}
	t.head("role "+e.Role, e.Decision.Outcome, e.DryRun)
	e.writeDrupal(t)
	t.line(0, "2. Selection (groups.roles, groups.exclude_roles)")
	if e.Selected {
		t.line(3, "the role is provisioned as a group")
	} else {
		t.line(3, "the role is not provisioned")
	}
	t.line(0, "3. Desired group")
	if e.Desired == nil {
		t.line(3, "none")
	} else {
		t.block(3, e.Desired)
	}
	e.writeRecord(t)
	e.writeServer(t)
	e.writeDifference(t)
	writeDecisionStep(t, e.Decision)
	writeRequestSteps(t, e.Requests)
	return t.flush(w)
}

func (e *RoleExplanation) writeDrupal(t *textWriter) {
	t.line(0, "1. Drupal (the role's config row and its holders)")
	d := e.Drupal
	switch {
	case !d.Read:
		t.line(3, "not read")
		return
	case d.Error != "":
		t.line(3, "user.role.%s does not decode as a role: %s", e.Role, d.Error)
		return
	case !d.Found:
		t.line(3, "no such role: no config row user.role.%s", e.Role)
		return
	}
	t.line(3, "user.role.%s  label %q", e.Role, d.Label)
	if len(d.Holders) == 0 {
		t.line(3, "no user holds it")
	}
	for _, h := range d.Holders {
		if h.Member {
			t.line(3, "uid %d  member: account %s", h.UID, h.SCIMID)
		} else {
			t.line(3, "uid %d  not a member: %s", h.UID, h.Why)
		}
	}
}

func (e *RoleExplanation) writeRecord(t *textWriter) {
	t.line(0, "4. State file")
	rec := e.Record
	if rec == nil {
		t.line(3, "no record of role %s", e.Role)
		return
	}
	field := func(name, format string, args ...any) { t.line(3, "%-12s %s", name, fmt.Sprintf(format, args...)) }
	if rec.SCIMID == "" {
		field("scim_id", "none (no group known)")
	} else {
		field("scim_id", "%s", rec.SCIMID)
	}
	if rec.DisplayName != "" {
		field("displayName", "%q (as last pushed)", rec.DisplayName)
	}
	if len(rec.Members) == 0 {
		field("members", "none pushed")
	} else {
		field("members", "%d pushed: %s", len(rec.Members), strings.Join(rec.Members, ", "))
	}
	var flags []string
	if rec.Creating {
		flags = append(flags, "creating (a POST's outcome never saved)")
	}
	if rec.Kept {
		flags = append(flags, "kept (its role was deleted; groups.on_role_delete: keep)")
	}
	if len(flags) > 0 {
		field("flags", "%s", strings.Join(flags, ", "))
	}
	if rec.Version != "" {
		field("version", "%s", rec.Version)
	}
	if p := rec.Parked; p != nil {
		field("parked", "%s", parkedLine(p))
	}
}

func (e *RoleExplanation) writeServer(t *textWriter) {
	t.line(0, "5. Server")
	if len(e.Server) > 0 {
		writeServerSteps(t, e.Server)
		return
	}
	switch {
	case e.Difference != nil && e.Difference.Against == "pushed":
		t.line(3, "not read: compared with what was last pushed")
	case e.Record == nil || e.Record.SCIMID == "" && !e.Record.Creating:
		t.line(3, "not read: no group of role %s is known", e.Role)
	default:
		t.line(3, "not read")
	}
}

func (e *RoleExplanation) writeDifference(t *textWriter) {
	d := e.Difference
	if d == nil {
		writeDiffHead(t, "", "", "")
		return
	}
	writeDiffHead(t, d.Against, "with what was last pushed:", "no group on the server: all of it is sent")
	if d.Label == "" && len(d.Add) == 0 && len(d.Remove) == 0 {
		t.line(5, "none: the label and members match")
		return
	}
	if d.Label != "" {
		t.line(5, "%-11s  %q", "displayName", d.Label)
	}
	if len(d.Add) > 0 {
		t.line(5, "%-11s  %s", "add", strings.Join(d.Add, ", "))
	}
	if len(d.Remove) > 0 {
		t.line(5, "%-11s  %s", "remove", strings.Join(d.Remove, ", "))
	}
}
