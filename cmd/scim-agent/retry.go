package main

import (
	"context"
	"fmt"
	"io"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/state"
)

func retryCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("retry", "retry --config FILE (--uid N | --parked)",
		"scim-agent retry --config /etc/scim-agent/config.yaml --parked", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	var uids uintList
	fs.Var(&uids, "uid", "reconcile this uid now (repeatable)")
	parked := fs.Bool("parked", false, "reconcile every parked uid and group now")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (len(uids) > 0) == *parked {
		fmt.Fprintln(stderr, "give exactly one of --uid, --parked")
		fs.Usage()
		return errUsage
	}
	return reconcileCommand(ctx, *configPath, stdout, stderr, func(context.Context, *drupal.Reader, func() *state.Store, *config.Config) (picked, error) {
		// Parked uids and roles are listed by whoever holds the state file.
		return picked{sel: agent.Selection{UIDs: uids}, parked: *parked}, nil
	}, report{print: printResults})
}
