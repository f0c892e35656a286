package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
)

// adminClient talks to a running agent through its control socket
// (admin.socket), which serves whatever admin.listen says.
type adminClient struct {
	socket string
	state  string // state.path, which the running agent holds
	http   *http.Client
}

// newAdminClient returns a client for the agent configured by cfg.
func newAdminClient(cfg *config.Config) *adminClient {
	socket := cfg.Admin.Socket
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &adminClient{socket: socket, state: cfg.State.Path, http: &http.Client{Transport: &http.Transport{DialContext: dial}}}
}

func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://scim-agent"+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("a process holds the state file %s, but nothing answers on the control socket %s (admin.socket): %w "+
				"(an agent still starting opens it in a moment; one older than this command has none: restart it)", c.state, c.socket, op.Err)
		}
		return fmt.Errorf("%s %s on the running agent's control socket %s (admin.socket): %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		return fmt.Errorf("the running agent answered %s %s with %d: %s", method, path, resp.StatusCode, e.Error)
	}
	return json.Unmarshal(data, out)
}

func (c *adminClient) sync(ctx context.Context, req agent.SyncRequest) ([]agent.Result, error) {
	var resp agent.SyncResponse
	err := c.do(ctx, http.MethodPost, "/sync", req, &resp)
	return resp.Results, err
}

func (c *adminClient) retry(ctx context.Context, req agent.SyncRequest) ([]agent.Result, error) {
	var resp agent.SyncResponse
	err := c.do(ctx, http.MethodPost, "/retry", req, &resp)
	return resp.Results, err
}

func (c *adminClient) status(ctx context.Context) (agent.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s agent.Status
	err := c.do(ctx, http.MethodGet, "/status", nil, &s)
	return s, err
}

func (c *adminClient) approveDeletes(ctx context.Context) (int, error) {
	var resp struct {
		Released int `json:"released"`
	}
	err := c.do(ctx, http.MethodPost, "/approve-deletes", struct{}{}, &resp)
	return resp.Released, err
}
