package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
	"github.com/scim-agent/scim-agent/internal/scimtest"
	"github.com/scim-agent/scim-agent/internal/state"
)

// TestSIGKILLDuringTheInitialSyncLosesNothing: the sync saves records
// without waiting for the disk (all but the Creating record a POST
// needs first, saved a batch at a time): killed in the middle, the agent
// starts again with no position, finds the accounts its answered POSTs
// made (their Creating records are on disk) and posts none twice, and
// ends with a record for every user.
func TestSIGKILLDuringTheInitialSyncLosesNothing(t *testing.T) {
	const users = 600
	e := newEnv(t, "workers: 4")
	batch := make([]drupaltest.User, users)
	for i := range batch {
		batch[i] = drupaltest.User{Name: fmt.Sprintf("synced%04d", i), Mail: drupaltest.Str(fmt.Sprintf("synced%04d@example.org", i)), Status: 1}
	}
	if _, err := e.site.CreateMany(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	e.scim.Inject(scimtest.Fault{Latency: 5 * time.Millisecond})
	p := e.start()
	deadline := time.Now().Add(60 * time.Second)
	for e.scim.CountRequests("POST", "/Users") < users/3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if n := e.scim.UserCount(); n == users {
		t.Fatal("the sync was over at SIGKILL: the test proves nothing")
	}
	e.scim.ClearFaults()

	p = e.start()
	e.waitMatch(p)
	for name, n := range answeredPOSTs(e) {
		if n > 1 {
			t.Errorf("%s POSTed %d times with an answer: a duplicate POST after the restart", name, n)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	store, err := state.Open(e.statePath, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n := 0
	err = store.ForEachAccount(func(a state.Account) error {
		if a.SCIMID != "" && !a.Creating {
			n++
		}
		return nil
	})
	if err != nil || n != users {
		t.Fatalf("%d records with an account after the restart, %v; want %d", n, err, users)
	}
}
