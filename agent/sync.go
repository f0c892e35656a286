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
	start := time.Now()
	total, err := a.reader.Count(ctx)
	if err != nil {
		return err
	}
	known, err := a.knownUIDs()
	if err != nil {
		return err
	}
	a.log.Info(MsgSyncStart, zap.String("reason", reason), zap.Int("total", total), zap.Int("known", len(known)))
	a.metrics.syncTotal.Set(float64(total))
	a.metrics.syncDone.Set(0)

	type page struct {
		done <-chan struct{}
		n    int
	}
	var (
		inflight  []page
		done      int
		from      uint32
		lastLog   = time.Now()
		exhausted bool
	)
	wait := func(limit int) error {
		for len(inflight) > limit {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-inflight[0].done:
				done += inflight[0].n
				inflight = inflight[1:]
				a.metrics.syncDone.Set(float64(done))
			}
		}
		return nil
	}
	for !exhausted {
		uids, err := a.reader.UIDs(ctx, from, syncPageSize)
		if err != nil {
			return err
		}
		exhausted = len(uids) < syncPageSize
		upTo := ^uint32(0)
		if !exhausted {
			upTo = uids[len(uids)-1]
			from = upTo + 1
		}
		// uids the state knows up to here that Drupal no longer has.
		batch := make([]uint32, 0, len(uids))
		for _, uid := range uids {
			if !a.cfg.Provisioning.Excluded(uid) {
				batch = append(batch, uid)
			}
		}
		for len(known) > 0 && known[0] <= upTo {
			if _, found := slices.BinarySearch(uids, known[0]); !found {
				batch = append(batch, known[0])
			}
			known = known[1:]
		}
		ch := a.work.Add(batch, nil, time.Now(), "sync")
		if ch == nil {
			return ctx.Err()
		}
		inflight = append(inflight, page{ch, len(batch)})
		if err := wait(1); err != nil {
			return err
		}
		if time.Since(lastLog) >= progressEvery {
			lastLog = time.Now()
			a.log.Info(MsgSyncProgress, zap.Int("done", done), zap.Int("total", total),
				zap.Float64("rate_per_s", float64(done)/time.Since(start).Seconds()))
		}
	}
	if err := wait(0); err != nil {
		return err
	}
	a.log.Info(MsgSyncDone, zap.String("reason", reason), zap.Int("done", done), zap.Int("total", total),
		zap.Int64("duration_ms", time.Since(start).Milliseconds()))
	return nil
}

// knownUIDs returns the uids of the state file's records, sorted.
func (a *Agent) knownUIDs() ([]uint32, error) {
	var uids []uint32
	err := a.store.ForEachAccount(func(acc state.Account) error {
		uids = append(uids, acc.UID)
		return nil
	})
	return uids, err
}
