package scimclient

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/scim-agent/scim-agent/internal/scimtest"
)

func TestUntrustedListAnswers(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []scimtest.FilterMode{scimtest.FilterIgnored, scimtest.FilterCountOnly} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := scimtest.New(t, scimtest.Options{Filter: mode})
			for _, n := range []string{"ann", "bob", "cyd"} {
				srv.Seed(map[string]any{"userName": n, "externalId": "ext-" + n})
			}
			var retried []error
			c := newClient(t, srv, func(c *Config) {
				c.MaxAttempts = 2
				c.OnRetry = func(method string, status int, err error) {
					if method != http.MethodGet || status != 0 {
						t.Errorf("OnRetry(%s, %d, %v)", method, status, err)
					}
					retried = append(retried, err)
				}
			})
			list, res, err := c.ListUsers(ctx, FilterEq("userName", "cyd"), 1, 2)
			if !errors.Is(err, ErrUntrustedAnswer) || !IsRetryable(err) {
				t.Fatalf("ListUsers = %+v, %v; want an untrusted answer, retryable", list, err)
			}
			if res.Attempts != 2 {
				t.Errorf("attempts %d, want the untrusted answer retried", res.Attempts)
			}
			// The retry names its cause while the call still runs.
			if len(retried) != 1 || !errors.Is(retried[0], ErrUntrustedAnswer) {
				t.Errorf("OnRetry errors %v, want the untrusted answer", retried)
			}
		})
	}
	t.Run("honoured", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{})
		srv.Seed(map[string]any{"userName": "ann"})
		srv.Seed(map[string]any{"userName": "Bob"})
		list, _, err := newClient(t, srv).ListUsers(ctx, FilterEq("userName", "bob"), 1, 2)
		if err != nil || len(list.Resources) != 1 || list.Resources[0]["userName"] != "Bob" {
			t.Fatalf("%+v %v", list, err)
		}
		// A page past the end holds nothing.
		if _, _, err := newClient(t, srv).ListUsers(ctx, "", 3, 2); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unfiltered page without Resources", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{})
		srv.Inject(scimtest.Fault{Status: 200, ContentType: MediaType,
			Body: []byte(`{"schemas":["` + ListResponseSchema + `"],"totalResults":5,"itemsPerPage":0,"startIndex":1}`)})
		_, _, err := newClient(t, srv, func(c *Config) { c.MaxAttempts = 1 }).ListUsers(ctx, "", 1, 100)
		if !errors.Is(err, ErrUntrustedAnswer) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a filter on externalId is case-exact", func(t *testing.T) {
		srv := scimtest.New(t, scimtest.Options{})
		srv.Inject(scimtest.Fault{Status: 200, ContentType: MediaType,
			Body: []byte(`{"totalResults":1,"Resources":[{"id":"1","userName":"x","externalId":"EXT-A"}]}`)})
		_, _, err := newClient(t, srv, func(c *Config) { c.MaxAttempts = 1 }).ListUsers(ctx, FilterEq("externalId", "ext-a"), 1, 2)
		if !errors.Is(err, ErrUntrustedAnswer) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestNonSCIMNotFoundIsNotGone(t *testing.T) {
	ctx := context.Background()
	srv := scimtest.New(t, scimtest.Options{})
	c := newClient(t, srv, func(c *Config) { c.MaxAttempts = 3 })
	created, _, err := c.CreateUser(ctx, user("ann"))
	if err != nil {
		t.Fatal(err)
	}
	id := created["id"].(string)
	srv.Inject(scimtest.HTMLNotFound("PUT", ""))
	_, res, err := c.ReplaceUser(ctx, id, user("ann"))
	if !IsStatus(err, http.StatusNotFound) || IsNotFound(err) || !IsRetryable(err) {
		t.Fatalf("HTML 404: err %v; want a raw 404, not gone, retryable", err)
	}
	if res.Attempts != 3 {
		t.Errorf("attempts %d, want the HTML 404 retried", res.Attempts)
	}
	srv.ClearFaults()
	srv.Remove(id)
	_, res, err = c.GetUser(ctx, id)
	if !IsNotFound(err) || IsRetryable(err) || res.Attempts != 1 {
		t.Fatalf("SCIM 404: err %v attempts %d; want gone at once", err, res.Attempts)
	}
}
