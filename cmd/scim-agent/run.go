package main

import (
	"context"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/logging"
)

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "run --config FILE [--dry-run]",
		"scim-agent run --config /etc/scim-agent/config.yaml", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	dryRun := fs.Bool("dry-run", false, "log each request that would be sent; send nothing, save nothing")
	approve := fs.Bool("approve-deletes", false, "release a tripped deletion guard at start")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	tuneGC(os.Getenv)
	tuneProcs(os.Getenv)
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format, stdout)
	if err != nil {
		return err
	}
	defer log.Sync()
	for _, w := range cfg.Warnings {
		log.Warn(agent.MsgConfigWarning, zap.String("detail", w))
	}

	// The same checks as `scim-agent check`: refuse to run on a failed one.
	results := agent.Check(ctx, cfg)
	if ctx.Err() != nil {
		// SIGTERM while a check waited (a slow SCIM server): a stop asked
		// for, not a failed check.
		log.Info(agent.MsgAgentStop, zap.String("reason", "stopped during the start-up checks"))
		return nil
	}
	for _, r := range results {
		fields := []zap.Field{zap.String("check", r.Name), zap.String("detail", r.Detail)}
		switch {
		case r.OK:
			log.Info(agent.MsgCheckOK, fields...)
		case r.Warn:
			log.Warn(agent.MsgCheckWarn, append(fields, zap.String("fix", r.Fix))...)
		default:
			log.Error(agent.MsgCheckFailed, append(fields, zap.String("fix", r.Fix))...)
		}
	}
	if agent.AnyFailed(results) {
		log.Error(agent.MsgAgentStop, zap.String("reason", "a start-up check failed; run `scim-agent check` for the fixes"))
		return exitError{1}
	}

	a, err := agent.Open(ctx, agent.Options{Config: cfg, Logger: log, DryRun: *dryRun, ApproveDeletes: *approve})
	if err != nil {
		if ctx.Err() != nil {
			log.Info(agent.MsgAgentStop, zap.String("reason", "stopped while starting"))
			return nil
		}
		log.Error(agent.MsgAgentStop, zap.Error(err))
		return exitError{1}
	}
	defer a.Close()
	if err := a.Run(ctx); err != nil {
		log.Error(agent.MsgAgentStop, zap.Error(err))
		return exitError{1}
	}
	return nil
}
