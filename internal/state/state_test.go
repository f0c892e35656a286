package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccountsAndMetaSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := Account{UID: 42, SCIMID: "srv-42", UserName: "alice", Pushed: map[string]uint64{"userName": 7}, Active: true,
		Version: `W/"3"`, OwnValuesOnly: true, Parked: &Parked{Op: "update", Status: 400, Detail: "bad mail", At: time.Now(), Failures: 1}}
	if err := s.PutAccount(a); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAccount(Account{UID: 7, SCIMID: "srv-7"}); err != nil {
		t.Fatal(err)
	}
	type pos struct{ File string }
	if err := s.PutMeta("position", pos{"bin.000002"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok, err := s.Account(42)
	if err != nil || !ok || got.SCIMID != "srv-42" || got.Pushed["userName"] != 7 || got.Parked == nil || got.Parked.Detail != "bad mail" ||
		got.Version != `W/"3"` || !got.OwnValuesOnly {
		t.Fatalf("Account(42) = %+v, %v, %v", got, ok, err)
	}
	if _, ok, _ := s.Account(1); ok {
		t.Fatal("Account(1) found")
	}
	var uids []uint32
	s.ForEachAccount(func(a Account) error { uids = append(uids, a.UID); return nil })
	if len(uids) != 2 || uids[0] != 7 || uids[1] != 42 {
		t.Fatalf("ForEachAccount order = %v, want [7 42]", uids)
	}
	parked, _ := s.Parked()
	if len(parked) != 1 || parked[0].UID != 42 {
		t.Fatalf("Parked() = %+v", parked)
	}
	var p pos
	if ok, err := s.Meta("position", &p); !ok || err != nil || p.File != "bin.000002" {
		t.Fatalf("Meta = %+v %v %v", p, ok, err)
	}
	if uid, ok, err := s.UIDBySCIMID("srv-42"); !ok || uid != 42 || err != nil {
		t.Fatalf("UIDBySCIMID(srv-42) = %d, %v, %v", uid, ok, err)
	}
	// A new SCIM id replaces the old index entry.
	got.SCIMID = "srv-42b"
	if err := s.PutAccount(got); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.UIDBySCIMID("srv-42"); ok {
		t.Fatal("old SCIM id still indexed")
	}
	if err := s.DeleteAccount(42); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.UIDBySCIMID("srv-42b"); ok {
		t.Fatal("deleted account still indexed")
	}
	if n, _ := s.CountAccounts(); n != 1 {
		t.Fatalf("CountAccounts = %d after delete", n)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, 50*time.Millisecond)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
}

// TestOpenCreatesAMissingDirectory: the agent (and sync with no agent
// running) creates the state file's directory, private, as the systemd
// unit and the image would.
func TestOpenCreatesAMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "scim-agent")
	s, err := Open(filepath.Join(dir, "state.db"), 0)
	if err != nil {
		t.Fatalf("Open under a missing directory: %v", err)
	}
	s.Close()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v; want a directory with mode 0700", d, fi.Mode(), err)
		}
	}
}

// TestOpenExistingCreatesNothing: status and approve-deletes keep failing
// on a missing file, and leave no directory behind.
func TestOpenExistingCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "state.db")
	_, err := OpenExisting(path, 0)
	if !errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), "no state file at "+path) {
		t.Fatalf("OpenExisting under a missing directory: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("OpenExisting created %s: %v", dir, err)
	}
}

// TestOpenErrorNamesThePathOnce: bbolt's error already holds the path;
// the message must say it once, with the key it comes from.
func TestOpenErrorNamesThePathOnce(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(blocker, "state.db"), // a regular file where the directory should be
		dir,                                // a directory where the file should be
	} {
		_, err := Open(path, 0)
		if err == nil || strings.Count(err.Error(), path) != 1 || !strings.Contains(err.Error(), "state.path") {
			t.Errorf("Open(%s) = %v, want an error naming state.path and the path once", path, err)
		}
	}
}
