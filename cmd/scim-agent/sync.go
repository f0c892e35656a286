package main

import (
	"context"
	"encoding/json"
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
	fs := newFlagSet("sync", "sync --config FILE (--uid N | --name NAME | --mail MAIL | --role ID | --all) [--dry-run] [--explain [--json]]",
		"scim-agent sync --config /etc/scim-agent/config.yaml --name alice --dry-run --explain", stderr)
	configPath := fs.String("config", defaultConfig, "config file")
	var uids uintList
	fs.Var(&uids, "uid", "reconcile this uid (repeatable)")
	name := fs.String("name", "", "reconcile the user with this name")
	mail := fs.String("mail", "", "reconcile the users with this mail")
	var roles stringList
	fs.Var(&roles, "role", "reconcile this role's group (repeatable, or comma-separated)")
	all := fs.Bool("all", false, "reconcile every user and group, and every managed account or group whose user or role is gone")
	dryRun := fs.Bool("dry-run", false, "print the requests that would be sent; send nothing, save nothing")
	explain := fs.Bool("explain", false, "print each step of the reconciles of the users or roles given: Drupal rows, scope, desired resource, record, server, difference, decision, requests")
	asJSON := fs.Bool("json", false, "with --explain: print the explanations as one JSON document")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *explain && *all {
		fmt.Fprintln(stderr, "--explain explains the users or roles given: give --uid, --name, --mail or --role")
		fs.Usage()
		return errUsage
	}
	if *asJSON && !*explain {
		fmt.Fprintln(stderr, "--json goes with --explain")
		fs.Usage()
		return errUsage
	}
	selectors := 0
	for _, set := range []bool{len(uids) > 0, *name != "", *mail != "", len(roles) > 0, *all} {
		if set {
			selectors++
		}
	}
	if selectors != 1 {
		fmt.Fprintln(stderr, "give exactly one of --uid, --name, --mail, --role, --all")
		fs.Usage()
		return errUsage
	}
	return reconcileCommand(ctx, *configPath, stdout, stderr, func(ctx context.Context, r *drupal.Reader, store func() *state.Store, cfg *config.Config) (picked, error) {
		var err error
		var p picked
		switch {
		case *name != "":
			p.sel.UIDs, err = r.FindByName(ctx, *name)
		case *mail != "":
			p.sel.UIDs, err = r.FindByMail(ctx, *mail)
		case len(roles) > 0:
			p.sel.Roles = roles
		case *all:
			p.sel.UIDs, err = allUIDs(ctx, r, store, cfg.Provisioning.Excluded)
			p.allRoles = true
		default:
			p.sel.UIDs = uids
		}
		p.sel.Explain = *explain
		return p, err
	}, syncReport(*dryRun, *explain, *asJSON))
}

// syncReport says how sync reports: one line per result, or the
// explanations as text or JSON (which show a dry run's requests: its log
// lines are not needed then).
func syncReport(dryRun, explain, asJSON bool) report {
	switch {
	case explain && asJSON:
		return report{dryRun: dryRun, quiet: true, print: printExplanationsJSON}
	case explain:
		return report{dryRun: dryRun, quiet: true, print: printExplanations}
	}
	return report{dryRun: dryRun, print: printResults}
}

// report says how a command runs and reports its reconciles.
type report struct {
	dryRun bool
	// quiet keeps a dry run's request lines out of stderr: the output
	// shows them.
	quiet bool
	print func(io.Writer, []agent.Result) error
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

// picked is what a command reconciles: a selection, and what only the
// process holding the state file can list.
type picked struct {
	sel      agent.Selection
	allRoles bool // and every role provisioned or with a group
	parked   bool // and every parked uid and role
}

// selector picks what a command reconciles. store returns the state
// store when this process holds it, nil when a running agent does.
type selector func(ctx context.Context, r *drupal.Reader, store func() *state.Store, cfg *config.Config) (picked, error)

// reconcileCommand reconciles the selected uids and prints one line per
// user. When an agent is running (it holds the state file) the work is
// handed to it over its control socket, so no uid is reconciled twice at
// once; otherwise this process opens the state and does it itself.
func reconcileCommand(ctx context.Context, configPath string, stdout, stderr io.Writer, pick selector, rep report) error {
	dryRun := rep.dryRun
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	logLevel := "warn"
	if dryRun && !rep.quiet {
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
		p, perr := pick(ctx, reader, func() *state.Store { return nil }, cfg)
		if perr != nil {
			return perr
		}
		req := agent.SyncRequest{UIDs: p.sel.UIDs, Roles: p.sel.Roles, AllRoles: p.allRoles, Parked: p.parked, DryRun: dryRun, Explain: p.sel.Explain}
		if p.parked {
			results, err = admin.retry(ctx, req)
		} else {
			results, err = admin.sync(ctx, req)
		}
		if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		defer a.Close()
		p, perr := pick(ctx, a.Reader(), a.Store, cfg)
		if perr != nil {
			return perr
		}
		if p.sel, err = a.Complete(ctx, p.sel, p.allRoles, p.parked); err != nil {
			return err
		}
		if results, err = a.ReconcileAll(ctx, p.sel, dryRun); err != nil {
			return err
		}
	}
	return rep.print(stdout, results)
}

// printExplanations writes each user's reconcile step by step, and
// fails when any failed.
func printExplanations(w io.Writer, results []agent.Result) error {
	failed := 0
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		var err error
		switch {
		case r.ExplainRole != nil:
			err = r.ExplainRole.WriteText(w)
		case r.Explain != nil:
			err = r.Explain.WriteText(w)
		case r.Role != "":
			fmt.Fprintf(w, "role %s: %s: %s (no explanation)\n", r.Role, r.Outcome, r.Detail)
		default:
			fmt.Fprintf(w, "uid %d: %s: %s (no explanation)\n", r.UID, r.Outcome, r.Detail)
		}
		if err != nil {
			return err
		}
		if r.Outcome == agent.Failed {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "\n%d of %d failed\n", failed, len(results))
		return exitError{1}
	}
	return nil
}

// printExplanationsJSON writes the explanations as one JSON document,
// {"explanations": [...]} (a user's carries "uid", a role's "role"), and
// fails when any reconcile failed.
func printExplanationsJSON(w io.Writer, results []agent.Result) error {
	doc := struct {
		Explanations []any `json:"explanations"`
	}{Explanations: []any{}}
	failed := false
	for _, r := range results {
		var e any
		switch decision := (agent.DecisionStep{Outcome: r.Outcome, Detail: r.Detail}); {
		case r.ExplainRole != nil:
			e = r.ExplainRole
		case r.Explain != nil:
			e = r.Explain
		case r.Role != "":
			e = &agent.RoleExplanation{Role: r.Role, Decision: decision}
		default:
			e = &agent.Explanation{UID: r.UID, Decision: decision}
		}
		doc.Explanations = append(doc.Explanations, e)
		failed = failed || r.Outcome == agent.Failed
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// printResults writes one line per user and fails when any failed.
func printResults(w io.Writer, results []agent.Result) error {
	failed := 0
	for _, r := range results {
		line := fmt.Sprintf("%-11s uid=%d", r.Outcome, r.UID)
		if r.Role != "" {
			line = fmt.Sprintf("%-11s role=%s", r.Outcome, r.Role)
		}
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

// stringList is a repeatable flag that also takes a comma-separated
// list: --role editor --role staff or --role editor,staff.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

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
