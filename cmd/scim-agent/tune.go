package main

import (
	"runtime"
	"runtime/debug"
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
