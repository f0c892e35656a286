package binlog

import (
	"bytes"
	"strings"
)

// nameRule is how the server compares database and table names, from
// @@lower_case_table_names: 0 stores them as given and compares them
// exactly; 1 stores them in lower case (and so logs them in lower case,
// whatever case a statement or the DSN used) and compares them
// case-insensitively; 2 stores them as given and compares them
// case-insensitively. The stream must compare names the same way, or a
// DSN naming DrupalSite never matches the drupalsite the binlog carries
// and every change is dropped.
type nameRule struct {
	// setting is the server's lower_case_table_names.
	setting int
	// fold is true when names compare case-insensitively.
	fold bool
}

// nameRuleFor returns the rule of a lower_case_table_names value.
func nameRuleFor(setting int) nameRule {
	return nameRule{setting: setting, fold: setting != 0}
}

// stored returns name as the server stores (and logs) it.
func (n nameRule) stored(name string) string {
	if n.setting == 1 {
		return strings.ToLower(name)
	}
	return name
}

// key returns the form of name under which equal names are equal
// strings: name itself, or its lower case when names fold.
func (n nameRule) key(name string) string {
	if n.fold {
		return strings.ToLower(name)
	}
	return name
}

// equal reports whether the server takes a and b for the same name.
func (n nameRule) equal(a, b string) bool {
	if n.fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// equalBytes is equal for a name read from an event.
func (n nameRule) equalBytes(a []byte, b string) bool {
	if n.fold {
		return bytes.EqualFold(a, []byte(b))
	}
	return string(a) == b
}

// mayFold reports whether lower-casing could change b: it holds an
// ASCII upper-case letter or a non-ASCII byte.
func mayFold(b []byte) bool {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return true
		}
	}
	return false
}
