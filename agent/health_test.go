package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/scimclient"
)

func TestHealthNamesUntrustedAnswers(t *testing.T) {
	untrusted := fmt.Errorf("scim GET /Users: %w: account %q answered to the filter userName eq %q does not match it",
		scimclient.ErrUntrustedAnswer, "id-1", "ann")
	for _, tc := range []struct {
		name  string
		steps func(h *scimHealth)
		want  string // a part of problem(); "" for healthy
	}{
		{"an untrusted answer being retried", func(h *scimHealth) {
			h.note(scimclient.Result{Status: 201, Attempts: 1}, nil)
			h.retried(0, untrusted)
		}, `answers cannot be trusted (retried with backoff, the position held, never taken for "no match"): scim GET /Users: untrusted answer`},
		{"other calls succeeding meanwhile", func(h *scimHealth) {
			h.retried(0, untrusted)
			h.note(scimclient.Result{Status: 200, Attempts: 1}, nil)
			h.note(scimclient.Result{Status: 201, Attempts: 1}, nil)
		}, "answers cannot be trusted"},
		{"the retried call succeeded", func(h *scimHealth) {
			h.retried(0, untrusted)
			h.note(scimclient.Result{Status: 200, Attempts: 3}, nil)
		}, ""},
		{"a network error is no untrusted answer", func(h *scimHealth) {
			h.note(scimclient.Result{Status: 200, Attempts: 1}, nil)
			h.retried(0, errors.New("connection refused"))
		}, "no successful SCIM request"},
		{"a 401 comes first", func(h *scimHealth) {
			h.retried(0, untrusted)
			h.note(scimclient.Result{Status: 401, Attempts: 1}, &scimclient.Error{Status: 401})
		}, "refuses the token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSCIMHealth(time.Minute)
			tc.steps(h)
			got := h.problem()
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("problem() = %q, want %q", got, tc.want)
			}
		})
	}
}
