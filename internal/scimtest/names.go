package scimtest

import (
	"cmp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// names is the store's index of userNames, compared as the server
// compares them (strings.EqualFold): a create or rename looks up who holds
// a name without walking every account, so the server answers as fast
// with 100,000 accounts as with 10, as a real server with an index does.
// Seed does not enforce uniqueness, so a name may have several holders.
type names map[string][]*user

// foldKey returns a key that is equal for two strings exactly when
// strings.EqualFold reports them equal: each rune is replaced by the
// smallest rune of its simple case-folding orbit (EqualFold compares rune
// by rune within those orbits).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The orbit of an ASCII letter is its two cases (k and s also hold
		// a non-ASCII rune, above both): the upper case is the smallest.
		return strings.ToUpper(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// userNameOf returns the userName attribute of attrs and whether it is a
// string.
func userNameOf(attrs map[string]any) (string, bool) {
	n, ok := attrs["userName"].(string)
	return n, ok
}

// add indexes u under its current userName.
func (n names) add(u *user) {
	name, ok := userNameOf(u.attrs)
	if !ok {
		return
	}
	k := foldKey(name)
	u.nameKey, u.named = k, true
	holders := n[k]
	i, _ := slices.BinarySearchFunc(holders, u.seq, func(h *user, seq uint64) int { return cmp.Compare(h.seq, seq) })
	n[k] = slices.Insert(holders, i, u)
}

// remove drops u from the index (under the name it was indexed with).
func (n names) remove(u *user) {
	if !u.named {
		return
	}
	holders := slices.DeleteFunc(n[u.nameKey], func(h *user) bool { return h == u })
	if len(holders) == 0 {
		delete(n, u.nameKey)
	} else {
		n[u.nameKey] = holders
	}
	u.nameKey, u.named = "", false
}

// holders returns the accounts holding name, oldest first.
func (n names) holders(name string) []*user {
	return n[foldKey(name)]
}

// setAttrsLocked replaces the attributes of a stored account, keeping the
// userName index in step.
func (s *Server) setAttrsLocked(u *user, attrs map[string]any) {
	s.names.remove(u)
	u.attrs = attrs
	s.names.add(u)
}

// removeLocked deletes the account with id from the store and the index.
func (s *Server) removeLocked(id string) bool {
	u, ok := s.users[id]
	if ok {
		s.names.remove(u)
		delete(s.users, id)
	}
	return ok
}
