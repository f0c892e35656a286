package binlog

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// RoleConfigPrefix starts the name of a role's row in Drupal's config
// table (collection ""): user.role.<machine name>.
const RoleConfigPrefix = "user.role."

// roleChanges tracks which roles one transaction touched: a role's
// config row written, or its membership rows changed. Drupal rewrites a
// user's user__roles rows (DELETE all, INSERT again) when any changed, so
// a membership row deleted and inserted again for the same uid is no
// change of that role.
type roleChanges struct {
	touched map[string]struct{}
	balance map[string]int // role + "\x00" + uid → rows inserted minus rows deleted
}

// touch marks role as changed.
func (r *roleChanges) touch(role string) {
	if r.touched == nil {
		r.touched = map[string]struct{}{}
	}
	r.touched[role] = struct{}{}
}

// member counts a membership row of role and uid inserted (delta 1) or
// deleted (-1).
func (r *roleChanges) member(role string, uid uint32, delta int) {
	if r.balance == nil {
		r.balance = map[string]int{}
	}
	r.balance[role+"\x00"+strconv.FormatUint(uint64(uid), 10)] += delta
}

// list returns the roles touched, sorted.
func (r *roleChanges) list() []string {
	for k, n := range r.balance {
		if n != 0 {
			role, _, _ := strings.Cut(k, "\x00")
			r.touch(role)
		}
	}
	if len(r.touched) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(r.touched))
}

func (r *roleChanges) reset() {
	clear(r.touched)
	r.balance = nil
}

// configRole returns the role a row of the config table is, if it is
// one: collection "" and a name starting RoleConfigPrefix. Every other
// configuration object is skipped; its data is never read.
func (p *plan) configRole(row []any) (string, bool) {
	if p.collection >= len(row) || p.name >= len(row) || toString(row[p.collection]) != "" {
		return "", false
	}
	name := toString(row[p.name])
	if len(name) <= len(RoleConfigPrefix) || !strings.EqualFold(name[:len(RoleConfigPrefix)], RoleConfigPrefix) {
		return "", false
	}
	return name[len(RoleConfigPrefix):], true
}

// memberRole returns the role a membership row names (Table.RoleColumn).
func (p *plan) memberRole(row []any) (string, bool) {
	if p.role < 0 || p.role >= len(row) || row[p.role] == nil {
		return "", false
	}
	return toString(row[p.role]), true
}

// configRow records a row of the config table: the role it is, if any,
// changed (an UPDATE that rewrote it unchanged is no change).
func (a *assembler) configRow(p *plan, before, after []any) {
	if before != nil && after != nil && sameValues(before, after) {
		return
	}
	for _, row := range [][]any{before, after} {
		if role, ok := p.configRole(row); ok {
			a.tx.roles.touch(role)
		}
	}
}

// sameValues reports whether two row images hold the same values.
func sameValues(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	all := make([]int, len(a))
	for i := range all {
		all[i] = i
	}
	return string(appendProjection(nil, a, all)) == string(appendProjection(nil, b, all))
}
