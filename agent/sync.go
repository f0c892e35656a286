package agent

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/state"
)

// syncPageSize is how many uids a full sync reads and queues at once.
const syncPageSize = 500

// progressEvery is how often a full sync or drift repair logs progress.
var progressEvery = 5 * time.Second

// FullSync reconciles every Drupal user, and every uid the state file
// knows whose Drupal user is gone, through the workers of a running Run.
// It reads uids a page at a time and keeps at most two pages queued, so
// neither the users table nor the work is held in memory.
func (a *Agent) FullSync(ctx context.Context, reason string) error {
	total, err := a.kinds.users.reader.Count(ctx)
	if err != nil {
		return err
	}
	known, err := a.knownUIDs()
	if err != nil {
		return err
	}
	a.log.Info(MsgSyncStart, zap.String("reason", reason), zap.Int("total", total), zap.Int("known", len(known)))
	a.metrics.syncStarted(total)
	s := &fullSync{a: a, known: known, total: total, start: time.Now(), lastLog: time.Now()}
	for uids, err := range a.kinds.users.reader.UIDPages(ctx, syncPageSize) {
		if err != nil {
			return err
		}
		if err := s.page(ctx, uids, uids[len(uids)-1]); err != nil {
			return err
		}
	}
	// Known uids after the last Drupal user are gone too.
	if err := s.page(ctx, nil, ^uint32(0)); err != nil {
		return err
	}
	if err := s.wait(ctx, 0); err != nil {
		return err
	}
	// Groups after users: their members are the users' accounts.
	roles, err := a.roleKeys(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < len(roles); i += syncPageSize {
		if err := a.work.wait(ctx, a.work.ask(roles[i:min(i+syncPageSize, len(roles))], "sync", false, false)); err != nil {
			return err
		}
	}
	a.log.Info(MsgSyncDone, zap.String("reason", reason), zap.Int("done", s.done), zap.Int("total", total),
		zap.Int64("duration_ms", time.Since(s.start).Milliseconds()))
	return nil
}

// fullSync is one full sync in progress: the pages queued and not yet
// done, and the known uids not yet passed.
type fullSync struct {
	a        *Agent
	known    []uint32 // uids of the state file's records not yet passed, sorted
	inflight []*request
	sizes    []int
	done     int
	total    int
	start    time.Time
	lastLog  time.Time
}

// page queues the uids of one page of Drupal users, and the known uids up
// to upTo that Drupal no longer has, then waits while two pages are
// queued.
func (s *fullSync) page(ctx context.Context, uids []uint32, upTo uint32) error {
	keys := make([]key, 0, len(uids))
	for _, uid := range uids {
		if !s.a.cfg.Provisioning.Excluded(uid) {
			keys = append(keys, userKey(uid))
		}
	}
	for len(s.known) > 0 && s.known[0] <= upTo {
		if _, found := slices.BinarySearch(uids, s.known[0]); !found {
			keys = append(keys, userKey(s.known[0]))
		}
		s.known = s.known[1:]
	}
	if len(keys) == 0 {
		return nil
	}
	req := s.a.work.ask(keys, "sync", false, false)
	if req == nil {
		return ctx.Err()
	}
	s.inflight, s.sizes = append(s.inflight, req), append(s.sizes, len(keys))
	if err := s.wait(ctx, 1); err != nil {
		return err
	}
	if time.Since(s.lastLog) >= progressEvery {
		s.lastLog = time.Now()
		s.a.log.Info(MsgSyncProgress, zap.Int("done", s.done), zap.Int("total", s.total),
			zap.Float64("rate_per_s", float64(s.done)/time.Since(s.start).Seconds()))
	}
	return nil
}

// wait waits until at most limit pages are queued.
func (s *fullSync) wait(ctx context.Context, limit int) error {
	for len(s.inflight) > limit {
		if err := s.a.work.wait(ctx, s.inflight[0]); err != nil {
			return err
		}
		s.done += s.sizes[0]
		s.inflight, s.sizes = s.inflight[1:], s.sizes[1:]
		s.a.metrics.syncProgressed(s.done)
	}
	return nil
}

// roleKeys returns the keys of every role provisioned as a group, and of
// every role the state file has a group of (deleted or no longer
// selected: their reconcile says what becomes of the group). None when
// groups are off and no group is recorded.
func (a *Agent) roleKeys(ctx context.Context) ([]key, error) {
	seen := map[string]bool{}
	var keys []key
	if a.cfg.Groups.Enabled {
		ids, err := a.kinds.users.reader.RoleIDs(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if a.cfg.Groups.Selects(id) && !seen[id] {
				seen[id] = true
				keys = append(keys, roleKey(id))
			}
		}
	}
	err := a.store.ForEachGroup(func(g state.Group) error {
		if !seen[g.Role] {
			seen[g.Role] = true
			keys = append(keys, roleKey(g.Role))
		}
		return nil
	})
	return keys, err
}

// knownUIDs returns the uids of the state file's records, sorted.
func (a *Agent) knownUIDs() ([]uint32, error) { return a.store.AccountUIDs() }
