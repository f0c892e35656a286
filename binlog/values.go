package binlog

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// toUint32 converts a decoded uid column value to a uid.
//
// Drupal's uid columns are `int unsigned`, but the decoder only knows a
// column is unsigned when the table-map event carries signedness
// (binlog_row_metadata MINIMAL or FULL). Without it an int column is
// decoded as a signed int32, so a uid of 2^31 or more arrives negative and
// is reinterpreted here from its bit pattern, at the column's width. A
// value that cannot be a uid (a negative BIGINT, a fraction, text that is no
// number) is an error rather than a silently wrong uid.
func toUint32(v any, colType byte) (uint32, error) {
	switch x := v.(type) {
	case uint32:
		return x, nil
	case int32:
		if x >= 0 {
			return uint32(x), nil
		}
		if colType == gomysql.MYSQL_TYPE_INT24 {
			return uint32(x) & 0xFFFFFF, nil
		}
		return uint32(x), nil
	case int8:
		return uint32(uint8(x)), nil
	case uint8:
		return uint32(x), nil
	case int16:
		return uint32(uint16(x)), nil
	case uint16:
		return uint32(x), nil
	case int64:
		if x < 0 || x > math.MaxUint32 {
			return 0, fmt.Errorf("value %d out of uid range", x)
		}
		return uint32(x), nil
	case uint64:
		if x > math.MaxUint32 {
			return 0, fmt.Errorf("value %d out of uid range", x)
		}
		return uint32(x), nil
	case int:
		if x < 0 || uint64(x) > math.MaxUint32 {
			return 0, fmt.Errorf("value %d out of uid range", x)
		}
		return uint32(x), nil
	case uint:
		if uint64(x) > math.MaxUint32 {
			return 0, fmt.Errorf("value %d out of uid range", x)
		}
		return uint32(x), nil
	case string:
		return parseUID(x)
	case []byte:
		return parseUID(string(x))
	default:
		return 0, fmt.Errorf("value %v of type %T is no uid", v, v)
	}
}

func parseUID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("value %q is no uid", s)
	}
	return uint32(n), nil
}

// toString returns a decoded text column value as a string: text columns
// decode to string, binary ones (and some charsets) to []byte.
func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// appendProjection appends an unambiguous encoding of row's values at cols
// to buf: two rows project to the same bytes exactly when they hold the
// same values in those columns. Each value is a type tag followed by a
// fixed-width number or a length-prefixed byte string, so "ab"+"c" never
// equals "a"+"bc" and NULL never equals "".
func appendProjection(buf []byte, row []any, cols []int) []byte {
	for _, c := range cols {
		var v any
		if c < len(row) {
			v = row[c]
		}
		buf = appendValue(buf, v)
	}
	return buf
}

func appendValue(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, 'N')
	case string:
		buf = append(buf, 'S')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		return append(buf, x...)
	case []byte:
		buf = append(buf, 'S')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		return append(buf, x...)
	case int8:
		return binary.AppendVarint(append(buf, 'I'), int64(x))
	case int16:
		return binary.AppendVarint(append(buf, 'I'), int64(x))
	case int32:
		return binary.AppendVarint(append(buf, 'I'), int64(x))
	case int64:
		return binary.AppendVarint(append(buf, 'I'), x)
	case int:
		return binary.AppendVarint(append(buf, 'I'), int64(x))
	case uint8:
		return binary.AppendUvarint(append(buf, 'U'), uint64(x))
	case uint16:
		return binary.AppendUvarint(append(buf, 'U'), uint64(x))
	case uint32:
		return binary.AppendUvarint(append(buf, 'U'), uint64(x))
	case uint64:
		return binary.AppendUvarint(append(buf, 'U'), x)
	case float32:
		return binary.LittleEndian.AppendUint64(append(buf, 'F'), math.Float64bits(float64(x)))
	case float64:
		return binary.LittleEndian.AppendUint64(append(buf, 'F'), math.Float64bits(x))
	default:
		// Decimals, times, JSON and the like: none is a Drupal user column
		// the agent maps, but compare them by their printed form rather than
		// not at all.
		s := fmt.Sprintf("%T:%v", x, x)
		buf = append(buf, 'X')
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		return append(buf, s...)
	}
}
