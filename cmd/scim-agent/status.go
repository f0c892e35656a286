package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/state"
)

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "status --config FILE [--json]",
		"scim-agent status --config /etc/scim-agent/config.yaml", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	asJSON := fs.Bool("json", false, "print the status as JSON (as GET /status serves it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	var s agent.Status
	store, err := state.OpenExisting(cfg.State.Path, 200*time.Millisecond)
	switch {
	case errors.Is(err, state.ErrLocked):
		if s, err = newAdminClient(cfg).status(ctx); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		defer store.Close()
		var pos binlog.Position
		if _, err := store.Meta("position", &pos); err != nil {
			return err
		}
		s.Position, s.GTID = pos.String(), pos.GTID
		if s.Parked, err = agent.ParkedUsers(store); err != nil {
			return err
		}
		if s.Accounts, err = store.CountAccounts(); err != nil {
			return err
		}
		if s.Guard, err = agent.StoredGuard(store); err != nil {
			return err
		}
		if s.Groups, s.GroupMembers, err = agent.GroupCounts(store); err != nil {
			return err
		}
		if s.ParkedGroups, err = agent.ParkedGroups(store); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printStatus(stdout, s)
	return nil
}

func printStatus(w io.Writer, s agent.Status) {
	row := func(k, v string) { fmt.Fprintf(w, "%-20s %s\n", k, v) }
	if s.Error != "" {
		row("error", s.Error)
	}
	if !s.Running {
		row("agent", "not running (read from the state file)")
	} else {
		row("agent", fmt.Sprintf("running since %s", s.Started.Format(time.RFC3339)))
		ready := "yes"
		if !s.Ready {
			ready = "no: " + s.Reason
		}
		row("ready", ready)
	}
	pos := s.Position
	if pos == "" || pos == (binlog.Position{}).String() {
		pos = "none (the first start will sync every user)"
	}
	row("position", pos)
	if s.Running {
		row("lag", fmt.Sprintf("%.1fs", s.LagSeconds))
		row("queue depth", fmt.Sprint(s.QueueDepth))
		if s.LastSuccess != nil {
			row("last success", s.LastSuccess.Format(time.RFC3339))
		}
		ops := make([]string, 0, len(s.Operations))
		for o, n := range s.Operations {
			ops = append(ops, fmt.Sprintf("%s=%d", o, n))
		}
		sort.Strings(ops)
		row("since start", fmt.Sprint(ops))
	}
	guard := "ok"
	if s.Guard.Tripped {
		guard = fmt.Sprintf("TRIPPED since %s, %d held: run `scim-agent approve-deletes`", s.Guard.Since.Format(time.RFC3339), len(s.Guard.Held)+len(s.Guard.HeldRoles))
	}
	row("deletion guard", guard)
	row("accounts", fmt.Sprint(s.Accounts))
	if s.Groups > 0 || len(s.ParkedGroups) > 0 {
		row("groups", fmt.Sprintf("%d (%d members)", s.Groups, s.GroupMembers))
	}
	row("parked", fmt.Sprint(len(s.Parked)+len(s.ParkedGroups)))
	for _, p := range s.Parked {
		fmt.Fprintf(w, "  uid=%d userName=%q op=%s status=%d at=%s failures=%d: %s\n",
			p.UID, p.UserName, p.Op, p.Status, p.At.Format(time.RFC3339), p.Failures, p.Detail)
	}
	for _, g := range s.ParkedGroups {
		fmt.Fprintf(w, "  role=%s op=%s status=%d at=%s failures=%d: %s\n",
			g.Role, g.Op, g.Status, g.At.Format(time.RFC3339), g.Failures, g.Detail)
	}
}
