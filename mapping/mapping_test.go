package mapping

import (
	"encoding/json"
	"github.com/scim-agent/scim-agent/internal/drupal"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func account(values map[string]any) drupal.Account {
	return drupal.Account{UID: 7, UUID: "0b7e-uuid", Langcode: "en", Values: values}
}

func TestNewRejectsBadRules(t *testing.T) {
	tests := []struct {
		name      string
		overrides map[string]string
		wantErr   string
	}{
		{"password hash as source", map[string]string{"displayName": "pass"}, `displayName: source "pass" is Drupal's password hash`},
		{"password as target", map[string]string{"password": "name"}, `"password" cannot be mapped`},
		{"unknown target", map[string]string{"nick": "name"}, `unknown SCIM attribute "nick"`},
		{"unknown name part", map[string]string{"name.first": "name"}, `unknown SCIM attribute "name.first"`},
		{"unknown enterprise attribute", map[string]string{EnterpriseSchema + ":boss": "name"}, `unknown SCIM attribute`},
		{"unknown source", map[string]string{"title": "job"}, `title: unknown source "job"`},
		{"field name with SQL in it", map[string]string{"title": "field_x; DROP TABLE users"}, `is not a field name`},
		{"roles into a string", map[string]string{"title": "roles"}, `roles is a list`},
		{"userName removed", map[string]string{"userName": ""}, `userName must be mapped`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.overrides)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New(%v) error = %v, want it to contain %q", tt.overrides, err, tt.wantErr)
			}
		})
	}
}

func TestDefaultMapping(t *testing.T) {
	m, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		values map[string]any
		want   map[string]any
	}{
		{
			name: "active user",
			values: map[string]any{"name": "alice", "mail": "alice@example.org", "status": int64(1),
				"preferred_langcode": "fr", "timezone": "Europe/Paris"},
			want: map[string]any{
				"schemas": []string{UserSchema}, "userName": "alice", "displayName": "alice", "externalId": "0b7e-uuid",
				"emails": []map[string]any{{"value": "alice@example.org", "type": "work", "primary": true}},
				"active": true, "preferredLanguage": "fr", "timezone": "Europe/Paris",
			},
		},
		{
			name:   "blocked user with NULL mail, timezone and language",
			values: map[string]any{"name": "bob", "mail": nil, "status": int64(0), "timezone": nil},
			want: map[string]any{
				"schemas": []string{UserSchema}, "userName": "bob", "displayName": "bob", "externalId": "0b7e-uuid", "active": false,
			},
		},
		{
			name:   "non-ASCII name",
			values: map[string]any{"name": "Zoë Ødegård 山田", "mail": []byte("zoe@example.org"), "status": int64(1)},
			want: map[string]any{
				"schemas": []string{UserSchema}, "userName": "Zoë Ødegård 山田", "displayName": "Zoë Ødegård 山田", "externalId": "0b7e-uuid",
				"emails": []map[string]any{{"value": "zoe@example.org", "type": "work", "primary": true}}, "active": true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Map(account(tt.values)).Resource()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resource() =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestOverridesNestAndExtend(t *testing.T) {
	m, err := New(map[string]string{
		"name.givenName":                     "field_first_name",
		"name.familyName":                    "field_last_name",
		"roles":                              "roles",
		"userType":                           "const:Employee",
		EnterpriseSchema + ":employeeNumber": "uid",
		"timezone":                           "", // removed
	})
	if err != nil {
		t.Fatal(err)
	}
	src := m.Sources()
	if !src.Roles || len(src.Fields) != 2 || src.Fields[0].Column != "field_first_name_value" {
		t.Fatalf("Sources() = %+v", src)
	}
	for _, c := range src.FieldDataColumns {
		if c == "timezone" || c == "pass" {
			t.Fatalf("Sources() reads %q: %+v", c, src)
		}
	}
	u := m.Map(account(map[string]any{
		"name": "carol", "status": int64(1), "roles": []string{"editor", "admin"},
		"field_first_name.field_first_name_value": "Carol",
		"timezone": "UTC",
	}))
	b, _ := json.Marshal(u.Resource())
	want := `{"active":true,"displayName":"carol","externalId":"0b7e-uuid",` +
		`"name":{"givenName":"Carol"},"roles":[{"value":"editor"},{"value":"admin"}],` +
		`"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","` + EnterpriseSchema + `"],` +
		`"` + EnterpriseSchema + `":{"employeeNumber":"7"},"userName":"carol","userType":"Employee"}`
	if string(b) != want {
		t.Fatalf("Resource() =\n%s\nwant\n%s", b, want)
	}
}

func TestDiff(t *testing.T) {
	m, _ := New(nil)
	base := map[string]any{"name": "alice", "mail": "a@example.org", "status": int64(1)}
	pushed := m.Map(account(base)).Fingerprints()
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for key, val := range base {
			c[key] = val
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name   string
		values map[string]any
		want   Changes
	}{
		{"nothing changed", base, Changes{}},
		{"login timestamp is not mapped", with("login", int64(1700000000)), Changes{}},
		{"mail changed", with("mail", "b@example.org"), Changes{Set: []string{"emails"}}},
		{"mail removed", with("mail", nil), Changes{Remove: []string{"emails"}}},
		{"blocked", with("status", int64(0)), Changes{Set: []string{"active"}}},
		{"renamed", with("name", "alicia"), Changes{Set: []string{"displayName", "userName"}}},
		{"timezone added", with("timezone", "UTC"), Changes{Set: []string{"timezone"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Diff(m.Map(account(tt.values)), pushed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Diff = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("path dropped from the mapping is left alone", func(t *testing.T) {
		m2, _ := New(map[string]string{"timezone": ""})
		pushed := m.Map(account(with("timezone", "UTC"))).Fingerprints()
		if got := m2.Diff(m2.Map(account(base)), pushed); !got.Empty() {
			t.Fatalf("Diff = %+v, want none", got)
		}
	})
}

func TestCompareWithServer(t *testing.T) {
	m, _ := New(map[string]string{"name.givenName": "field_first_name"})
	u := m.Map(account(map[string]any{"name": "Alice", "mail": "alice@example.org", "status": int64(1),
		"field_first_name.field_first_name_value": "Alice"}))
	server := func(edit func(map[string]any)) map[string]any {
		var res map[string]any
		b, _ := json.Marshal(u.Resource())
		json.Unmarshal(b, &res)
		res["id"] = "srv-1"
		res["meta"] = map[string]any{"resourceType": "User"}
		if edit != nil {
			edit(res)
		}
		return res
	}
	tests := []struct {
		name string
		edit func(map[string]any)
		want Changes
	}{
		{"identical, with server-side extras", func(r map[string]any) {
			r["emails"].([]any)[0].(map[string]any)["display"] = "Alice"
			r["nickName"] = "al"
		}, Changes{}},
		{"userName differs only in case", func(r map[string]any) { r["userName"] = "alice" }, Changes{}},
		{"email case differs", func(r map[string]any) {
			r["emails"].([]any)[0].(map[string]any)["value"] = "ALICE@example.org"
		}, Changes{}},
		{"active as a string", func(r map[string]any) { r["active"] = "True" }, Changes{}},
		{"deactivated by hand", func(r map[string]any) { r["active"] = false }, Changes{Set: []string{"active"}}},
		{"second email added by hand", func(r map[string]any) {
			r["emails"] = append(r["emails"].([]any), map[string]any{"value": "x@example.org"})
		}, Changes{Set: []string{"emails"}}},
		{"home email set elsewhere", func(r map[string]any) {
			r["emails"] = append(r["emails"].([]any), map[string]any{"value": "alice@home.example", "type": "home"})
		}, Changes{}},
		{"server keeps no primary on the lone email", func(r map[string]any) {
			delete(r["emails"].([]any)[0].(map[string]any), "primary")
		}, Changes{}},
		{"server keeps no type on the lone email", func(r map[string]any) {
			delete(r["emails"].([]any)[0].(map[string]any), "type")
		}, Changes{}},
		{"work email changed, home kept", func(r map[string]any) {
			r["emails"] = []any{map[string]any{"value": "old@example.org", "type": "work", "primary": true},
				map[string]any{"value": "alice@home.example", "type": "home"}}
		}, Changes{Set: []string{"emails"}}},
		{"displayName differs only in case (caseExact false)", func(r map[string]any) { r["displayName"] = "ALICE" }, Changes{}},
		{"externalId differs in case (caseExact true)", func(r map[string]any) {
			r["externalId"] = strings.ToUpper(r["externalId"].(string))
		}, Changes{Set: []string{"externalId"}}},
		{"given name edited", func(r map[string]any) { r["name"] = map[string]any{"givenName": "Al"} }, Changes{Set: []string{"name.givenName"}}},
		{"timezone set by hand, Drupal has none", func(r map[string]any) { r["timezone"] = "UTC" }, Changes{Remove: []string{"timezone"}}},
		{"externalId missing", func(r map[string]any) { delete(r, "externalId") }, Changes{Set: []string{"externalId"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Compare(u, server(tt.edit))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Compare = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestApplyKeepsUnmanagedAttributes(t *testing.T) {
	m, _ := New(map[string]string{"name.givenName": "field_first_name", EnterpriseSchema + ":department": "const:IT"})
	u := m.Map(account(map[string]any{"name": "alice", "mail": "new@example.org", "status": int64(0),
		"field_first_name.field_first_name_value": "Alice"}))
	var res map[string]any
	json.Unmarshal([]byte(`{"schemas":["`+UserSchema+`"],"id":"1","UserName":"alice","nickName":"al","timezone":"UTC",
		"name":{"familyName":"Smith"},"emails":[{"value":"old@example.org"}],"active":true}`), &res)
	c := m.Compare(u, res)
	m.Apply(res, u, c)
	if got := m.Compare(u, res); !got.Empty() {
		t.Fatalf("after Apply, Compare = %+v", got)
	}
	if res["nickName"] != "al" || res["name"].(map[string]any)["familyName"] != "Smith" {
		t.Fatalf("Apply dropped unmanaged attributes: %v", res)
	}
	if _, ok := res["timezone"]; ok {
		t.Fatalf("timezone not removed: %v", res)
	}
	if _, dup := res["userName"]; dup {
		t.Fatalf("Apply added userName beside UserName: %v", res)
	}
	if s := res["schemas"].([]any); len(s) != 2 {
		t.Fatalf("schemas = %v, want the enterprise extension added", s)
	}
}

func TestApplyKeepsValuesOfOtherTypes(t *testing.T) {
	m, _ := New(nil)
	u := m.Map(account(map[string]any{"name": "alice", "mail": "new@example.org", "status": int64(1)}))
	var res map[string]any
	json.Unmarshal([]byte(`{"schemas":["`+UserSchema+`"],"id":"1","userName":"alice","active":true,
		"emails":[{"value":"old@example.org","type":"work","primary":true},{"value":"me@home.example","type":"home","primary":true}]}`), &res)
	c := m.Compare(u, res)
	if !c.Has("emails") {
		t.Fatalf("Compare = %+v, want emails", c)
	}
	m.Apply(res, u, c)
	if got := m.Compare(u, res); !got.Empty() {
		t.Fatalf("after Apply, Compare = %+v", got)
	}
	var home, work int
	for _, e := range res["emails"].([]any) {
		e := e.(map[string]any)
		switch e["type"] {
		case "home":
			home++
			if e["value"] != "me@home.example" || e["primary"] != false {
				t.Errorf("home email = %v, want kept and no longer primary", e)
			}
		case "work":
			work++
			if e["value"] != "new@example.org" || e["primary"] != true {
				t.Errorf("work email = %v", e)
			}
		}
	}
	if home != 1 || work != 1 {
		t.Fatalf("emails = %v, want the home one kept and one work one", res["emails"])
	}
}

func TestClearedMailRemovesOnlyTheWorkAddress(t *testing.T) {
	m, _ := New(nil)
	u := m.Map(account(map[string]any{"name": "alice", "mail": nil, "status": int64(1)}))
	for _, tt := range []struct {
		name       string
		emails     string
		wantRemove bool
		remaining  int // values left by Apply and Remaining
	}{
		{"work and home", `[{"value":"old@example.org","type":"work","primary":true},{"value":"me@home.example","type":"home"}]`, true, 1},
		{"only home: no drift", `[{"value":"me@home.example","type":"home"}]`, false, 1},
		{"only work", `[{"value":"old@example.org","type":"work"}]`, true, 0},
		{"an untyped value may be ours", `[{"value":"old@example.org"}]`, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var res map[string]any
			json.Unmarshal([]byte(`{"userName":"alice","active":true,"emails":`+tt.emails+`}`), &res)
			c := m.Compare(u, res)
			if got := slices.Contains(c.Remove, "emails"); got != tt.wantRemove {
				t.Fatalf("Compare = %+v, want emails removed %v", c, tt.wantRemove)
			}
			rest, _ := m.Remaining(res, "emails").([]any)
			if len(rest) != tt.remaining {
				t.Fatalf("Remaining = %v, want %d values", rest, tt.remaining)
			}
			m.Apply(res, u, removal("emails"))
			if got, _ := res["emails"].([]any); len(got) != tt.remaining {
				t.Fatalf("after Apply emails = %v, want %d values", res["emails"], tt.remaining)
			}
			if got := m.Compare(u, res); got.Has("emails") {
				t.Fatalf("after Apply, Compare = %+v", got)
			}
		})
	}
}

func removal(path string) Changes { return Changes{Remove: []string{path}} }

// BenchmarkMapAndDiff is the per-change CPU cost of deciding what to send.
func BenchmarkMapAndDiff(b *testing.B) {
	m, _ := New(map[string]string{"name.givenName": "field_first_name", "roles": "roles"})
	a := account(map[string]any{"name": "alice", "mail": "alice@example.org", "status": int64(1),
		"timezone": "Europe/Paris", "preferred_langcode": "en", "roles": []string{"editor", "admin"},
		"field_first_name.field_first_name_value": "Alice"})
	pushed := m.Map(a).Fingerprints()
	b.ReportAllocs()
	for b.Loop() {
		if c := m.Diff(m.Map(a), pushed); !c.Empty() {
			b.Fatal("changes")
		}
	}
}
