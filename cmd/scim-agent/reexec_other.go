//go:build !linux

package main

// relaxSysmon does nothing off Linux: the agent runs with the Go
// runtime's default sysmon there.
func relaxSysmon(args []string) {}
