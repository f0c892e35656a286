package agent

import "github.com/scim-agent/scim-agent/mapping"

// Outcome is what one reconcile did.
type Outcome string

// Outcomes of a reconcile.
const (
	Created     Outcome = "created"     // POSTed
	Adopted     Outcome = "adopted"     // found on the server after a 409 (or a crash mid-POST) and taken over
	Updated     Outcome = "updated"     // PATCHed or PUT
	Deactivated Outcome = "deactivated" // active=false (blocked, or deleted with on_delete: deactivate)
	Reactivated Outcome = "reactivated" // active=true again
	Deleted     Outcome = "deleted"     // DELETEd (or already gone)
	Unchanged   Outcome = "unchanged"   // nothing mapped differs: no request
	Skipped     Outcome = "skipped"     // excluded uid, operation switched off, or nothing to map yet
	Failed      Outcome = "failed"      // a permanent error: the uid is parked
	Held        Outcome = "held"        // held back by the deletion guard until approved
	// Waiting: the create waits for another uid's account to release the
	// userName (its deletion or rename is pending) and is tried again.
	Waiting Outcome = "waiting"
)

// Result is the outcome of reconciling one uid.
type Result struct {
	UID     uint32  `json:"uid"`
	Outcome Outcome `json:"outcome"`
	// Op is the operation tried: create, update, deactivate, reactivate,
	// delete, or "" when none was needed.
	Op       string `json:"op,omitempty"`
	UserName string `json:"userName,omitempty"`
	// Role is the role's machine name of a group's reconcile (UID is 0
	// then).
	Role   string `json:"role,omitempty"`
	SCIMID string `json:"scim_id,omitempty"`
	// Detail explains a skip or failure (the server's own detail for a
	// failure).
	Detail string `json:"detail,omitempty"`
	// Explain is a user's reconcile told step by step, when the
	// selection asked for it (sync --explain); ExplainRole a role's.
	Explain     *Explanation     `json:"explain,omitempty"`
	ExplainRole *RoleExplanation `json:"explain_role,omitempty"`
}

// op names the change an update makes: deactivate, reactivate or update.
func op(user mapping.User, c mapping.Changes) string {
	if !c.Has("active") {
		return OpUpdate
	}
	if user.Active() {
		return OpReactivate
	}
	return OpDeactivate
}

// outcomeOf is the outcome of an operation done.
func outcomeOf(op string) Outcome {
	switch op {
	case OpDeactivate:
		return Deactivated
	case OpReactivate:
		return Reactivated
	case OpCreate:
		return Created
	case OpDelete:
		return Deleted
	}
	return Updated
}
