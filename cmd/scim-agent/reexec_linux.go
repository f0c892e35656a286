package main

import (
	"os"
	"syscall"
)

// relaxSysmon starts the agent again, in this same process, with
// relaxedSysmon in its environment: the Go runtime reads GODEBUG only as a
// process starts. It returns only when the process keeps running as it is:
// the command does not provision, GODEBUG already sets schedtrace, or the
// exec failed (the agent then runs with the runtime's default sysmon,
// using more CPU, and loses nothing).
func relaxSysmon(args []string) {
	if !relaxesSysmon(args) {
		return
	}
	env, again := relaxedSysmonEnv(os.Environ())
	if !again {
		return
	}
	// /proc/self/exe is this binary even when its file was replaced or
	// removed since it started (an upgrade in place).
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}
