package phpserial

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// encode is PHP's serialize() for the values Decode returns, to build
// fixtures and to check round trips.
func encode(v any) string {
	switch x := v.(type) {
	case nil:
		return "N;"
	case bool:
		if x {
			return "b:1;"
		}
		return "b:0;"
	case int64:
		return "i:" + strconv.FormatInt(x, 10) + ";"
	case float64:
		return "d:" + strconv.FormatFloat(x, 'g', -1, 64) + ";"
	case string:
		return fmt.Sprintf("s:%d:\"%s\";", len(x), x)
	case Array:
		var b strings.Builder
		fmt.Fprintf(&b, "a:%d:{", len(x))
		for _, p := range x {
			b.WriteString(encode(p.Key) + encode(p.Value))
		}
		return b.String() + "}"
	}
	panic(fmt.Sprintf("encode %T", v))
}

// A role as Drupal 10.5 writes it into config.data (checked in a real
// site's binlog), with a non-ASCII label: s:N: counts bytes.
const editorRole = `a:9:{s:4:"uuid";s:36:"bf7e62bb-54a5-4b73-a33e-3a36d0d0a1c3";s:8:"langcode";s:2:"en";s:6:"status";b:1;s:12:"dependencies";a:0:{}s:2:"id";s:6:"editor";s:5:"label";s:10:"Rédaction";s:6:"weight";i:2;s:8:"is_admin";N;s:11:"permissions";a:2:{i:0;s:12:"access; {x}"";i:1;s:17:"administer nodes;";}}`

func TestDecodeARole(t *testing.T) {
	v, err := Decode([]byte(editorRole))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := v.(Array)
	if !ok || len(a) != 9 {
		t.Fatalf("Decode = %#v, want an array of 9", v)
	}
	if id, _ := a.String("id"); id != "editor" {
		t.Errorf("id = %q", id)
	}
	if label, _ := a.String("label"); label != "Rédaction" {
		t.Errorf("label = %q, want Rédaction (10 bytes)", label)
	}
	if w, _ := a.Get("weight"); w != int64(2) {
		t.Errorf("weight = %#v", w)
	}
	if s, _ := a.Get("status"); s != true {
		t.Errorf("status = %#v", s)
	}
	if adm, ok := a.Get("is_admin"); !ok || adm != nil {
		t.Errorf("is_admin = %#v, %v", adm, ok)
	}
	perms, _ := a.Get("permissions")
	if p, _ := perms.(Array); len(p) != 2 || p[0].Key != int64(0) || p[0].Value != `access; {x}"` {
		t.Errorf("permissions = %#v", perms)
	}
	if got := encode(v); got != editorRole {
		t.Errorf("round trip:\n%s\nwant\n%s", got, editorRole)
	}
}

func TestDecodeRefusesWhatIsNotStrictlyValid(t *testing.T) {
	for _, in := range []string{
		``, `N`, `b:2;`, `i:;`, `i:01;`, `i:+1;`, `i:-0;`, `d:x;`,
		`s:99:"x";`, `s:-1:"";`, `s:1:"xy";`, `s:1:"x"`, `s:2:"x";`, `s:3:"a"b";x`,
		`a:1:{s:5:"label";s:1:"x";}trailing`, `a:2:{s:5:"label";s:1:"x";}`, `a:1:{}`,
		`a:1:{d:1.5;N;}`, `a:1:{a:0:{}N;}`, `a:99999999999:{}`, `a:1:{i:0;N;`,
		`O:8:"stdClass":0:{}`, `r:1;`, `E:7:"Foo:Bar";`, `C:3:"Foo":0:{}`,
		strings.Repeat("a:1:{i:0;", MaxDepth+1) + "N;" + strings.Repeat("}", MaxDepth+1),
	} {
		if v, err := Decode([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Decode(%q) = %#v, %v; want ErrSyntax", in, v, err)
		}
	}
}

func TestDecodeScalars(t *testing.T) {
	for in, want := range map[string]any{
		`N;`: nil, `b:0;`: false, `b:1;`: true, `i:-42;`: int64(-42), `i:0;`: int64(0),
		`d:0.5;`: 0.5, `d:-1.25E+25;`: -1.25e25, `d:INF;`: math.Inf(1), `s:0:"";`: "",
		`s:5:"a";b"";`: `a";b"`, `a:0:{}`: Array{},
	} {
		got, err := Decode([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	if got, err := Decode([]byte(`d:NAN;`)); err != nil || !math.IsNaN(got.(float64)) {
		t.Errorf("Decode(d:NAN;) = %v, %v", got, err)
	}
}

// FuzzDecode: no input panics; what decodes, encodes back to itself.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{editorRole, `a:1:{s:5:"label";s:1:"x";}`, `s:3:"a"b";`, `a:1:{i:0;a:0:{}}`, `d:1.5;`, `N;`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		if hasFloat(v) {
			return // floats print differently than PHP wrote them
		}
		again, err := Decode([]byte(encode(v)))
		if err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("round trip of %q: %#v, %v", data, again, err)
		}
	})
}

func hasFloat(v any) bool {
	switch x := v.(type) {
	case float64:
		return true
	case Array:
		for _, p := range x {
			if hasFloat(p.Value) {
				return true
			}
		}
	}
	return false
}
