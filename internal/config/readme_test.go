package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// yamlKeys lists the dotted keys of a config struct from its yaml tags;
// a map is one key (its entries are free-form, e.g. mapping.<path>).
func yamlKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(prefix+tag+".", f.Type)...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// TestREADMEDocumentsEveryKey holds the README's configuration table to
// the keys the decoder accepts, both ways.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md: no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "|"), "|"); ok && strings.HasPrefix(line, "|") {
			for _, m := range regexp.MustCompile("`([a-z_]+(?:\\.[a-z0-9_<>A-Z ]+)+)`").FindAllStringSubmatch(first, -1) {
				key, _, _ := strings.Cut(m[1], ".<") // mapping.<SCIM path> -> mapping
				documented[key] = true
			}
		}
	}
	accepted := map[string]bool{}
	for _, k := range yamlKeys("", reflect.TypeFor[Config]()) {
		accepted[k] = true
		if !documented[k] {
			t.Errorf("README configuration table: %s is not documented", k)
		}
	}
	if len(accepted) < 15 {
		t.Fatalf("read only %d keys from Config: %v", len(accepted), accepted)
	}
	for k := range documented {
		if !accepted[k] {
			t.Errorf("README configuration table: %s is documented but not a key", k)
		}
	}
}
