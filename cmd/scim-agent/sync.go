package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/scim-agent/scim-agent/agent"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"github.com/scim-agent/scim-agent/internal/logging"
	"github.com/scim-agent/scim-agent/internal/state"
)

func syncCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sync", "sync --config FILE (--uid N | --name NAME | --mail MAIL | --all) [--dry-run]",
		"scim-agent sync --config /etc/scim-agent/config.yaml --name alice --dry-run", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	var uids uintList
	fs.Var(&uids, "uid", "reconcile this uid (repeatable)")
	name := fs.String("name", "", "reconcile the user with this name")
	mail := fs.String("mail", "", "reconcile the users with this mail")
	all := fs.Bool("all", false, "reconcile every user, and every managed account whose user is gone")
	dryRun := fs.Bool("dry-run", false, "print the requests that would be sent; send nothing, save nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	selectors := 0
	for _, set := range []bool{len(uids) > 0, *name != "", *mail != "", *all} {
		if set {
			selectors++
		}
	}
	if selectors != 1 {
		fmt.Fprintln(stderr, "give exactly one of --uid, --name, --mail, --all")
		fs.Usage()
		return errUsage
	}
	return reconcileCommand(ctx, *configPath, stdout, stderr, func(ctx context.Context, r *drupal.Reader, store func() *state.Store, cfg *config.Config) ([]uint32, error) {
		switch {
		case *name != "":
			return r.FindByName(ctx, *name)
		case *mail != "":
			return r.FindByMail(ctx, *mail)
		case *all:
			return allUIDs(ctx, r, store, cfg.Provisioning.Excluded)
		}
		return uids, nil
	}, *dryRun)
}

// allUIDs lists every Drupal uid and every uid the state file knows,
// less the excluded ones.
func allUIDs(ctx context.Context, r *drupal.Reader, store func() *state.Store, excluded func(uint32) bool) ([]uint32, error) {
	seen := map[uint32]bool{}
	var out []uint32
	for page, err := range r.UIDPages(ctx, 1000) {
		if err != nil {
			return nil, err
		}
		for _, uid := range page {
			seen[uid] = true
			if !excluded(uid) {
				out = append(out, uid)
			}
		}
	}
	if s := store(); s != nil {
		err := s.ForEachAccount(func(a state.Account) error {
			if !seen[a.UID] && !excluded(a.UID) {
				out = append(out, a.UID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// selector picks the uids a command reconciles. store returns the state
// store when this process holds it, nil when a running agent does.
type selector func(ctx context.Context, r *drupal.Reader, store func() *state.Store, cfg *config.Config) ([]uint32, error)

// reconcileCommand reconciles the selected uids and prints one line per
// user. When an agent is running (it holds the state file) the work is
// handed to it over its control socket, so no uid is reconciled twice at
// once; otherwise this process opens the state and does it itself.
func reconcileCommand(ctx context.Context, configPath string, stdout, stderr io.Writer, pick selector, dryRun bool) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	logLevel := "warn"
	if dryRun {
		logLevel = "info" // the dry-run lines are the point
	}
	log, err := logging.New(logLevel, cfg.Log.Format, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	a, err := agent.Open(ctx, agent.Options{Config: cfg, Logger: log, DryRun: dryRun, StateLockTimeout: 200 * time.Millisecond})
	var results []agent.Result
	switch {
	case errors.Is(err, state.ErrLocked):
		admin := newAdminClient(cfg)
		reader, closeReader, rerr := agent.OpenReader(cfg)
		if rerr != nil {
			return rerr
		}
		defer closeReader()
		uids, perr := pick(ctx, reader, func() *state.Store { return nil }, cfg)
		switch {
		case errors.Is(perr, errParkedRemote):
			results, err = admin.retry(ctx, agent.SyncRequest{Parked: true})
		case perr != nil:
			return perr
		default:
			results, err = admin.sync(ctx, uids, dryRun)
		}
		if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		defer a.Close()
		uids, perr := pick(ctx, a.Reader(), a.Store, cfg)
		if perr != nil {
			return perr
		}
		if results, err = a.ReconcileAll(ctx, uids, dryRun); err != nil {
			return err
		}
	}
	return printResults(stdout, results)
}

// printResults writes one line per user and fails when any failed.
func printResults(w io.Writer, results []agent.Result) error {
	failed := 0
	for _, r := range results {
		line := fmt.Sprintf("%-11s uid=%d", r.Outcome, r.UID)
		if r.UserName != "" {
			line += fmt.Sprintf(" userName=%q", r.UserName)
		}
		if r.SCIMID != "" {
			line += " scim_id=" + r.SCIMID
		}
		if r.Detail != "" {
			line += " detail=" + fmt.Sprintf("%q", r.Detail)
		}
		fmt.Fprintln(w, line)
		if r.Outcome == agent.Failed {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "%d of %d failed\n", failed, len(results))
		return exitError{1}
	}
	return nil
}

// errParkedRemote tells reconcileCommand to let the running agent pick
// its parked uids itself.
var errParkedRemote = errors.New("the running agent picks its parked uids")

// uintList is a repeatable uid flag that also takes a comma-separated
// list: --uid 12 --uid 13 or --uid 12,13.
type uintList []uint32

func (l *uintList) String() string { return fmt.Sprint(*l) }

func (l *uintList) Set(s string) error {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a uid (a whole number from 0 to 4294967295)", part)
		}
		out = append(out, uint32(v))
	}
	*l = append(*l, out...)
	return nil
}
