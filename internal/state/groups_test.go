package state

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestGroupsSurviveReopenWithTheirIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutGroup(Group{Role: "editor", SCIMID: "g-1", DisplayName: "Rédaction", Members: []string{"u-1", "u-2"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutGroup(Group{Role: "staff", Creating: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path, 0); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, ok, err := s.Group("editor")
	if err != nil || !ok || g.SCIMID != "g-1" || g.DisplayName != "Rédaction" || !slices.Equal(g.Members, []string{"u-1", "u-2"}) {
		t.Fatalf("Group(editor) = %+v, %v, %v", g, ok, err)
	}
	if role, ok, _ := s.RoleBySCIMID("g-1"); !ok || role != "editor" {
		t.Fatalf("RoleBySCIMID(g-1) = %q, %v", role, ok)
	}
	// A new id moves the index.
	g.SCIMID = "g-2"
	if err := s.PutGroup(g); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.RoleBySCIMID("g-1"); ok {
		t.Fatal("the old SCIM id still names the role")
	}
	var roles []string
	s.ForEachGroup(func(g Group) error { roles = append(roles, g.Role); return nil })
	if !slices.Equal(roles, []string{"editor", "staff"}) {
		t.Fatalf("ForEachGroup = %v", roles)
	}
	if err := s.DeleteGroup("editor"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Group("editor"); ok {
		t.Fatal("deleted group still there")
	}
	if _, ok, _ := s.RoleBySCIMID("g-2"); ok {
		t.Fatal("deleted group's id still indexed")
	}
}
