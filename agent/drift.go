package agent

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/scimclient"
)

// Log messages of the scheduled reconcile.
const (
	// MsgDriftStart (info): a drift repair begins; managed is the number
	// of accounts the agent provisions.
	MsgDriftStart = "drift.start"
	// MsgDriftProgress (info): server users compared so far: done, total,
	// rate_per_s.
	MsgDriftProgress = "drift.progress"
	// MsgDriftDone (info): checked (server users compared), drifted
	// (managed accounts that differ from Drupal), orphans (managed
	// accounts whose Drupal user is gone), missing (managed accounts gone
	// from the server), unprovisioned (Drupal users with no account),
	// unreadable (server accounts too large to read even alone: skipped,
	// and then none counts as missing), duration_ms.
	MsgDriftDone = "drift.done"
	// MsgDriftFailed (error): a drift repair stopped early; the next one
	// starts over.
	MsgDriftFailed = "drift.failed"
)

// driftPageSize is the count asked per page of GET /Users.
const driftPageSize = 100

// DriftReport counts what one drift repair found.
type DriftReport struct {
	Checked       int `json:"checked"`
	Drifted       int `json:"drifted"`
	Orphans       int `json:"orphans"`
	Missing       int `json:"missing"`
	Unprovisioned int `json:"unprovisioned"`
	// Unreadable counts server accounts too large to read even alone.
	Unreadable int `json:"unreadable"`
}

// runDriftRepairs repairs drift every interval until ctx is done.
func (a *Agent) runDriftRepairs(ctx context.Context, period time.Duration) {
	every(ctx, period, func() {
		if !a.syncDone.Load() {
			return // a full sync is running: it does the same and more
		}
		if _, err := a.RepairDrift(ctx); err != nil && ctx.Err() == nil {
			a.log.Error(MsgDriftFailed, zap.Error(err))
		}
	})
}

// RepairDrift makes every account the agent manages equal to Drupal again,
// whatever happened on the server meanwhile: it walks the server's users
// page by page (startIndex/count until totalResults) and compares each
// managed one with Drupal's user; then it reconciles, through the workers
// and with a fresh GET of the server's copy, every account that differs,
// whose Drupal user is gone (deleted or deactivated per on_delete), that
// is gone from the server (created again), and every Drupal user with no
// account. Accounts the agent did not create or adopt are never touched.
// It runs beside the binlog stream; cancelling ctx stops it.
func (a *Agent) RepairDrift(ctx context.Context) (DriftReport, error) {
	var rep DriftReport
	start := time.Now()
	byID := map[string]uint32{}
	known := map[uint32]bool{}
	err := a.store.ForEachAccount(func(acc state.Account) error {
		known[acc.UID] = true
		if acc.SCIMID != "" {
			byID[acc.SCIMID] = acc.UID
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	a.log.Info(MsgDriftStart, zap.Int("managed", len(byID)))

	var flagged []uint32
	listed := map[uint32]bool{}
	lastLog := time.Now()
	count := driftPageSize
	for startIndex := 1; ; {
		page, cr, err := a.client.ListUsers(ctx, "", startIndex, count)
		a.logList(startIndex, cr, err)
		if errors.Is(err, scimclient.ErrResponseTooLarge) {
			// Big accounts (many groups, large attributes): ask for
			// fewer at a time, and skip one too large to read alone.
			if count > 1 {
				count /= 2
				continue
			}
			rep.Unreadable++
			startIndex++
			continue
		}
		if err != nil {
			return rep, err
		}
		server := map[uint32]scimclient.Resource{}
		uids := make([]uint32, 0, len(page.Resources))
		for _, res := range page.Resources {
			id, _ := res["id"].(string)
			uid, managed := byID[id]
			if !managed || a.cfg.Provisioning.Excluded(uid) {
				continue
			}
			listed[uid] = true
			server[uid] = res
			uids = append(uids, uid)
		}
		accounts, err := a.reader.LoadMany(ctx, uids)
		if err != nil {
			return rep, err
		}
		for _, uid := range uids {
			acct, exists := accounts[uid]
			switch {
			case !exists:
				rep.Orphans++
				flagged = append(flagged, uid)
			case acct.Values == nil:
			case !a.mapper.Compare(a.mapper.Map(acct), server[uid]).Empty():
				rep.Drifted++
				flagged = append(flagged, uid)
			}
		}
		rep.Checked += len(page.Resources)
		if time.Since(lastLog) >= progressEvery {
			lastLog = time.Now()
			a.log.Info(MsgDriftProgress, zap.Int("done", rep.Checked), zap.Int("total", page.TotalResults),
				zap.Float64("rate_per_s", float64(rep.Checked)/time.Since(start).Seconds()))
		}
		if len(page.Resources) == 0 || startIndex+len(page.Resources)-1 >= page.TotalResults {
			break
		}
		startIndex += len(page.Resources)
	}
	for _, uid := range byID {
		if rep.Unreadable > 0 {
			// An account skipped unread may be any of them: none is
			// known to be missing.
			break
		}
		if !listed[uid] && !a.cfg.Provisioning.Excluded(uid) {
			rep.Missing++
			flagged = append(flagged, uid)
		}
	}
	for from := uint32(0); ; {
		uids, err := a.reader.UIDs(ctx, from, syncPageSize)
		if err != nil {
			return rep, err
		}
		for _, uid := range uids {
			if !known[uid] && !a.cfg.Provisioning.Excluded(uid) {
				rep.Unprovisioned++
				flagged = append(flagged, uid)
			}
		}
		if len(uids) < syncPageSize {
			break
		}
		from = uids[len(uids)-1] + 1
	}

	for i := 0; i < len(flagged); i += syncPageSize {
		chunk := flagged[i:min(i+syncPageSize, len(flagged))]
		for _, uid := range chunk {
			a.verify.Store(uid, true)
		}
		done := a.work.Add(chunk, nil, time.Now(), "reconcile")
		if done == nil {
			return rep, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-done:
		}
	}
	a.log.Info(MsgDriftDone, zap.Int("checked", rep.Checked), zap.Int("drifted", rep.Drifted), zap.Int("orphans", rep.Orphans),
		zap.Int("missing", rep.Missing), zap.Int("unprovisioned", rep.Unprovisioned), zap.Int("unreadable", rep.Unreadable),
		zap.Int64("duration_ms", time.Since(start).Milliseconds()))
	return rep, nil
}

// logList writes the one line per SCIM call for a page of GET /Users.
func (a *Agent) logList(startIndex int, cr scimclient.Result, err error) {
	a.noteAnswer(http.MethodGet, cr, err)
	fields := []zap.Field{zap.String("op", OpLookup), zap.Uint32("uid", 0), zap.String("userName", ""), zap.String("scim_id", ""),
		zap.String("method", http.MethodGet), zap.String("path", "/Users?startIndex="+strconv.Itoa(startIndex)),
		zap.Int("status", cr.Status), zap.Int("attempt", cr.Attempts), zap.Int64("duration_ms", cr.Duration.Milliseconds()),
		zap.String("binlog_pos", "reconcile")}
	if err != nil {
		a.log.Warn(MsgSCIMRequest, append(fields, zap.Error(err))...)
		return
	}
	a.log.Info(MsgSCIMRequest, fields...)
}
