package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Records are stored in a compact binary form, version 1, a byte that no
// JSON record (the form of files written before it, still read) begins
// with:
//
//	0x01, flags (active, gone, creating, parked, uuid = externalId,
//	own values only, out of scope, version),
//	uvarint uid, ids scim_id, strings user_name, ids external_id [, uuid],
//	uvarint n, n × (path, 8-byte fingerprint), varint updated,
//	[version: string version],
//	[parked: string op, uvarint status, strings scim_type, detail,
//	varint at, uvarint failures]
//
// A string is a uvarint length and the bytes; an id is a string whose
// length is doubled, or 1 and 16 bytes for a UUID in its canonical form
// (what Drupal's uuids and most servers' ids are); a path is its place
// in knownPaths plus one, or 0 and the path as a string; times are unix
// nanoseconds, 0 for none. A record of the default mapping takes ~120
// bytes, not ~490 as JSON (the file is mapped into the agent's memory),
// and is encoded and decoded ten times faster.
const recordV1 = 0x01

// knownPaths numbers the SCIM paths a mapping can write, for the records'
// fingerprints. Append only: a path's number is stored in state files.
var knownPaths = []string{
	"userName", "externalId", "displayName", "nickName", "profileUrl", "title", "userType",
	"preferredLanguage", "locale", "timezone", "active", "emails", "phoneNumbers", "roles", "entitlements",
	"name.formatted", "name.familyName", "name.givenName", "name.middleName", "name.honorificPrefix", "name.honorificSuffix",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
	"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
}

// pathNumbers is knownPaths' inverse.
var pathNumbers = func() map[string]uint64 {
	m := make(map[string]uint64, len(knownPaths))
	for i, p := range knownPaths {
		m[p] = uint64(i) + 1
	}
	return m
}()

const (
	flagActive = 1 << iota
	flagGone
	flagCreating
	flagParked
	flagUUIDIsExternalID
	flagOwnValuesOnly
	flagOutOfScope
	flagVersion
)

var errBadRecord = errors.New("malformed state record")

// marshalAccount encodes a in the current form.
func marshalAccount(a Account) []byte {
	n := 2 + 5 + 5*5 + len(a.SCIMID) + len(a.UserName) + len(a.ExternalID) + len(a.UUID) + len(a.Version) + 5 + 10
	for p := range a.Pushed {
		n += 5 + len(p) + 8
	}
	if a.Parked != nil {
		n += 5 + len(a.Parked.Op) + 5 + 5 + len(a.Parked.ScimType) + 5 + len(a.Parked.Detail) + 10 + 5
	}
	b := make([]byte, 0, n)
	var flags byte
	if a.Active {
		flags |= flagActive
	}
	if a.Gone {
		flags |= flagGone
	}
	if a.Creating {
		flags |= flagCreating
	}
	if a.Parked != nil {
		flags |= flagParked
	}
	if a.UUID == a.ExternalID {
		flags |= flagUUIDIsExternalID
	}
	if a.OwnValuesOnly {
		flags |= flagOwnValuesOnly
	}
	if a.OutOfScope {
		flags |= flagOutOfScope
	}
	if a.Version != "" {
		flags |= flagVersion
	}
	b = append(b, recordV1, flags)
	b = binary.AppendUvarint(b, uint64(a.UID))
	b = appendID(b, a.SCIMID)
	b = appendString(b, a.UserName)
	b = appendID(b, a.ExternalID)
	if flags&flagUUIDIsExternalID == 0 {
		b = appendID(b, a.UUID)
	}
	b = binary.AppendUvarint(b, uint64(len(a.Pushed)))
	for _, p := range slices.Sorted(maps.Keys(a.Pushed)) {
		if n, ok := pathNumbers[p]; ok {
			b = binary.AppendUvarint(b, n)
		} else {
			b = appendString(append(b, 0), p)
		}
		b = binary.LittleEndian.AppendUint64(b, a.Pushed[p])
	}
	b = binary.AppendVarint(b, nanos(a.Updated))
	if a.Version != "" {
		b = appendString(b, a.Version)
	}
	if p := a.Parked; p != nil {
		b = appendString(b, p.Op)
		b = binary.AppendUvarint(b, uint64(p.Status))
		b = appendString(b, p.ScimType)
		b = appendString(b, p.Detail)
		b = binary.AppendVarint(b, nanos(p.At))
		b = binary.AppendUvarint(b, uint64(p.Failures))
	}
	return b
}

// unmarshalAccount decodes a record of either form.
func unmarshalAccount(b []byte) (Account, error) {
	var a Account
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &a)
		return a, err
	}
	d := decoder{b: b}
	flags := d.header()
	a.UID = uint32(d.uvarint())
	a.SCIMID = d.id()
	a.UserName = d.string()
	a.ExternalID = d.id()
	if flags&flagUUIDIsExternalID != 0 {
		a.UUID = a.ExternalID
	} else {
		a.UUID = d.id()
	}
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		a.Pushed = make(map[string]uint64, n)
		for range n {
			p := d.path()
			a.Pushed[p] = d.uint64()
		}
	} else if n > 0 {
		d.fail()
	}
	a.Updated = fromNanos(d.varint())
	if flags&flagVersion != 0 {
		a.Version = d.string()
	}
	a.Active, a.Gone, a.Creating = flags&flagActive != 0, flags&flagGone != 0, flags&flagCreating != 0
	a.OwnValuesOnly, a.OutOfScope = flags&flagOwnValuesOnly != 0, flags&flagOutOfScope != 0
	if flags&flagParked != 0 {
		p := &Parked{Op: d.string(), Status: int(d.uvarint()), ScimType: d.string(), Detail: d.string()}
		p.At = fromNanos(d.varint())
		p.Failures = int(d.uvarint())
		a.Parked = p
	}
	if d.err != nil || len(d.b) != 0 {
		return Account{}, errBadRecord
	}
	return a, nil
}

// scimIDOf returns the SCIM id a record holds, without decoding the rest.
func scimIDOf(b []byte) (string, error) {
	if len(b) > 0 && b[0] == '{' {
		var a struct {
			SCIMID string `json:"scim_id"`
		}
		err := json.Unmarshal(b, &a)
		return a.SCIMID, err
	}
	d := decoder{b: b}
	d.header()
	d.uvarint()
	id := d.id()
	return id, d.err
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendID appends an id: a canonical UUID as 1 and its 16 bytes, any
// other string with its length doubled.
func appendID(b []byte, s string) []byte {
	if u, ok := parseUUID(s); ok {
		return append(append(b, 1), u[:]...)
	}
	return append(binary.AppendUvarint(b, uint64(len(s))*2), s...)
}

// parseUUID parses a UUID in its canonical form (36 characters,
// lowercase hex, dashes after 8, 12, 16 and 20 digits): formatUUID gives
// the same string back.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		i, j = i+2, j+1
	}
	return u, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func formatUUID(u []byte) string {
	const digits = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = digits[c>>4], digits[c&15]
		j += 2
	}
	return string(b[:])
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads a version 1 record; the first malformed field sets err
// and every read after it returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	d.err, d.b = errBadRecord, nil
}

func (d *decoder) header() byte {
	if len(d.b) < 2 || d.b[0] != recordV1 {
		if len(d.b) > 0 && d.b[0] != recordV1 {
			d.err, d.b = fmt.Errorf("%w: unknown format %#x (written by a newer scim-agent?)", errBadRecord, d.b[0]), nil
		} else {
			d.fail()
		}
		return 0
	}
	flags := d.b[1]
	d.b = d.b[2:]
	return flags
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) id() string {
	n := d.uvarint()
	switch {
	case n == 1:
		if len(d.b) < 16 {
			d.fail()
			return ""
		}
		s := formatUUID(d.b[:16])
		d.b = d.b[16:]
		return s
	case n%2 != 0 || n/2 > uint64(len(d.b)):
		d.fail()
		return ""
	}
	s := string(d.b[:n/2])
	d.b = d.b[n/2:]
	return s
}

func (d *decoder) path() string {
	n := d.uvarint()
	switch {
	case n == 0 && d.err == nil:
		return d.string()
	case n > uint64(len(knownPaths)):
		d.fail()
		return ""
	case n == 0:
		return ""
	}
	return knownPaths[n-1]
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
