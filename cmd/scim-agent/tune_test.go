package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
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

// TestRelaxedSysmonEnv: GODEBUG gains relaxedSysmon, beside what it
// already holds, unless it sets schedtrace.
func TestRelaxedSysmonEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string
		again   bool
	}{
		{"no GODEBUG", []string{"HOME=/root", "SCIM_TOKEN=x"}, []string{"HOME=/root", "SCIM_TOKEN=x", "GODEBUG=" + relaxedSysmon}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + relaxedSysmon}, true},
		{"other settings kept", []string{"GODEBUG=http2client=0,madvdontneed=1"}, []string{"GODEBUG=http2client=0,madvdontneed=1," + relaxedSysmon}, true},
		{"operator's schedtrace=0", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"operator's own period", []string{"GODEBUG=gctrace=1, schedtrace=1000"}, []string{"GODEBUG=gctrace=1, schedtrace=1000"}, false},
		{"already started again", []string{"A=1", "GODEBUG=" + relaxedSysmon}, []string{"A=1", "GODEBUG=" + relaxedSysmon}, false},
		{"twice: the first is the runtime's", []string{"GODEBUG=schedtrace=0", "GODEBUG=gctrace=1"}, []string{"GODEBUG=schedtrace=0", "GODEBUG=gctrace=1"}, false},
		{"twice, no schedtrace: one left", []string{"GODEBUG=gctrace=1", "B=2", "GODEBUG=schedtrace=0"}, []string{"B=2", "GODEBUG=gctrace=1," + relaxedSysmon}, true},
		{"a name that only ends in schedtrace", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + relaxedSysmon}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, again := relaxedSysmonEnv(tc.environ)
			if again != tc.again || !slices.Equal(got, tc.want) {
				t.Fatalf("relaxedSysmonEnv(%q) = %q, %v; want %q, %v", tc.environ, got, again, tc.want, tc.again)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"run", "--config", "c.yaml"}, true},
		{[]string{"sync", "--all"}, true},
		{[]string{"status"}, false},
		{[]string{"check"}, false},
		{nil, false},
	} {
		if got := relaxesSysmon(tc.args); got != tc.want {
			t.Errorf("relaxesSysmon(%q) = %v; want %v", tc.args, got, tc.want)
		}
	}
}

// TestRunStartsAgainWithARelaxedSysmon: `scim-agent run` is, once
// ready, the same process (the supervisor's pid) running with
// relaxedSysmon in its GODEBUG, beside the operator's own settings; an
// operator's schedtrace is kept as it is.
func TestRunStartsAgainWithARelaxedSysmon(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    string
	}{
		{"default", []string{"GODEBUG=http2client=0"}, "GODEBUG=http2client=0," + relaxedSysmon},
		{"operator's choice", []string{"GODEBUG=schedtrace=0"}, "GODEBUG=schedtrace=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			p := e.startWith(tc.environ)
			e.waitReady(p)
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			var godebug []string
			for _, kv := range strings.Split(string(raw), "\x00") {
				if strings.HasPrefix(kv, "GODEBUG=") {
					godebug = append(godebug, kv)
				}
			}
			if !slices.Equal(godebug, []string{tc.want}) {
				t.Fatalf("the running agent's GODEBUG is %q; want %q", godebug, tc.want)
			}
		})
	}
}
