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

// adminClient talks to a running agent's admin listener.
type adminClient struct {
	base string
	http *http.Client
}

// newAdminClient returns a client for the agent configured by cfg. A
// listener bound to every interface is reached on loopback, the only
// address the control endpoints answer.
func newAdminClient(cfg *config.Config) (*adminClient, error) {
	if cfg.Admin.Listen == "" {
		return nil, errors.New("its admin listener is off (admin.listen is empty): turn it on, or stop the agent first")
	}
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %q: %w", cfg.Admin.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return &adminClient{base: "http://" + net.JoinHostPort(host, port), http: &http.Client{Timeout: 0}}, nil
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
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach the running agent at %s: %w", c.base, err)
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

func (c *adminClient) sync(ctx context.Context, uids []uint32, dryRun bool) ([]agent.Result, error) {
	var resp agent.SyncResponse
	err := c.do(ctx, http.MethodPost, "/sync", agent.SyncRequest{UIDs: uids, DryRun: dryRun}, &resp)
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
