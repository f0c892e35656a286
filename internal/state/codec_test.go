package state

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var codecCases = []Account{
	{},
	{UID: 1},
	{UID: 4294967295, SCIMID: "9fed6c2d-d48c-4869-b501-ef802b660a49", UserName: "Zoë", ExternalID: "d30786cf-e563-4bfb-8e66-11b5f7b98f3c",
		UUID: "d30786cf-e563-4bfb-8e66-11b5f7b98f3c", Active: true,
		Pushed:  map[string]uint64{"userName": 1, "emails": 1 << 63, "active": 0, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": 42},
		Updated: time.Date(2026, 12, 1, 22, 47, 19, 123456789, time.UTC)},
	{UID: 7, UserName: "old", ExternalID: "ext", UUID: "another-uuid", Gone: true, Creating: true,
		Parked:  &Parked{Op: "create", Status: 400, ScimType: "invalidValue", Detail: "emails.value: \"x\" is not an e-mail address", At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Failures: 3},
		Updated: time.Unix(0, 1).UTC()},
	{UID: 8, Parked: &Parked{Op: "delete", Detail: ""}},
	// Ids that are not canonical UUIDs, and paths the table does not know.
	{UID: 9, SCIMID: "D30786CF-E563-4BFB-8E66-11B5F7B98F3C", ExternalID: "d30786cf-e563-4bfb-8e66-11b5f7b98f3", UUID: "d30786cf-e563-4bfb-8e66-11b5f7b98f3cx",
		Pushed: map[string]uint64{"x-custom": 3, "name.givenName": 4, "": 5}},
	// ETag and the flags of the interop and scope work.
	{UID: 11, SCIMID: "x", Version: `W/"3"`, OwnValuesOnly: true, OutOfScope: true},
	{UID: 12, Version: `"a version with \"quotes\" and é"`, Active: true},
	{UID: 10, SCIMID: "1234", ExternalID: "d30786cfXe563-4bfb-8e66-11b5f7b98f3c", UUID: "g0786cf0-e563-4bfb-8e66-11b5f7b98f3c"},
}

// TestUUIDsAndPathsArePacked: what the compact form is for.
func TestUUIDsAndPathsArePacked(t *testing.T) {
	u := "d30786cf-e563-4bfb-8e66-11b5f7b98f3c"
	a := Account{UID: 123456, SCIMID: "9fed6c2d-d48c-4869-b501-ef802b660a49", UserName: "user000001", ExternalID: u, UUID: u, Active: true,
		Pushed:  map[string]uint64{"userName": 1, "externalId": 2, "emails": 3, "active": 4, "displayName": 5, "preferredLanguage": 6, "timezone": 7},
		Updated: time.Now().UTC()}
	if n := len(marshalAccount(a)); n > 125 {
		t.Fatalf("a default mapping's record takes %d bytes, want at most 125", n)
	}
	for _, s := range []string{u, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"} {
		if b, ok := parseUUID(s); !ok || formatUUID(b[:]) != s {
			t.Errorf("%s does not round-trip as a UUID", s)
		}
	}
}

// TestRecordCodecRoundTrips: every field survives the binary form, and a
// record written as JSON by an older agent reads the same.
func TestRecordCodecRoundTrips(t *testing.T) {
	for _, a := range codecCases {
		got, err := unmarshalAccount(marshalAccount(a))
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("binary round trip of %+v = %+v, %v", a, got, err)
		}
		legacy, _ := json.Marshal(a)
		got, err = unmarshalAccount(legacy)
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("JSON record %s read as %+v, %v", legacy, got, err)
		}
		for _, b := range [][]byte{marshalAccount(a), legacy} {
			if id, err := scimIDOf(b); err != nil || id != a.SCIMID {
				t.Errorf("scimIDOf(%q) = %q, %v; want %q", b, id, err, a.SCIMID)
			}
		}
	}
}

// TestEveryFieldIsInTheCodec sets each field of Account, one at a time,
// and reads it back: a field added to Account without its place in the
// binary form fails here, instead of being lost at the next save.
func TestEveryFieldIsInTheCodec(t *testing.T) {
	typ := reflect.TypeOf(Account{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		var a Account
		v := reflect.ValueOf(&a).Elem().Field(i)
		switch f.Type.Kind() {
		case reflect.Bool:
			v.SetBool(true)
		case reflect.String:
			v.SetString("value of " + f.Name)
		case reflect.Uint32:
			v.SetUint(7)
		case reflect.Map:
			v.Set(reflect.ValueOf(map[string]uint64{"userName": 3}))
		case reflect.Pointer:
			v.Set(reflect.ValueOf(&Parked{Op: "create", Status: 400, ScimType: "t", Detail: "d", At: time.Unix(5, 0).UTC(), Failures: 2}))
		case reflect.Struct:
			v.Set(reflect.ValueOf(time.Unix(9, 9).UTC()))
		default:
			t.Fatalf("Account.%s: a %s, which this test cannot set: extend it", f.Name, f.Type)
		}
		got, err := unmarshalAccount(marshalAccount(a))
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("Account.%s is lost by the binary form: %+v read as %+v (%v)", f.Name, a, got, err)
		}
	}
}

// TestMalformedRecordsAreErrors: a record cut short, with bytes left over
// or of an unknown form is an error, not a wrong record.
func TestMalformedRecordsAreErrors(t *testing.T) {
	good := marshalAccount(codecCases[3])
	for name, b := range map[string][]byte{
		"empty":        {},
		"header only":  good[:2],
		"cut short":    good[:len(good)-1],
		"extra bytes":  append(append([]byte{}, good...), 0),
		"newer format": append([]byte{0x02}, good[1:]...),
	} {
		if a, err := unmarshalAccount(b); !errors.Is(err, errBadRecord) {
			t.Errorf("%s: %+v, %v; want errBadRecord", name, a, err)
		}
	}
}

// TestAFileOfJSONRecordsGetsItsIndexes: a file an older agent wrote (JSON
// records, no parked or count index) opens with both built, and its
// records rewritten in the new form read back the same.
func TestAFileOfJSONRecordsGetsItsIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		accounts, err := tx.CreateBucket(bucketAccounts)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		ids, err := tx.CreateBucket(bucketSCIMIDs)
		if err != nil {
			return err
		}
		for _, a := range codecCases[1:] {
			v, _ := json.Marshal(a)
			if err := accounts.Put(uidKey(a.UID), v); err != nil {
				return err
			}
			if a.SCIMID != "" {
				ids.Put([]byte(a.SCIMID), uidKey(a.UID))
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.CountAccounts(); n != len(codecCases)-1 || err != nil {
		t.Fatalf("CountAccounts = %d, %v; want %d", n, err, len(codecCases)-1)
	}
	parked, err := s.Parked()
	if err != nil || len(parked) != 2 || parked[0].UID != 7 || parked[1].UID != 8 {
		t.Fatalf("Parked = %+v, %v; want uids 7 and 8", parked, err)
	}
	a := codecCases[2]
	if err := s.PutAccount(a); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Account(a.UID)
	if got.Updated.IsZero() {
		t.Fatal("no Updated time")
	}
	got.Updated = a.Updated
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("rewritten record = %+v, want %+v", got, a)
	}
	if uid, ok, _ := s.UIDBySCIMID(a.SCIMID); !ok || uid != a.UID {
		t.Fatalf("UIDBySCIMID = %d, %v", uid, ok)
	}
	var want []uint32
	for _, a := range codecCases[1:] {
		want = append(want, a.UID)
	}
	slices.Sort(want)
	if uids, err := s.AccountUIDs(); err != nil || !reflect.DeepEqual(uids, want) {
		t.Fatalf("AccountUIDs = %v, %v; want %v", uids, err, want)
	}
}

// TestIndexesFollowEveryWrite: parked uids and the count stay right
// through puts, re-puts, unparking and deletions.
func TestIndexesFollowEveryWrite(t *testing.T) {
	s := openTest(t)
	p := &Parked{Op: "create", Detail: "no"}
	steps := []struct {
		write      func() error
		count      int
		parkedUIDs []uint32
	}{
		{func() error { return s.PutAccount(Account{UID: 1, Parked: p}) }, 1, []uint32{1}},
		{func() error { return s.PutAccountLater(Account{UID: 2}) }, 2, []uint32{1}},
		{func() error { return s.PutAccountLater(Account{UID: 2, Parked: p}) }, 2, []uint32{1, 2}},
		{func() error { return s.PutAccountLater(Account{UID: 1}) }, 2, []uint32{2}},
		{func() error { return s.DeleteAccountLater(2) }, 1, nil},
		{func() error { return s.DeleteAccount(3) }, 1, nil},
	}
	for i, st := range steps {
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		n, err := s.CountAccounts()
		if err != nil || n != st.count {
			t.Errorf("step %d: CountAccounts = %d, %v; want %d", i, n, err, st.count)
		}
		parked, _ := s.Parked()
		var uids []uint32
		for _, a := range parked {
			uids = append(uids, a.UID)
		}
		if !reflect.DeepEqual(uids, st.parkedUIDs) {
			t.Errorf("step %d: parked %v, want %v", i, uids, st.parkedUIDs)
		}
	}
}
