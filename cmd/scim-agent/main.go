// Command scim-agent keeps a SCIM 2.0 server's Users in step with a Drupal
// site's user accounts, and its Groups with the site's roles, by tailing
// the site database's binary log.
//
// Usage:
//
//	scim-agent <command> [arguments]
//
// Run `scim-agent help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "provision every change, until stopped", runCommand},
		{"check", "verify the database, binlog settings, grants and SCIM server", checkCommand},
		{"sync", "reconcile chosen users (or all) now and exit", syncCommand},
		{"status", "show position, lag, queue, parked users and counts", statusCommand},
		{"retry", "reconcile parked users now", retryCommand},
		{"approve-deletes", "release a tripped deletion guard", approveDeletesCommand},
		{"version", "print the version", versionCommand},
	}
}

// exitError carries an exit code through to main.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	relaxSysmon(os.Args[1:])
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		cancel() // first signal: graceful shutdown
		<-signals
		fmt.Fprintln(os.Stderr, "scim-agent: second signal, exiting at once")
		os.Exit(130)
	}()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one command and returns the process exit code: 0 success, 1
// failure, 2 bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return Main(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "scim-agent %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "scim-agent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "scim-agent keeps a SCIM 2.0 server's Users in step with a Drupal site's users,")
	fmt.Fprintln(w, "and its Groups with the site's roles (groups.enabled), by tailing the site")
	fmt.Fprintln(w, "database's row-based binary log.")
	fmt.Fprintln(w, "\nUsage:\n\n\tscim-agent <command> [arguments]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `scim-agent <command> -h` for a command's arguments and an example.")
}

// newFlagSet returns a flag set whose -h prints the usage line, the
// example and the flags.
func newFlagSet(name, usageLine, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: scim-agent %s\n\nExample:\n\n\t%s\n\nFlags:\n", usageLine, example)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning flag errors into a usage exit.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// defaultConfig is where the packaged agent finds its config.
const defaultConfig = "/etc/scim-agent/config.yaml"
