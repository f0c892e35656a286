package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/scim-agent/scim-agent/scimclient"
)

// scimHealth is what the agent knows of the SCIM server's health from
// the answers it gets: when a request last succeeded and last failed, and
// whether the server refuses the agent's credentials. It feeds /readyz.
// The zero value knows nothing yet; it is safe for concurrent use.
type scimHealth struct {
	window  time.Duration // how recent a success must be to count
	lastOK  atomic.Int64  // unix nanoseconds
	lastBad atomic.Int64
	// refused is when the server last answered 401, unless a request
	// succeeded since (unix nanoseconds; 0 when not refused).
	refused atomic.Int64
	// untrusted is the last answer that could not be right (a list that
	// ignored its filter, a total without Resources), while a call is
	// retrying it; nil once a retried call succeeds.
	untrusted atomic.Pointer[string]
}

func newSCIMHealth(window time.Duration) *scimHealth { return &scimHealth{window: window} }

// ok records a successful request.
func (h *scimHealth) ok() { h.lastOK.Store(time.Now().UnixNano()) }

// failed records a failed request (a 5xx, no answer).
func (h *scimHealth) failed() { h.lastBad.Store(time.Now().UnixNano()) }

// note records what one call's answer says: any answer other than 401 or
// 5xx shows both the server and the credentials work (a 403 or 404 comes
// after they were accepted). A call that succeeded after retries ends
// the untrusted answers it may have been retrying.
func (h *scimHealth) note(cr scimclient.Result, err error) {
	if err == nil && cr.Attempts > 1 {
		h.untrusted.Store(nil)
	}
	switch {
	case cr.Status == http.StatusUnauthorized:
		h.refused.Store(time.Now().UnixNano())
		h.failed()
	case err == nil || cr.Status > 0 && cr.Status < 500:
		h.refused.Store(0)
		h.ok()
	}
}

// retried records an attempt retried for status (0: no answer, or an
// answer that failed its check) and err, its cause when not a status.
func (h *scimHealth) retried(status int, err error) {
	if errors.Is(err, scimclient.ErrUntrustedAnswer) {
		detail := err.Error()
		h.untrusted.Store(&detail)
	}
	if status == 0 || status >= 500 {
		h.failed()
	}
}

// healthy is true when the last request that got an answer succeeded
// within the window.
func (h *scimHealth) healthy() bool {
	ok, bad := h.lastOK.Load(), h.lastBad.Load()
	return ok > 0 && ok >= bad && time.Since(time.Unix(0, ok)) <= h.window
}

// problem says why the server is not healthy, or "".
func (h *scimHealth) problem() string {
	untrusted := h.untrusted.Load()
	switch {
	case h.refused.Load() != 0:
		return "the SCIM server refuses the token (HTTP 401): changes wait until scim.token is fixed"
	case untrusted != nil:
		return "the SCIM server's answers cannot be trusted (retried with backoff, the position held, never taken for \"no match\"): " +
			*untrusted
	case !h.healthy():
		return fmt.Sprintf("no successful SCIM request in the last %s", h.window)
	}
	return ""
}

// lastSuccess returns when a request last succeeded.
func (h *scimHealth) lastSuccess() (time.Time, bool) {
	t := h.lastOK.Load()
	return time.Unix(0, t).UTC(), t > 0
}

// probe keeps the health honest on a quiet site until ctx is done: when
// no request succeeded lately it calls ask (one attempt at the server's
// ServiceProviderConfig; a server without one answers 404, an answer).
func (h *scimHealth) probe(ctx context.Context, ask func(context.Context) error) {
	period := h.window / 3
	every(ctx, period, func() {
		if time.Since(time.Unix(0, h.lastOK.Load())) < period && h.healthy() {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, period)
		err := ask(pctx)
		cancel()
		if err == nil {
			h.ok()
		} else if ctx.Err() == nil {
			h.failed()
		}
	})
}
