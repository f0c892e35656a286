package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// Every line's time is UTC with milliseconds, whatever the zone of the
// time logged, in both formats.
func TestTimeIsUTCWithMillis(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	at := time.Date(2026, 12, 2, 19, 20, 1, 234_567_000, berlin)
	want := "2026-12-02T18:20:01.234Z"
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New("info", format, &buf)
			if err != nil {
				t.Fatal(err)
			}
			log.WithOptions(zap.WithClock(fixedClock(at))).Info("hello")
			line := strings.TrimSpace(buf.String())
			var got string
			if format == "json" {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				got, _ = m["ts"].(string)
			} else {
				got, _, _ = strings.Cut(line, "\t")
			}
			if got != want {
				t.Errorf("time %q in %q, want %q", got, line, want)
			}
		})
	}
}

func TestBadLevelAndFormat(t *testing.T) {
	for _, tc := range []struct{ level, format, want string }{
		{"loud", "json", "log.level"},
		{"info", "xml", `log.format: "xml"`},
	} {
		if _, err := New(tc.level, tc.format, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %q) = %v, want an error naming %s", tc.level, tc.format, err, tc.want)
		}
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time                         { return time.Time(c) }
func (c fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }
