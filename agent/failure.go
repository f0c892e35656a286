package agent

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/scimclient"
)

// errTokenRefused marks a reconcile the SCIM server answered 401: the
// token (or other credentials), not the user, is at fault. It is retried
// like an outage, holding the position, and /readyz says why; parking
// would turn a revoked or rotated token into every user parked.
var errTokenRefused = errors.New("the SCIM server refuses the token")

// failure is why one step of a reconcile did not reach its goal: the
// operation tried, and whether the uid is parked (the user's own problem:
// the server refused its data, or the agent found it cannot be
// provisioned) or tried again later (an outage, the database away).
type failure struct {
	op   string // the operation tried: create, update, deactivate, ...
	park bool
	// invalid: the server's answer was not SCIM (a proxy's HTML page, a
	// body over the size limit). Retried, then parked after
	// maxInvalidAnswerAttempts.
	invalid bool
	// status and scimType are the server's refusal, when it refused.
	status   int
	scimType string
	detail   string // the server's detail, or the agent's finding
	err      error  // the cause, for the retry log line
}

// maxInvalidAnswerAttempts is how many times a reconcile is tried while
// the server answers something that is not SCIM before the user is
// parked: such an answer may be a passing fault, but one user's must not
// hold everything back.
const maxInvalidAnswerAttempts = 3

// classify classifies the error of a call made for op: a refusal of the
// user's data parks it; a 401, a transport failure, a 5xx or a cancelled
// context is tried again; an answer that is not SCIM is tried a few times.
func classify(op string, err error) *failure {
	f := &failure{op: op, err: err}
	var se *scimclient.Error
	switch {
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		f.err = fmt.Errorf("%w: %s", errTokenRefused, se.Error())
	case errors.As(err, &se) && !scimclient.IsRetryable(err):
		f.park, f.status, f.scimType, f.detail = true, se.Status, se.ScimType, se.Detail
		if f.detail == "" {
			f.detail = se.Error()
		}
	case errors.Is(err, scimclient.ErrInvalidResponse) || errors.Is(err, scimclient.ErrResponseTooLarge):
		f.invalid = true
	}
	return f
}

// refused is a failure the agent finds itself (an account it may not
// take, a user it cannot map): the uid is parked with detail.
func refused(op, detail string) *failure {
	return &failure{op: op, park: true, detail: detail, err: errors.New(detail)}
}

// retry is a failure to try again later: the database went away, the
// state file could not be written.
func retry(op string, err error) *failure { return &failure{op: op, err: err} }

// notFound reports whether the server answered that the resource is
// gone (a SCIM 404, not a proxy's page).
func (f *failure) notFound() bool { return f != nil && scimclient.IsNotFound(f.err) }

// is reports whether the server answered status.
func (f *failure) is(status int) bool { return f != nil && scimclient.IsStatus(f.err, status) }

// Error describes the failure.
func (f *failure) Error() string {
	if f.err != nil {
		return f.err.Error()
	}
	return f.detail
}

// Unwrap returns the cause.
func (f *failure) Unwrap() error { return f.err }

// parked is the record of f, a permanent failure, counting on from
// prev (the record's earlier one, or nil).
func (f *failure) parked(prev *state.Parked) *state.Parked {
	p := &state.Parked{Op: f.op, Status: f.status, ScimType: f.scimType, Detail: f.detail, At: time.Now().UTC(), Failures: 1}
	if prev != nil {
		p.Failures = prev.Failures + 1
	}
	return p
}

// stillCreating reports whether a create that f parked must look before
// it posts again: a 400 refused the POST, but any other failure may have
// followed a POST the server applied.
func (f *failure) stillCreating(creating bool, scimID string) bool {
	return creating && scimID == "" && f.status != http.StatusBadRequest
}

// parkedLogger is how a parked reconcile logs: at error, but at warning
// in a dry run (nothing is parked in one: no alert-worthy line).
func parkedLogger(log *zap.Logger, dry bool) func(string, ...zap.Field) {
	if dry {
		return log.Warn
	}
	return log.Error
}
