package mapping

import (
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// byJSON is the fingerprint as the state files have always held it: the
// FNV-1a hash of json.Marshal's encoding.
func byJSON(v any) uint64 {
	b, _ := json.Marshal(v)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// TestFingerprintEncodingIsEncodingJSONs: the fingerprints of stored
// records stay valid, for every byte, the runes encoding/json escapes,
// invalid UTF-8, and every value shape a mapping holds.
func TestFingerprintEncodingIsEncodingJSONs(t *testing.T) {
	var values []any
	for c := 0; c < 256; c++ {
		values = append(values, string([]byte{byte(c)}), "a"+string([]byte{byte(c)})+"z")
	}
	for _, r := range []rune{0x7f, 0x80, 0xff, 0x2027, 0x2028, 0x2029, 0x202a, 0xfffd, 0x10ffff, 0xd7ff, 0xe000} {
		values = append(values, string(r), "x"+string(r)+"y")
	}
	values = append(values, "", "Zoë", "user@example.org", `<script>alert("x&y")</script>`, "\xed\xa0\x80", "\xf0\x9f\x98", "tab\there",
		nil, true, false, int64(0), int64(-42), 7, []string(nil), []string{}, []string{"editor", "a<b"}, []any{"x", true, nil, int64(3)},
		[]map[string]any{{"value": "a@example.org", "type": "work", "primary": true}}, []map[string]any(nil),
		map[string]any{"z": 1, "a": map[string]any{"y": "ü", "b": []any{}}}, map[string]any(nil), 3.5, json.Number("12"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(12) {
			switch rng.IntN(4) {
			case 0:
				b.WriteByte(byte(rng.IntN(128)))
			case 1:
				b.WriteByte(byte(128 + rng.IntN(128))) // often invalid UTF-8
			default:
				b.WriteRune(rune(rng.IntN(0x30000)))
			}
		}
		values = append(values, b.String())
	}
	for _, v := range values {
		if got, want := fingerprint(v), byJSON(v); got != want {
			enc, _ := json.Marshal(v)
			t.Fatalf("fingerprint(%#v) = %x, json.Marshal gives %s (%x): %s", v, got, enc, want, appendJSON(nil, v))
		}
	}
	if !utf8.ValidString(string(appendJSON(nil, "\xff"))) {
		t.Fatal("invalid UTF-8 passed through")
	}
}

func BenchmarkFingerprint(b *testing.B) {
	v := []map[string]any{{"value": "user000001@example.org", "type": "work", "primary": true}}
	b.ReportAllocs()
	for b.Loop() {
		fingerprint(v)
		fingerprint("user000001")
	}
}
