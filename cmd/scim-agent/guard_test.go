package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A sync with no agent running holds deletions past max_deletes: every
// held one must be in the state file, so that approve-deletes and the
// next start send them all.
func TestSyncWithoutAnAgentKeepsEveryHeldDeletion(t *testing.T) {
	e := newEnv(t, "  max_deletes: 1")
	for i := 0; i < 4; i++ {
		e.create(fmt.Sprintf("held%d", i), "")
	}
	if out, _, code := e.run("sync", "--config", e.config, "--all"); code != 0 || strings.Count(out, "created ") != 4 {
		t.Fatalf("sync --all: exit %d\n%s", code, out)
	}
	ctx := context.Background()
	for uid := uint32(1); uid <= 4; uid++ {
		if err := e.site.Delete(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	out, _, code := e.run("sync", "--config", e.config, "--all")
	if code != 0 || strings.Count(out, "deleted ") != 1 || strings.Count(out, "held ") != 3 {
		t.Fatalf("sync --all after 4 deletions with max_deletes 1: exit %d\n%s", code, out)
	}
	if out, _, code := e.run("status", "--config", e.config); code != 0 || !strings.Contains(out, "TRIPPED") || !strings.Contains(out, "3 held") {
		t.Fatalf("status with no agent running, want the 3 held deletions: exit %d\n%s", code, out)
	}
	if out, _, code := e.run("approve-deletes", "--config", e.config); code != 0 {
		t.Fatalf("approve-deletes: exit %d\n%s", code, out)
	}
	p := e.start()
	e.waitMatch(p)
	if n := len(e.scim.Users()); n != 0 {
		t.Fatalf("%d accounts of deleted users left on the server", n)
	}
}
