// Package state is the agent's memory between runs, kept in one bbolt
// file: the binlog position up to which every change has been handled,
// and for each Drupal uid the SCIM id of its server account, hashes of
// what was last pushed, and why it is parked if it is.
//
// A bbolt file can be open in one process only; Open fails with ErrLocked
// when another scim-agent holds it.
package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketAccounts = []byte("accounts")
	bucketMeta     = []byte("meta")
	bucketParked   = []byte("parked") // uid → nothing, for each parked record
	bucketCounts   = []byte("counts") // "accounts" → the number of records (8 bytes)
	// bucketSCIMIDs was an index of SCIM ids (SCIM id → uid) in files
	// written before it was kept in memory (see Store.UIDBySCIMID):
	// deleted at Open.
	bucketSCIMIDs = []byte("scim_ids")
)

var countAccounts = []byte("accounts")

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("state file is in use by another scim-agent process")

// ErrNoState is wrapped by OpenExisting's error when the file does not
// exist.
var ErrNoState = errors.New("no state file")

// OpenExisting opens the state file like Open, but only when it exists:
// the commands that read or amend an agent's state (status,
// approve-deletes) must not create an empty one at a mistyped path and
// report on, or approve, nothing.
func OpenExisting(path string, lockTimeout time.Duration) (*Store, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (state.path): no agent has run with this config here yet, or the path is wrong", ErrNoState, path)
	}
	return Open(path, lockTimeout)
}

// Store is an open state file. Its methods are safe for concurrent use.
//
// Its writes are grouped into transactions (one fsync each, ~2.5 ms on a
// virtual disk): PutAccount, DeleteAccount and PutMeta return once their
// write is durable, and the writes of every goroutine waiting at the same
// time share one commit; PutAccountLater and DeleteAccountLater return at
// once, their write visible to every read of this Store and made durable,
// in order, by the next durable write or Flush (or within laterDelay). A
// crash loses later writes not yet committed, never a durable one, and
// never one staged before a durable write that returned.
type Store struct {
	db      *bolt.DB
	path    string
	w       *writer
	buildMu sync.Mutex // one build of the SCIM id index at a time
}

// Open opens (creating if needed) the state file at path, and its
// directory with mode 0700 when that is missing, as systemd's
// StateDirectory= or a container image would have made it. It waits up
// to lockTimeout for another process to release the file, then fails
// with ErrLocked.
func Open(path string, lockTimeout time.Duration) (*Store, error) {
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state.path %s: create its directory: %w", path, err)
	}
	// The freelist as a hash map, not written at each commit (it is
	// rebuilt from the pages at open): with every record rewritten once
	// or twice per provisioning, bbolt's default array freelist made
	// each page allocation slower as the file grew.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open state %s: %w", path, ErrLocked)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		// The driver's message names the path again: say it once.
		return nil, fmt.Errorf("open state %s (state.path): %s: %w", path, pe.Op, pe.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state %s (state.path): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := ensureGroupBuckets(tx); err != nil {
			return err
		}
		return buildIndexes(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return &Store{db: db, path: path, w: newWriter(db)}, nil
}

// buildIndexes builds the indexes a file written before them lacks (the
// parked uids, the count), with one pass over the records, and drops the
// SCIM id index older files kept (it is kept in memory now).
func buildIndexes(tx *bolt.Tx) error {
	if tx.Bucket(bucketSCIMIDs) != nil {
		if err := tx.DeleteBucket(bucketSCIMIDs); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketParked) != nil && tx.Bucket(bucketCounts) != nil {
		return nil
	}
	for _, b := range [][]byte{bucketParked, bucketCounts} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
	}
	parked, err := tx.CreateBucket(bucketParked)
	if err != nil {
		return err
	}
	counts, err := tx.CreateBucket(bucketCounts)
	if err != nil {
		return err
	}
	var n uint64
	err = tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
		a, err := unmarshalAccount(v)
		if err != nil {
			return fmt.Errorf("uid %d: %w", binary.BigEndian.Uint32(k), err)
		}
		n++
		if a.Parked != nil {
			return parked.Put(k, nil)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return counts.Put(countAccounts, binary.BigEndian.AppendUint64(nil, n))
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close commits the writes still staged and closes the file.
func (s *Store) Close() error {
	err := s.w.close()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close state %s: %w", s.path, err)
	}
	return nil
}

// Flush makes every write made so far durable. The agent calls it before
// it saves a binlog position, which must never pass a record it depends
// on.
func (s *Store) Flush() error {
	if err := s.w.flush(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// Account is what the agent knows of one Drupal uid's server account.
type Account struct {
	UID uint32 `json:"uid"`
	// SCIMID is the server's id of the account; "" while none is known.
	SCIMID string `json:"scim_id,omitempty"`
	// UserName and ExternalID are the values last pushed, for logs and
	// for finding the account again.
	UserName   string `json:"user_name,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
	// UUID is the Drupal uuid of the person the account was made for
	// (empty in records older than it). A uid can come back with another
	// uuid (a migration re-imported with its uids, a restore): that is
	// somebody else, who must not inherit this account.
	UUID string `json:"uuid,omitempty"`
	// Pushed holds a fingerprint of each SCIM path's value as last pushed.
	Pushed map[string]uint64 `json:"pushed,omitempty"`
	// Version is the account's version (ETag) as the agent last read or
	// wrote it, sent as If-Match with its next write to a server with
	// ETags; "" when unknown. A stale one costs a 412 and a read, never
	// an edit made on the server.
	Version string `json:"version,omitempty"`
	// OwnValuesOnly is true when, at Version, the account's typed lists
	// (the emails the agent keeps the work address of) held no value of
	// another type: a write of the whole list conditional on Version then
	// loses nothing of anybody else's, and needs no GET first.
	OwnValuesOnly bool `json:"own_values_only,omitempty"`
	// Active is the active value last pushed.
	Active bool `json:"active"`
	// Gone marks an account whose Drupal user was deleted and which was
	// deactivated on the server (provisioning.on_delete: deactivate).
	Gone bool `json:"gone,omitempty"`
	// OutOfScope marks an account the agent deactivated because its user
	// left provisioning.scope (out_of_scope: deactivate), or found
	// inactive then: it is no longer updated, is a member of no group,
	// and is reactivated when the user comes back in scope.
	OutOfScope bool `json:"out_of_scope,omitempty"`
	// Creating is set before a POST and cleared once its outcome is
	// saved: after a crash in between, the agent looks the account up on
	// the server before posting again.
	Creating bool `json:"creating,omitempty"`
	// Parked is set while the last attempt failed permanently.
	Parked *Parked `json:"parked,omitempty"`
	// Updated is when the record last changed.
	Updated time.Time `json:"updated"`
}

// Parked says why a uid's last reconcile failed permanently. It is tried
// again at its next change, at restart, and by `scim-agent retry`.
type Parked struct {
	Op       string    `json:"op"`
	Status   int       `json:"status,omitempty"`
	ScimType string    `json:"scim_type,omitempty"`
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`
	Failures int       `json:"failures"`
}

func uidKey(uid uint32) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uid)
	return k[:]
}

// Account returns the record of uid; ok is false when there is none.
func (s *Store) Account(uid uint32) (a Account, ok bool, err error) {
	if a, ok, found := s.w.account(uid); found {
		return a, ok, nil
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get(uidKey(uid))
		if v == nil {
			return nil
		}
		ok = true
		a, err = unmarshalAccount(v)
		return err
	})
	if err != nil {
		return a, false, fmt.Errorf("read state of uid %d: %w", uid, err)
	}
	return a, ok, nil
}

// Accounts returns the records of uids (those that have one), reading
// the file once.
func (s *Store) Accounts(uids []uint32) (map[uint32]Account, error) {
	out := make(map[uint32]Account, len(uids))
	var rest []uint32
	for _, uid := range uids {
		if a, ok, found := s.w.account(uid); !found {
			rest = append(rest, uid)
		} else if ok {
			out[uid] = a
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		for _, uid := range rest {
			v := b.Get(uidKey(uid))
			if v == nil {
				continue
			}
			a, err := unmarshalAccount(v)
			if err != nil {
				return fmt.Errorf("uid %d: %w", uid, err)
			}
			out[uid] = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read state of %d uids: %w", len(uids), err)
	}
	return out, nil
}

// PutAccount saves a record, durably: it returns once the record is on
// disk (with every write staged before it).
func (s *Store) PutAccount(a Account) error {
	return s.putAccount(a, true)
}

// PutAccounts saves records durably, in one commit.
func (s *Store) PutAccounts(accts []Account) error {
	if len(accts) == 0 {
		return nil
	}
	ps := make([]pending, len(accts))
	for i, a := range accts {
		p, err := encode(a)
		if err != nil {
			return err
		}
		ps[i] = p
	}
	n, err := s.w.stage(ps, nil)
	if err == nil {
		err = s.w.wait(n)
	}
	if err != nil {
		return fmt.Errorf("save state of %d uids: %w", len(accts), err)
	}
	return nil
}

// encode stamps a copy of a and encodes it for the file.
func encode(a Account) (pending, error) {
	a = a.clone()
	a.Updated = time.Now().UTC()
	return pending{acct: a, raw: marshalAccount(a)}, nil
}

// PutAccountLater saves a record without waiting for the disk: reads see
// it at once, and it is durable after the next Flush or durable write.
// Use it for records whose loss in a crash the agent recovers from by
// itself (it replays from a position saved after a Flush).
func (s *Store) PutAccountLater(a Account) error {
	return s.putAccount(a, false)
}

func (s *Store) putAccount(a Account, durable bool) error {
	p, err := encode(a)
	if err != nil {
		return err
	}
	n, err := s.w.stage([]pending{p}, nil)
	if err == nil && durable {
		err = s.w.wait(n)
	}
	if err != nil {
		return fmt.Errorf("save state of uid %d: %w", a.UID, err)
	}
	return nil
}

// UIDBySCIMID returns the uid whose record holds the SCIM id, if any.
//
// The index of SCIM ids is kept in memory, built from the records at the
// first call (the agent asks only when the server already holds an
// account it is about to create, a rare path): a file index would cost a
// random insert into a B+tree, and its pages in the agent's memory, for
// every account created. An entry is checked against the uid's current
// record, so one left behind by a record that changed or went means
// nothing.
func (s *Store) UIDBySCIMID(id string) (uid uint32, ok bool, err error) {
	if err := s.buildIDs(); err != nil {
		return 0, false, fmt.Errorf("index SCIM ids: %w", err)
	}
	s.w.mu.Lock()
	uid, ok = s.w.ids[id]
	s.w.mu.Unlock()
	if !ok {
		return 0, false, nil
	}
	a, exists, err := s.Account(uid)
	if err != nil {
		return 0, false, err
	}
	if !exists || a.SCIMID != id {
		return 0, false, nil
	}
	return uid, true, nil
}

// buildIDs builds the in-memory index of SCIM ids once: the records on
// disk, then the writes staged and in flight (newer).
func (s *Store) buildIDs() error {
	s.w.mu.Lock()
	built := s.w.ids != nil
	s.w.mu.Unlock()
	if built {
		return nil
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	if err := s.Flush(); err != nil {
		return err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.ids != nil {
		return nil
	}
	ids := map[string]uint32{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			id, err := scimIDOf(v)
			if err != nil {
				return fmt.Errorf("uid %d: %w", binary.BigEndian.Uint32(k), err)
			}
			if id != "" {
				ids[id] = binary.BigEndian.Uint32(k)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, m := range []map[uint32]pending{s.w.flight, s.w.staged} {
		for uid, p := range m {
			if !p.deleted && p.acct.SCIMID != "" {
				ids[p.acct.SCIMID] = uid
			}
		}
	}
	s.w.ids = ids
	return nil
}

// DeleteAccount forgets uid, durably.
func (s *Store) DeleteAccount(uid uint32) error {
	return s.deleteAccount(uid, true)
}

// DeleteAccountLater forgets uid without waiting for the disk (see
// PutAccountLater).
func (s *Store) DeleteAccountLater(uid uint32) error {
	return s.deleteAccount(uid, false)
}

func (s *Store) deleteAccount(uid uint32, durable bool) error {
	n, err := s.w.stage([]pending{{acct: Account{UID: uid}, deleted: true}}, nil)
	if err == nil && durable {
		err = s.w.wait(n)
	}
	if err != nil {
		return fmt.Errorf("delete state of uid %d: %w", uid, err)
	}
	return nil
}

// ForEachAccount calls fn for every record in uid order, inside one read
// transaction (of the writes made before the call); fn must not call
// other Store methods that write.
func (s *Store) ForEachAccount(fn func(Account) error) error {
	if err := s.Flush(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			a, err := unmarshalAccount(v)
			if err != nil {
				return fmt.Errorf("decode state record of uid %d: %w", binary.BigEndian.Uint32(k), err)
			}
			return fn(a)
		})
	})
}

// AccountUIDs returns the uids that have a record, in order, without
// decoding the records.
func (s *Store) AccountUIDs() ([]uint32, error) {
	if err := s.Flush(); err != nil {
		return nil, err
	}
	var uids []uint32
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, _ []byte) error {
			uids = append(uids, binary.BigEndian.Uint32(k))
			return nil
		})
	})
	return uids, err
}

// Parked returns the records of every parked uid (from their index: the
// records of the others are not read).
func (s *Store) Parked() ([]Account, error) {
	if err := s.Flush(); err != nil {
		return nil, err
	}
	var out []Account
	err := s.db.View(func(tx *bolt.Tx) error {
		accounts := tx.Bucket(bucketAccounts)
		return tx.Bucket(bucketParked).ForEach(func(k, _ []byte) error {
			a, err := unmarshalAccount(accounts.Get(k))
			if err != nil {
				return fmt.Errorf("decode state record of uid %d: %w", binary.BigEndian.Uint32(k), err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// CountAccounts returns the number of records.
func (s *Store) CountAccounts() (n int, err error) {
	if err := s.Flush(); err != nil {
		return 0, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		n = int(binary.BigEndian.Uint64(tx.Bucket(bucketCounts).Get(countAccounts)))
		return nil
	})
	return n, err
}

// Meta decodes the JSON value stored under key into v; ok is false when
// there is none.
func (s *Store) Meta(key string, v any) (ok bool, err error) {
	b, found := s.w.meta(key)
	if !found {
		err = s.db.View(func(tx *bolt.Tx) error {
			b = bytes.Clone(tx.Bucket(bucketMeta).Get([]byte(key)))
			return nil
		})
	}
	if err == nil && b != nil {
		ok, err = true, json.Unmarshal(b, v)
	}
	if err != nil {
		return false, fmt.Errorf("read state %s: %w", key, err)
	}
	return ok, nil
}

// PutMeta stores v as JSON under key, durably, with every write staged
// before it (in the same transaction, or an earlier one).
func (s *Store) PutMeta(key string, v any) error {
	b, err := json.Marshal(v)
	if err == nil {
		err = s.putMeta(key, b)
	}
	if err != nil {
		return fmt.Errorf("save state %s: %w", key, err)
	}
	return nil
}

// DeleteMeta removes key, durably.
func (s *Store) DeleteMeta(key string) error {
	if err := s.putMeta(key, nil); err != nil {
		return fmt.Errorf("delete state %s: %w", key, err)
	}
	return nil
}

func (s *Store) putMeta(key string, b []byte) error {
	n, err := s.w.stage(nil, map[string][]byte{key: b})
	if err != nil {
		return err
	}
	return s.w.wait(n)
}
