package binlog

import (
	"context"
	"testing"

	"github.com/scim-agent/scim-agent/internal/drupaltest"
)

// TestNewStreamForgetsColumnNames: without FULL metadata the column names
// read from information_schema are cached on the Streamer. A schema change
// made while no stream ran (the agent streams on from CurrentPosition after
// a purged position, skipping it) must not leave a later stream with stale
// names: it would fail on every event of the table, and the agent would
// answer with full syncs for ever.
func TestNewStreamForgetsColumnNames(t *testing.T) {
	ctx := context.Background()
	f := newMinimalMetadataFixture(t)

	r := f.stream(t, f.pos(t), nil)
	u1, err := f.site.Create(ctx, drupaltest.User{Name: "one"})
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, f.pos(t), u1) // names of users_field_data now cached
	r.stop(t)

	// Not seen by any stream: the next one starts after it, as follow()
	// does after a purged position.
	f.exec(t, "ALTER TABLE users_field_data ADD COLUMN x INT")

	r2 := f.stream(t, f.pos(t), nil)
	u2, err := f.site.Create(ctx, drupaltest.User{Name: "two"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-r2.notices:
		checkNotice(t, n, f.pos(t), u2)
	case <-r2.done:
		t.Fatalf("a stream started after the ALTER failed on an event written after it: %v", r2.err)
	}
}
