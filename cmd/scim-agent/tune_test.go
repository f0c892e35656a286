package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// noMemoryLimit is the Go runtime's limit when none is set.
const noMemoryLimit = math.MaxInt64

// TestTuneGCLeavesTheOperatorsChoice: the agent's collector settings
// apply only where GOGC and GOMEMLIMIT are not set.
func TestTuneGCLeavesTheOperatorsChoice(t *testing.T) {
	percent, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(percent)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
	for _, tc := range []struct {
		name        string
		env         map[string]string
		set         func()
		wantPercent int
		wantLimit   int64
	}{
		{"nothing set", nil, func() { debug.SetGCPercent(100); debug.SetMemoryLimit(noMemoryLimit) }, gcPercent, gcMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "150"}, func() { debug.SetGCPercent(150); debug.SetMemoryLimit(noMemoryLimit) }, 150, gcMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "200MiB"}, func() { debug.SetGCPercent(100); debug.SetMemoryLimit(200 << 20) }, gcPercent, 200 << 20},
		{"both set", map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, func() { debug.SetGCPercent(-1); debug.SetMemoryLimit(1 << 30) }, -1, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set() // as the runtime read the environment at start
			p, l := tuneGC(func(k string) string { return tc.env[k] })
			if p != tc.wantPercent || l != tc.wantLimit {
				t.Fatalf("tuneGC = GOGC %d, limit %d; want %d, %d", p, l, tc.wantPercent, tc.wantLimit)
			}
		})
	}
}

// TestTuneProcsLeavesTheOperatorsChoice: the agent runs on one thread
// unless GOMAXPROCS is set.
func TestTuneProcsLeavesTheOperatorsChoice(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		set  int // what the runtime read from the environment at start
		want int
	}{
		{"nothing set", nil, 2, procs},
		{"GOMAXPROCS set", map[string]string{"GOMAXPROCS": "3"}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.set)
			if got := tuneProcs(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Fatalf("tuneProcs = %d; want %d", got, tc.want)
			}
		})
	}
}
