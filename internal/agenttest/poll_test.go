package agenttest

import (
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	for _, tt := range []struct {
		name      string
		holdsFrom int // the look at which cond starts to hold; 0: never
		want      bool
		wantLooks int // 0: any number
	}{
		{"holds at once", 1, true, 1},
		{"holds at the third look", 3, true, 3},
		{"never holds", 0, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			looks := 0
			got := Poll(50*time.Millisecond, func() bool {
				looks++
				return tt.holdsFrom != 0 && looks >= tt.holdsFrom
			})
			if got != tt.want {
				t.Fatalf("Poll = %v, want %v", got, tt.want)
			}
			if tt.wantLooks != 0 && looks != tt.wantLooks {
				t.Fatalf("cond looked at %d times, want %d", looks, tt.wantLooks)
			}
			if !tt.want && looks < 2 {
				t.Fatalf("cond looked at %d times before giving up, want it polled", looks)
			}
		})
	}
}
