package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/state"
)

func approveDeletesCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("approve-deletes", "approve-deletes --config FILE",
		"scim-agent approve-deletes --config /etc/scim-agent/config.yaml", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	store, err := state.OpenExisting(cfg.State.Path, 200*time.Millisecond)
	if errors.Is(err, state.ErrLocked) {
		n, err := newAdminClient(cfg).approveDeletes(ctx)
		if err != nil {
			return fmt.Errorf("%w; or restart the agent with --approve-deletes", err)
		}
		fmt.Fprintf(stdout, "approved: %d held deletions and deactivations are being sent\n", n)
		return nil
	}
	if err != nil {
		return err
	}
	defer store.Close()
	// No agent running: clear the guard so the next start sends what was held.
	if err := agent.ApproveStored(store); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "approved: the next start sends the held deletions and deactivations")
	return nil
}
