// Package phpserial decodes PHP's serialize() format, strictly, for the
// configuration objects Drupal keeps in its config table (a role is
// a:9:{s:4:"uuid";...;s:5:"label";s:6:"Editor";...}).
//
// It is written here rather than taken from a library: the two
// maintained Go implementations (elliotchance/phpserialize v1.4.0,
// trim21/go-phpserialize v0.1.2) panic with an index out of range on a
// string whose declared length runs past the data, and a corrupt or
// truncated row must be an error, never a crash of the agent. String
// lengths count bytes, as PHP's do: "Rédaction" is s:10:.
//
// Decode accepts N, b, i, d, s and a (arrays, whose keys are i or s),
// which is everything Drupal's configuration holds; objects, references
// and enums are errors. Arrays decode to Array, an ordered list of
// pairs.
package phpserial

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// MaxDepth bounds the nesting of arrays.
const MaxDepth = 64

// ErrSyntax is wrapped by every error of Decode.
var ErrSyntax = errors.New("phpserial: invalid serialized data")

// Pair is one key and value of an Array. Key is a string or an int64.
type Pair struct {
	Key   any
	Value any
}

// Array is a PHP array: its pairs in order.
type Array []Pair

// Get returns the value of the string key k.
func (a Array) Get(k string) (any, bool) {
	for _, p := range a {
		if s, ok := p.Key.(string); ok && s == k {
			return p.Value, true
		}
	}
	return nil, false
}

// String returns the string value of key k, or "" and false when there
// is none or it is not a string.
func (a Array) String(k string) (string, bool) {
	v, ok := a.Get(k)
	s, isString := v.(string)
	return s, ok && isString
}

// Decode decodes one serialized value, which must take all of data. A
// value is nil (N), a bool (b), an int64 (i), a float64 (d), a string (s)
// or an Array (a).
func Decode(data []byte) (any, error) {
	d := &decoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(data) {
		return nil, d.errorf("%d bytes after the value", len(data)-d.pos)
	}
	return v, nil
}

// decoder reads one serialized value.
type decoder struct {
	data []byte
	pos  int
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, d.pos, fmt.Sprintf(format, args...))
}

// value reads the value at d.pos.
func (d *decoder) value(depth int) (any, error) {
	if d.pos+1 >= len(d.data) {
		return nil, d.errorf("unexpected end")
	}
	tag := d.data[d.pos]
	if tag == 'N' {
		d.pos++
		return nil, d.expect(';')
	}
	if d.data[d.pos+1] != ':' {
		return nil, d.errorf("%q is not followed by ':'", tag)
	}
	d.pos += 2
	switch tag {
	case 'b':
		return d.boolean()
	case 'i':
		n, err := d.integer(';')
		return n, err
	case 'd':
		return d.float()
	case 's':
		return d.str()
	case 'a':
		return d.array(depth)
	}
	return nil, d.errorf("type %q is not supported", tag)
}

// expect consumes the byte c.
func (d *decoder) expect(c byte) error {
	if d.pos >= len(d.data) || d.data[d.pos] != c {
		return d.errorf("want %q", c)
	}
	d.pos++
	return nil
}

// until returns the bytes up to the next end and consumes them and end.
func (d *decoder) until(end byte) ([]byte, error) {
	for i := d.pos; i < len(d.data); i++ {
		if d.data[i] == end {
			b := d.data[d.pos:i]
			d.pos = i + 1
			return b, nil
		}
	}
	return nil, d.errorf("no %q", end)
}

func (d *decoder) boolean() (bool, error) {
	b, err := d.until(';')
	switch {
	case err != nil:
		return false, err
	case string(b) == "1":
		return true, nil
	case string(b) == "0":
		return false, nil
	}
	return false, d.errorf("bool %q", b)
}

// integer reads a decimal integer ended by end.
func (d *decoder) integer(end byte) (int64, error) {
	b, err := d.until(end)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || len(b) > 1 && (b[0] == '+' || b[0] == '0' || b[0] == '-' && b[1] == '0') {
		return 0, d.errorf("integer %q", b)
	}
	return n, nil
}

func (d *decoder) float() (float64, error) {
	b, err := d.until(';')
	if err != nil {
		return 0, err
	}
	switch string(b) {
	case "INF":
		return math.Inf(1), nil
	case "-INF":
		return math.Inf(-1), nil
	case "NAN":
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, d.errorf("float %q", b)
	}
	return f, nil
}

// str reads s:<bytes>:"<that many bytes>"; after the "s:".
func (d *decoder) str() (string, error) {
	n, err := d.integer(':')
	if err != nil {
		return "", err
	}
	if n < 0 || n > int64(len(d.data)-d.pos) {
		return "", d.errorf("string length %d runs past the data", n)
	}
	if err := d.expect('"'); err != nil {
		return "", err
	}
	if int64(len(d.data)-d.pos) < n+2 {
		return "", d.errorf("string length %d runs past the data", n)
	}
	s := string(d.data[d.pos : d.pos+int(n)])
	d.pos += int(n)
	if err := d.expect('"'); err != nil {
		return "", err
	}
	return s, d.expect(';')
}

// array reads a:<count>:{<key><value>...} after the "a:".
func (d *decoder) array(depth int) (Array, error) {
	if depth >= MaxDepth {
		return nil, d.errorf("arrays nested deeper than %d", MaxDepth)
	}
	n, err := d.integer(':')
	if err != nil {
		return nil, err
	}
	// Each pair takes at least 8 bytes (i:0;N;): a count larger than the
	// data left is a lie, not a reason to allocate.
	if n < 0 || n > int64(len(d.data)-d.pos)/8+1 {
		return nil, d.errorf("array count %d does not fit the data", n)
	}
	if err := d.expect('{'); err != nil {
		return nil, err
	}
	a := make(Array, 0, n)
	for i := int64(0); i < n; i++ {
		start := d.pos
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case string, int64:
		default:
			d.pos = start
			return nil, d.errorf("array key of type %T", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, Pair{Key: k, Value: v})
	}
	return a, d.expect('}')
}
