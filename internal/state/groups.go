package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketGroups       = []byte("groups")         // role machine name → Group
	bucketGroupSCIMIDs = []byte("group_scim_ids") // SCIM id → role, kept by PutGroup and DeleteGroup
)

// Group is what the agent knows of one Drupal role's group on the
// server. Members are what was pushed: some servers (AWS IAM Identity
// Center) never return a group's members, so the agent must remember them.
type Group struct {
	Role string `json:"role"`
	// SCIMID is the server's id of the group; "" while none is known.
	SCIMID string `json:"scim_id,omitempty"`
	// DisplayName is the label last pushed.
	DisplayName string `json:"display_name,omitempty"`
	// Members are the SCIM ids of the users pushed as members, sorted.
	Members []string `json:"members,omitempty"`
	// Creating is set before a POST and cleared once its outcome is saved
	// (see Account.Creating).
	Creating bool `json:"creating,omitempty"`
	// Kept marks a group whose role was deleted in Drupal and which was
	// kept, emptied (groups.on_role_delete: keep).
	Kept bool `json:"kept,omitempty"`
	// Version is the group's meta.version as last seen, for If-Match.
	Version string `json:"version,omitempty"`
	// Parked is set while the last attempt failed permanently.
	Parked *Parked `json:"parked,omitempty"`
	// Updated is when the record last changed.
	Updated time.Time `json:"updated"`
}

// ensureGroupBuckets creates the group buckets of a file written before
// groups existed.
func ensureGroupBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketGroups, bucketGroupSCIMIDs} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Group returns the record of role; ok is false when there is none.
func (s *Store) Group(role string) (g Group, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGroups).Get([]byte(role))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &g)
	})
	if err != nil {
		return g, false, fmt.Errorf("read state of role %s: %w", role, err)
	}
	return g, ok, nil
}

// PutGroup saves a group record, durably.
func (s *Store) PutGroup(g Group) error {
	g.Updated = time.Now().UTC()
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		groups, ids := tx.Bucket(bucketGroups), tx.Bucket(bucketGroupSCIMIDs)
		if err := unindexGroup(groups, ids, g.Role); err != nil {
			return err
		}
		if g.SCIMID != "" {
			if err := ids.Put([]byte(g.SCIMID), []byte(g.Role)); err != nil {
				return err
			}
		}
		return groups.Put([]byte(g.Role), v)
	})
	if err != nil {
		return fmt.Errorf("save state of role %s: %w", g.Role, err)
	}
	return nil
}

// unindexGroup drops the SCIM id index entry of role's current record.
func unindexGroup(groups, ids *bolt.Bucket, role string) error {
	old := groups.Get([]byte(role))
	if old == nil {
		return nil
	}
	var prev Group
	if err := json.Unmarshal(old, &prev); err != nil {
		return err
	}
	if prev.SCIMID == "" {
		return nil
	}
	return ids.Delete([]byte(prev.SCIMID))
}

// DeleteGroup forgets role's group.
func (s *Store) DeleteGroup(role string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		if err := unindexGroup(groups, tx.Bucket(bucketGroupSCIMIDs), role); err != nil {
			return err
		}
		return groups.Delete([]byte(role))
	})
	if err != nil {
		return fmt.Errorf("delete state of role %s: %w", role, err)
	}
	return nil
}

// RoleBySCIMID returns the role whose group record holds the SCIM id.
func (s *Store) RoleBySCIMID(id string) (role string, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketGroupSCIMIDs).Get([]byte(id)); v != nil {
			role, ok = string(v), true
		}
		return nil
	})
	return role, ok, err
}

// ForEachGroup calls fn for every group record in role order, inside one
// read transaction; fn must not call Store methods that write.
func (s *Store) ForEachGroup(fn func(Group) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error {
			var g Group
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("decode state group record: %w", err)
			}
			return fn(g)
		})
	})
}
