package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openTest opens a store in a temporary directory whose later writes wait
// for a durable write or a Flush (never for the timer or the batch size,
// which would make the tests depend on timing).
func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.w.mu.Lock()
	s.w.batch, s.w.delay = maxStaged, time.Hour
	s.w.mu.Unlock()
	return s
}

// crashImage copies the file as it is on disk now, as a crash would leave
// it, and opens the copy: it holds the committed transactions only.
func crashImage(t *testing.T, s *Store) *Store {
	t.Helper()
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crashed.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func has(t *testing.T, s *Store, uid uint32) bool {
	t.Helper()
	_, ok, err := s.Account(uid)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestLaterWritesAreSeenAtOnceAndDurableAfterAFlush: a later write is read
// back at once, is not on disk until a Flush, and is after it.
func TestLaterWritesAreSeenAtOnceAndDurableAfterAFlush(t *testing.T) {
	s := openTest(t)
	if err := s.PutAccountLater(Account{UID: 1, SCIMID: "one", UserName: "ann"}); err != nil {
		t.Fatal(err)
	}
	if a, ok, _ := s.Account(1); !ok || a.UserName != "ann" {
		t.Fatalf("Account(1) = %+v, %v: the later write is not seen", a, ok)
	}
	if has(t, crashImage(t, s), 1) {
		t.Fatal("the later write is on disk before any flush")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if !has(t, crashImage(t, s), 1) {
		t.Fatal("the later write is not on disk after Flush")
	}
}

// TestDurableWritesCarryTheEarlierOnes: a durable write, a position's
// PutMeta above all, is never on disk without the writes made before it
// (the crash rule: a position never passes a record it depends on).
func TestDurableWritesCarryTheEarlierOnes(t *testing.T) {
	for _, durable := range []struct {
		name  string
		write func(s *Store) error
	}{
		{"PutMeta", func(s *Store) error { return s.PutMeta("position", "bin.000002:4") }},
		{"PutAccount", func(s *Store) error { return s.PutAccount(Account{UID: 99}) }},
		{"DeleteAccount", func(s *Store) error { return s.DeleteAccount(98) }},
		{"DeleteMeta", func(s *Store) error { return s.DeleteMeta("nothing") }},
	} {
		t.Run(durable.name, func(t *testing.T) {
			s := openTest(t)
			for uid := uint32(1); uid <= 3; uid++ {
				if err := s.PutAccountLater(Account{UID: uid}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.DeleteAccountLater(2); err != nil {
				t.Fatal(err)
			}
			if err := durable.write(s); err != nil {
				t.Fatal(err)
			}
			c := crashImage(t, s)
			if !has(t, c, 1) || has(t, c, 2) || !has(t, c, 3) {
				t.Fatalf("after %s the disk holds uid 1 %v, 2 %v, 3 %v; want 1 and 3", durable.name, has(t, c, 1), has(t, c, 2), has(t, c, 3))
			}
		})
	}
}

// TestWaitingWritersShareACommit: durable writes made while a commit runs
// all go into the next one.
func TestWaitingWritersShareACommit(t *testing.T) {
	s := openTest(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	first := true
	s.w.mu.Lock()
	s.w.beforeEach = func() error {
		if first {
			first = false
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	s.w.mu.Unlock()
	errs := make(chan error, 11)
	go func() { errs <- s.PutAccount(Account{UID: 1}) }()
	<-entered // the first commit runs and waits
	var staged sync.WaitGroup
	for uid := uint32(2); uid <= 11; uid++ {
		staged.Add(1)
		go func() {
			staged.Done()
			errs <- s.PutAccount(Account{UID: uid})
		}()
	}
	staged.Wait()
	// Every writer has staged its write once 10 are waiting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.w.mu.Lock()
		n := len(s.w.staged)
		s.w.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes staged, want 10", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 11 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.w.mu.Lock()
	commits := s.w.commits
	s.w.mu.Unlock()
	if commits != 2 {
		t.Fatalf("%d commits for 11 durable writes, 10 of them made during the first: want 2", commits)
	}
	for uid := uint32(1); uid <= 11; uid++ {
		if !has(t, crashImage(t, s), uid) {
			t.Fatalf("uid %d not on disk", uid)
		}
	}
}

// TestAFailedCommitIsReportedAndTriedAgain: the writers of a commit that
// failed get its error; the writes stay visible and the next commit
// writes them.
func TestAFailedCommitIsReportedAndTriedAgain(t *testing.T) {
	s := openTest(t)
	fail := errors.New("disk full")
	failing := true
	s.w.mu.Lock()
	s.w.beforeEach = func() error {
		if failing {
			failing = false
			return fail
		}
		return nil
	}
	s.w.mu.Unlock()
	if err := s.PutAccountLater(Account{UID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAccount(Account{UID: 2}); !errors.Is(err, fail) || err.Error() != "save state of uid 2: disk full" {
		t.Fatalf("PutAccount = %v, want the commit's error naming the uid", err)
	}
	if !has(t, s, 1) || !has(t, s, 2) {
		t.Fatal("the failed writes are no longer seen")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := crashImage(t, s); !has(t, c, 1) || !has(t, c, 2) {
		t.Fatal("the writes of the failed commit were not written by the next")
	}
}

// TestSCIMIDIndexSeesLaterWrites: UIDBySCIMID answers from the newest
// record of each uid, staged or on disk.
func TestSCIMIDIndexSeesLaterWrites(t *testing.T) {
	s := openTest(t)
	if err := s.PutAccount(Account{UID: 1, SCIMID: "x"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		write func() error
		want  map[string]uint32 // SCIM id → uid, 0 for none
	}{
		{"on disk", func() error { return nil }, map[string]uint32{"x": 1, "y": 0}},
		{"renamed, staged", func() error { return s.PutAccountLater(Account{UID: 1, SCIMID: "y"}) }, map[string]uint32{"x": 0, "y": 1}},
		{"taken by another uid, staged", func() error { return s.PutAccountLater(Account{UID: 2, SCIMID: "x"}) }, map[string]uint32{"x": 2, "y": 1}},
		{"flushed", s.Flush, map[string]uint32{"x": 2, "y": 1}},
		{"deleted, staged", func() error { return s.DeleteAccountLater(1) }, map[string]uint32{"x": 2, "y": 0}},
		{"flushed again", s.Flush, map[string]uint32{"x": 2, "y": 0}},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		for id, want := range st.want {
			uid, ok, err := s.UIDBySCIMID(id)
			if err != nil || ok != (want != 0) || uid != want {
				t.Errorf("%s: UIDBySCIMID(%s) = %d, %v, %v; want %d", st.name, id, uid, ok, err, want)
			}
		}
	}
}

// TestCloseWritesWhatIsStaged: a clean stop loses nothing.
func TestCloseWritesWhatIsStaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for uid := uint32(1); uid <= 100; uid++ {
		if err := s.PutAccountLater(Account{UID: uid, UserName: fmt.Sprint(uid)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAccountLater(Account{UID: 101}); !errors.Is(err, errClosed) {
		t.Fatalf("a write after Close: %v", err)
	}
	s, err = Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.CountAccounts(); n != 100 || err != nil {
		t.Fatalf("%d records after reopening, %v; want 100", n, err)
	}
}

// TestAccountsReadsStagedAndFiledRecords: the batch read sees the same
// records as Account, staged or on disk, and PutAccounts is durable.
func TestAccountsReadsStagedAndFiledRecords(t *testing.T) {
	s := openTest(t)
	if err := s.PutAccounts([]Account{{UID: 1, UserName: "a"}, {UID: 2, UserName: "b"}, {UID: 3, UserName: "c"}}); err != nil {
		t.Fatal(err)
	}
	if c := crashImage(t, s); !has(t, c, 1) || !has(t, c, 3) {
		t.Fatal("PutAccounts returned before its records were on disk")
	}
	s.PutAccountLater(Account{UID: 2, UserName: "b2"})
	s.DeleteAccountLater(3)
	s.PutAccountLater(Account{UID: 4, UserName: "d"})
	got, err := s.Accounts([]uint32{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1].UserName != "a" || got[2].UserName != "b2" || got[4].UserName != "d" {
		t.Fatalf("Accounts = %+v, want 1 (filed), 2 and 4 (staged); 3 deleted, 5 none", got)
	}
}

// TestSCIMIDIndexBuiltWithWritesStaged: the first lookup builds the index
// from the file and the writes not yet on it; later writes keep it.
func TestSCIMIDIndexBuiltWithWritesStaged(t *testing.T) {
	s := openTest(t)
	s.PutAccount(Account{UID: 1, SCIMID: "on-disk"})
	s.PutAccountLater(Account{UID: 2, SCIMID: "staged"})
	s.PutAccountLater(Account{UID: 1, SCIMID: "renamed"})
	for id, want := range map[string]uint32{"on-disk": 0, "staged": 2, "renamed": 1} {
		if uid, ok, err := s.UIDBySCIMID(id); err != nil || ok != (want != 0) || uid != want {
			t.Errorf("UIDBySCIMID(%s) = %d, %v, %v; want %d", id, uid, ok, err, want)
		}
	}
	s.PutAccountLater(Account{UID: 3, SCIMID: "later"})
	s.DeleteAccountLater(2)
	for id, want := range map[string]uint32{"later": 3, "staged": 0} {
		if uid, ok, err := s.UIDBySCIMID(id); err != nil || ok != (want != 0) || uid != want {
			t.Errorf("after more writes: UIDBySCIMID(%s) = %d, %v, %v; want %d", id, uid, ok, err, want)
		}
	}
}
