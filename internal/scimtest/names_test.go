package scimtest

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestFoldKeyAgreesWithEqualFold: two names share an index key exactly
// when the server's comparison (strings.EqualFold) calls them equal.
func TestFoldKeyAgreesWithEqualFold(t *testing.T) {
	words := []string{"alice", "ALICE", "Alice", "alicE", "bob", "kelvin", "\u212Aelvin", "Kelvin", "straße", "STRASSE", "strasse",
		"σίσυφος", "ΣΊΣΥΦΟΣ", "ςίσυφος", "ſam", "sam", "SAM", "", "a b", "A B", "ǅemal", "ǆemal", "Ǆemal", "user@Example.org", "USER@example.ORG"}
	for _, a := range words {
		for _, b := range words {
			if got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b); got != want {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v, EqualFold says %v", a, b, got, want)
			}
		}
	}
	// Every rune of the first planes against its own case variants.
	for r := rune(0); r < 0x2000; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		for _, v := range []string{strings.ToUpper(s), strings.ToLower(s), strings.ToTitle(s)} {
			if got, want := foldKey(s) == foldKey(v), strings.EqualFold(s, v); got != want {
				t.Errorf("rune %U: foldKey match with %q is %v, EqualFold says %v", r, v, got, want)
			}
		}
	}
}

// TestUserNameIndexFollowsEveryChange: a name is free again once its
// holder is renamed (PATCH, PUT, Edit), deleted or removed, and taken by
// its new holder; Seed's duplicates each hold it until the last is gone.
func TestUserNameIndexFollowsEveryChange(t *testing.T) {
	s := New(t, Options{})
	id := s.Seed(map[string]any{"userName": "Alice"})
	taken := func(name string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.takenLocked(map[string]any{"userName": name}, "")
	}
	steps := []struct {
		name      string
		change    func()
		free, own []string
	}{
		{"seeded", func() {}, []string{"bob"}, []string{"alice", "ALICE"}},
		{"edited", func() { s.Edit(id, func(a map[string]any) { a["userName"] = "Bob" }) }, []string{"alice"}, []string{"BOB"}},
		{"duplicate seeded", func() { s.Seed(map[string]any{"id": "dup", "userName": "bob"}) }, []string{"alice"}, []string{"bob"}},
		{"one duplicate removed", func() { s.Remove(id) }, []string{"alice"}, []string{"Bob"}},
		{"seed reuses an id", func() { s.Seed(map[string]any{"id": "dup", "userName": "carol"}) }, []string{"bob"}, []string{"Carol"}},
		{"last removed", func() { s.Remove("dup") }, []string{"carol", "bob", "alice"}, nil},
	}
	for _, st := range steps {
		st.change()
		for _, n := range st.free {
			if taken(n) {
				t.Errorf("%s: %q still taken", st.name, n)
			}
		}
		for _, n := range st.own {
			if !taken(n) {
				t.Errorf("%s: %q not taken", st.name, n)
			}
			if _, ok := s.UserByUserName(n); !ok {
				t.Errorf("%s: UserByUserName(%q) finds nobody", st.name, n)
			}
		}
	}
}

// TestRenamedOrDeletedNameIsFreeAgain: the requests that rename or delete
// an account release its userName for a new account.
func TestRenamedOrDeletedNameIsFreeAgain(t *testing.T) {
	srv := New(t, Options{})
	a := do(t, srv, "POST", "/Users", userBody("ann"))
	wantStatus(t, a, http.StatusCreated)
	wantStatus(t, do(t, srv, "PATCH", "/Users/"+a.str("id"), patchBody(map[string]any{"op": "replace", "path": "userName", "value": "anna"})), http.StatusOK)
	b := do(t, srv, "POST", "/Users", userBody("ANN"))
	wantStatus(t, b, http.StatusCreated)
	wantStatus(t, do(t, srv, "PUT", "/Users/"+b.str("id"), userBody("bea")), http.StatusOK)
	wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("Anna")), http.StatusConflict, "uniqueness")
	wantStatus(t, do(t, srv, "DELETE", "/Users/"+a.str("id"), ""), http.StatusNoContent)
	wantStatus(t, do(t, srv, "POST", "/Users", userBody("anna")), http.StatusCreated)
	wantStatus(t, do(t, srv, "POST", "/Users", userBody("ann")), http.StatusCreated)
	wantSCIMError(t, do(t, srv, "POST", "/Users", userBody("BEA")), http.StatusConflict, "uniqueness")
}
