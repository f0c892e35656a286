// Package state is the agent's memory between runs, kept in one bbolt
// file: the binlog position up to which every change has been handled,
// and for each Drupal uid the SCIM id of its server account, hashes of
// what was last pushed, and why it is parked if it is.
//
// A bbolt file can be open in one process only; Open fails with ErrLocked
// when another scim-agent holds it.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketAccounts = []byte("accounts")
	bucketMeta     = []byte("meta")
	bucketSCIMIDs  = []byte("scim_ids") // SCIM id → uid, kept by PutAccount and DeleteAccount
)

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
type Store struct {
	db   *bolt.DB
	path string
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
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
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
		if tx.Bucket(bucketSCIMIDs) != nil {
			return nil
		}
		// A file written before the index existed: build it.
		ids, err := tx.CreateBucket(bucketSCIMIDs)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			if a.SCIMID == "" {
				return nil
			}
			return ids.Put([]byte(a.SCIMID), k)
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

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
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get(uidKey(uid))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &a)
	})
	if err != nil {
		return a, false, fmt.Errorf("read state of uid %d: %w", uid, err)
	}
	return a, ok, nil
}

// PutAccount saves a record, durably.
func (s *Store) PutAccount(a Account) error {
	a.Updated = time.Now().UTC()
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		accounts, ids := tx.Bucket(bucketAccounts), tx.Bucket(bucketSCIMIDs)
		if err := unindex(accounts, ids, a.UID); err != nil {
			return err
		}
		if a.SCIMID != "" {
			if err := ids.Put([]byte(a.SCIMID), uidKey(a.UID)); err != nil {
				return err
			}
		}
		return accounts.Put(uidKey(a.UID), v)
	})
	if err != nil {
		return fmt.Errorf("save state of uid %d: %w", a.UID, err)
	}
	return nil
}

// unindex drops the SCIM id index entry of uid's current record.
func unindex(accounts, ids *bolt.Bucket, uid uint32) error {
	old := accounts.Get(uidKey(uid))
	if old == nil {
		return nil
	}
	var prev Account
	if err := json.Unmarshal(old, &prev); err != nil {
		return err
	}
	if prev.SCIMID == "" {
		return nil
	}
	return ids.Delete([]byte(prev.SCIMID))
}

// UIDBySCIMID returns the uid whose record holds the SCIM id, if any.
func (s *Store) UIDBySCIMID(id string) (uid uint32, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSCIMIDs).Get([]byte(id))
		if len(v) == 4 {
			uid, ok = binary.BigEndian.Uint32(v), true
		}
		return nil
	})
	return uid, ok, err
}

// DeleteAccount forgets uid.
func (s *Store) DeleteAccount(uid uint32) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		accounts := tx.Bucket(bucketAccounts)
		if err := unindex(accounts, tx.Bucket(bucketSCIMIDs), uid); err != nil {
			return err
		}
		return accounts.Delete(uidKey(uid))
	})
	if err != nil {
		return fmt.Errorf("delete state of uid %d: %w", uid, err)
	}
	return nil
}

// ForEachAccount calls fn for every record in uid order, inside one read
// transaction; fn must not call other Store methods that write.
func (s *Store) ForEachAccount(fn func(Account) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode state record: %w", err)
			}
			return fn(a)
		})
	})
}

// Parked returns the records of every parked uid.
func (s *Store) Parked() ([]Account, error) {
	var out []Account
	err := s.ForEachAccount(func(a Account) error {
		if a.Parked != nil {
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// CountAccounts returns the number of records.
func (s *Store) CountAccounts() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketAccounts).Stats().KeyN
		return nil
	})
	return n, err
}

// Meta decodes the JSON value stored under key into v; ok is false when
// there is none.
func (s *Store) Meta(key string, v any) (ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta).Get([]byte(key))
		if b == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(b, v)
	})
	if err != nil {
		return false, fmt.Errorf("read state %s: %w", key, err)
	}
	return ok, nil
}

// PutMeta stores v as JSON under key, durably.
func (s *Store) PutMeta(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), b)
	})
	if err != nil {
		return fmt.Errorf("save state %s: %w", key, err)
	}
	return nil
}

// DeleteMeta removes key.
func (s *Store) DeleteMeta(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete([]byte(key))
	})
}
