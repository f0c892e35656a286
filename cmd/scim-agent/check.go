package main

import (
	"context"
	"fmt"
	"io"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
)

func checkCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "check --config FILE",
		"scim-agent check --config /etc/scim-agent/config.yaml", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warn  config: %s\n", w)
	}
	results := agent.Check(ctx, cfg)
	printChecks(stdout, results)
	if agent.AnyFailed(results) {
		return exitError{1}
	}
	return nil
}

// printChecks writes one line per check: ok, warn or FAIL, the check's
// name and what was found, and under a failure the exact fix.
func printChecks(w io.Writer, results []agent.CheckResult) {
	for _, r := range results {
		status := "ok  "
		switch {
		case !r.OK && r.Warn:
			status = "warn"
		case !r.OK:
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s  %-28s %s\n", status, r.Name, r.Detail)
		if !r.OK && r.Fix != "" {
			fmt.Fprintf(w, "      %-28s fix: %s\n", "", r.Fix)
		}
	}
}
