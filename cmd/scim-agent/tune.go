package main

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// The garbage collector of a running agent, unless the environment sets
// it (GOGC, GOMEMLIMIT, read by the Go runtime itself).
const (
	// gcPercent lets the heap grow to 5 times what is live before a
	// collection, not 2: the agent's live heap is small (~10 MiB while it
	// provisions) and each user's reconcile allocates tens of KiB, so the
	// default collected every few hundred users: a quarter of the agent's
	// CPU per provisioned user went to the collector.
	gcPercent = 400
	// gcMemoryLimit bounds what that headroom costs: the collector runs
	// earlier whenever the agent's memory would pass it. 100,000 managed
	// users and 100,000 pending changes keep ~25 MiB live, and the RSS
	// with them ~52 MiB (make bench). A site whose live heap outgrows it
	// (far larger backlogs, or millions of users) collects more often,
	// not running out; raise it with GOMEMLIMIT, as the deploy examples
	// do under their container limits.
	gcMemoryLimit = 32 << 20
)

// tuneGC sets gcPercent and gcMemoryLimit where getenv says the operator
// did not choose, and returns what the collector now uses.
func tuneGC(getenv func(string) string) (percent int, limit int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(gcMemoryLimit)
	}
	percent = debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	return percent, debug.SetMemoryLimit(-1)
}

// procs is the number of threads that run the agent's Go code at once
// (GOMAXPROCS), unless the environment sets it. The agent's work is
// waiting: on MariaDB, on the SCIM server, on fsync. With the default (a
// thread per core) every answer woke a second thread to run the
// goroutine it readied, and thread wake-ups are much of the agent's CPU
// (README, Performance): one thread spent 12-30% less CPU per provisioned user at the same rate
// (BenchmarkProvision, README), and leaves the other cores to Drupal,
// MariaDB and the SCIM server beside it. System calls and the kernel's
// network work run on other threads still. A site that wants more (the
// agent's CPU saturated at one core while the SCIM server waits) sets
// GOMAXPROCS.
const procs = 1

// tuneProcs sets procs where getenv says the operator did not choose,
// and returns what the runtime now uses.
func tuneProcs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(procs)
	}
	return runtime.GOMAXPROCS(0)
}

// relaxedSysmon is the GODEBUG setting under which the Go runtime's
// monitor thread (sysmon) slows down to one wake-up every 10 ms while the
// agent works, instead of one every 20 µs.
//
// Why: sysmon sleeps deeply while every thread of the agent is idle, and
// the first system call after that wakes it and resets its period to
// 20 µs (golang/go#18236: the period is hard-coded). The agent is idle
// between every two answers of the SCIM server, so each answer cost a
// futex wake-up and, for as long as the agent then ran, a context switch
// every 20 µs: 16% of its CPU, most of its context switches
// (BenchmarkProvision; README, Performance). A schedtrace period keeps
// sysmon out of that deep sleep, so its period grows to 10 ms and stays
// there; it still drops to 20 µs when it has work (a thread blocked in a
// system call for a whole period, as in a slow fsync), and ramps up again.
//
// What it costs: the runtime prints one "SCHED" line on standard error
// every 2,147,483,647 ms (24.8 days of the machine's uptime; at start if
// the machine has been up longer), never on standard output, where the
// logs go. An operator who sets schedtrace in GODEBUG (schedtrace=0 for
// the runtime's default behaviour) keeps that choice.
const relaxedSysmon = "schedtrace=2147483647"

// relaxedSysmonEnv returns environ with relaxedSysmon added to GODEBUG,
// and false when GODEBUG already sets schedtrace (the operator chose, or
// this process is the one started with it).
func relaxedSysmonEnv(environ []string) ([]string, bool) {
	out := make([]string, 0, len(environ)+1)
	godebug, seen := "", false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			// The first one is what the runtime reads (os.Getenv too).
			if !seen {
				godebug, seen = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if name, _, _ := strings.Cut(setting, "="); strings.TrimSpace(name) == "schedtrace" {
			return environ, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+relaxedSysmon), true
}

// relaxesSysmon reports whether the command given by args provisions for
// long enough to be worth starting again under relaxedSysmon: `run` and
// `sync`.
func relaxesSysmon(args []string) bool {
	return len(args) > 0 && (args[0] == "run" || args[0] == "sync")
}
