package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads and checks the config file at path, replacing ${VAR} from
// the process environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, os.LookupEnv)
}

// Parse decodes and checks a config document. name prefixes error
// messages (usually the file's path); lookupEnv resolves ${VAR}.
func Parse(data []byte, name string, lookupEnv func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		line := more.Line
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, fmt.Errorf("%s:%d: a second YAML document (after ---) would be ignored: keep the whole config in one document", name, line)
	}
	idx := &index{keys: map[string]int{}}
	lines := idx.keys
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = &doc
		if err := walk(doc.Content[0], reflect.TypeOf(Config{}), "", idx, lookupEnv); err != nil {
			return nil, fmt.Errorf("%s:%w", name, err)
		}
	}
	var c Config
	if root != nil {
		if err := root.Decode(&c); err != nil {
			return nil, typeError(name, err, idx)
		}
	}
	present := func(path string) bool { _, ok := lines[path]; return ok }
	c.applyDefaults(present)
	// at names the line of a key, or of its nearest parent in the file
	// (a required key that is missing is reported where its section is).
	at := func(path string) string {
		for p := path; p != ""; {
			if line, ok := lines[p]; ok {
				return fmt.Sprintf("%s:%d: ", name, line)
			}
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
		}
		return name + ": "
	}
	if err := c.validate(at); err != nil {
		return nil, err
	}
	return &c, nil
}

// index records where each part of the document is: the line of every
// key path, and every scalar value with its path (a sequence item's path
// ends in [i]).
type index struct {
	keys   map[string]int
	values []valueAt
}

// valueAt is one scalar value of the document.
type valueAt struct {
	line        int
	path, value string
}

// tickedValue is the value YAML quotes in a type error: `many`, or
// `longvalu...` when it cut it short.
var tickedValue = regexp.MustCompile("`([^`]*)`")

// pathAt names the value at fault in a type error on line: the scalar on
// that line that YAML quoted in msg, else the deepest key on the line.
func (idx *index) pathAt(line int, msg string) (string, bool) {
	if m := tickedValue.FindStringSubmatch(msg); m != nil {
		quoted, cut := strings.CutSuffix(m[1], "...")
		for _, v := range idx.values {
			if v.line == line && (v.value == quoted || cut && strings.HasPrefix(v.value, quoted)) {
				return v.path, true
			}
		}
	}
	var deepest string
	for path, l := range idx.keys {
		if l == line && len(path) > len(deepest) {
			deepest = path
		}
	}
	return deepest, deepest != ""
}

// typeError rewrites YAML's "line N: cannot unmarshal ..." so that each
// problem names its file, line and key.
func typeError(name string, err error, idx *index) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %w", name, err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		var line int
		var rest string
		if _, serr := fmt.Sscanf(e, "line %d:", &line); serr == nil {
			_, rest, _ = strings.Cut(e, ": ")
			if path, ok := idx.pathAt(line, rest); ok {
				msgs = append(msgs, fmt.Sprintf("%s:%d: %s: %s", name, line, path, rest))
				continue
			}
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s", name, line, rest))
			continue
		}
		msgs = append(msgs, name+": "+e)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// keyError is a problem at one line of the file.
type keyError struct {
	line int
	msg  string
}

func (e *keyError) Error() string { return fmt.Sprintf("%d: %s", e.line, e.msg) }

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// walk checks every key of node against the yaml tags of t, records the
// line of each key path, and expands ${VAR} in scalar values.
func walk(node *yaml.Node, t reflect.Type, path string, idx *index, lookupEnv func(string) (string, bool)) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch node.Kind {
	case yaml.ScalarNode:
		expanded, err := expand(node, path, lookupEnv)
		if err != nil {
			return err
		}
		if expanded && t.Kind() != reflect.String {
			// workers: ${WORKERS} or workers: "${WORKERS}" holds a number
			// once expanded: let YAML read the value, not the quotes.
			node.Tag, node.Style = "", 0
		}
		idx.values = append(idx.values, valueAt{line: node.Line, path: path, value: node.Value})
		if t == durationType {
			return durationScalar(node, path)
		}
		return nil
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			return &keyError{node.Line, fmt.Sprintf("%s: must be a single value, not a list", path)}
		}
		for i, item := range node.Content {
			elem := t.Elem()
			itemPath := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind == yaml.MappingNode || item.Kind == yaml.SequenceNode {
				// A list of structs or lists (provisioning.scope): a
				// problem with an item is reported at its line.
				idx.keys[itemPath] = item.Line
			}
			if err := walk(item, elem, itemPath, idx, lookupEnv); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode:
		return &keyError{node.Line, fmt.Sprintf("%s: YAML aliases are not supported", path)}
	case yaml.MappingNode:
	default:
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return walkStruct(node, t, path, idx, lookupEnv)
	case reflect.Map:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			sub := join(path, k.Value)
			idx.keys[sub] = k.Line
			if v.Kind != yaml.ScalarNode {
				return &keyError{v.Line, fmt.Sprintf("%s: must be a single value", sub)}
			}
			if err := walk(v, t.Elem(), sub, idx, lookupEnv); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if t == reflect.TypeFor[ScopeClause]() {
			return &keyError{node.Line, fmt.Sprintf("%s: a clause is a list of conditions, not one: write - [{source: ..., op: ..., value: ...}]", path)}
		}
		return &keyError{node.Line, fmt.Sprintf("%s: must be a list, not a mapping", path)}
	default:
		return &keyError{node.Line, fmt.Sprintf("%s: must be a single value, not a mapping", path)}
	}
	return nil
}

// walkStruct checks the keys of a mapping node against the yaml tags of
// the struct type t: an unknown key is an error naming the known ones.
func walkStruct(node *yaml.Node, t reflect.Type, path string, idx *index, lookupEnv func(string) (string, bool)) error {
	known := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			known[tag] = f
		}
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		f, ok := known[k.Value]
		if !ok {
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			where := "at the top level"
			if path != "" {
				where = "in " + path
			}
			return &keyError{k.Line, fmt.Sprintf("unknown key %q %s (known keys: %s)", k.Value, where, strings.Join(names, ", "))}
		}
		sub := join(path, k.Value)
		idx.keys[sub] = k.Line
		if err := walk(v, f.Type, sub, idx, lookupEnv); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// durationScalar lets a duration be written as 0 (off) and makes any
// other bare number an error naming the key: "6" could mean hours or
// nanoseconds.
func durationScalar(node *yaml.Node, path string) error {
	v := strings.TrimSpace(node.Value)
	if v == "0" {
		node.Value, node.Tag, node.Style = "0s", "!!str", 0
		return nil
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return &keyError{node.Line, fmt.Sprintf("%s: %q needs a unit, e.g. 30s, 10m or 6h", path, v)}
	}
	if _, err := time.ParseDuration(v); err != nil {
		return &keyError{node.Line, fmt.Sprintf("%s: %q is not a duration such as 30s, 10m or 6h", path, v)}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expand replaces ${VAR} in a scalar value and reports whether it did.
// An unset variable is an error: an empty password or token is never what
// the operator meant.
func expand(node *yaml.Node, path string, lookupEnv func(string) (string, bool)) (bool, error) {
	if !envRef.MatchString(node.Value) {
		return false, nil
	}
	var missing []string
	node.Value = envRef.ReplaceAllStringFunc(node.Value, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := lookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return true, &keyError{node.Line, fmt.Sprintf("%s: environment variable %s is not set", path, strings.Join(missing, ", "))}
	}
	return true, nil
}

// IsKeyError reports whether err is about a key or value of the file.
func IsKeyError(err error) bool {
	var ke *keyError
	return errors.As(err, &ke)
}
