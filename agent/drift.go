package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/internal/state"
	"github.com/scim-agent/scim-agent/mapping"
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
	// and then none counts as missing), groups (groups compared with
	// their roles), duration_ms.
	MsgDriftDone = "drift.done"
	// MsgDriftFailed (error): a drift repair stopped early; the next one
	// starts over.
	MsgDriftFailed = "drift.failed"
)

// driftPageSize is the count asked per page of GET /Users.
const driftPageSize = 100

// driftCause is the cause of a drift repair's reconciles, in their logs.
const driftCause = "drift"

// DriftReport counts what one drift repair found.
type DriftReport struct {
	Checked       int `json:"checked"`
	Drifted       int `json:"drifted"`
	Orphans       int `json:"orphans"`
	Missing       int `json:"missing"`
	Unprovisioned int `json:"unprovisioned"`
	// Unreadable counts server accounts too large to read even alone.
	Unreadable int `json:"unreadable"`
	// Groups counts the groups compared with their roles (and repaired:
	// members added or removed by hand, a group deleted on the server).
	Groups int `json:"groups"`
}

// runDriftRepairs repairs drift every interval until ctx is done.
func (a *Agent) runDriftRepairs(ctx context.Context) {
	every(ctx, a.opts.ReconcileInterval, func() {
		if !a.saved.synced.Load() {
			return // a full sync is running: it does the same and more
		}
		if _, err := a.RepairDrift(ctx); err != nil && ctx.Err() == nil {
			a.log.Error(MsgDriftFailed, zap.Error(err))
		}
	})
}

// RepairDrift makes every account the agent manages equal to Drupal again,
// whatever happened on the server meanwhile, in four phases: it walks the
// server's users page by page and compares each managed one with Drupal's
// user; it finds the managed accounts the walk did not meet (missing) and
// the Drupal users with no account; then it reconciles all of those,
// through the workers and with a fresh GET of the server's copy (drifted
// accounts repaired, orphans deleted or deactivated per on_delete,
// missing ones created again, unprovisioned users created). Accounts the
// agent did not create or adopt are never touched. It runs beside the
// binlog stream; cancelling ctx stops it.
func (a *Agent) RepairDrift(ctx context.Context) (DriftReport, error) {
	d, err := a.newDrift()
	if err != nil {
		return DriftReport{}, err
	}
	a.log.Info(MsgDriftStart, zap.Int("managed", len(d.byID)))
	if err := d.walkServer(ctx); err != nil {
		return d.rep, err
	}
	d.findMissing()
	if err := d.findUnprovisioned(ctx); err != nil {
		return d.rep, err
	}
	if err := d.repair(ctx); err != nil {
		return d.rep, err
	}
	if err := d.repairGroups(ctx); err != nil {
		return d.rep, err
	}
	r := d.rep
	a.log.Info(MsgDriftDone, zap.Int("checked", r.Checked), zap.Int("drifted", r.Drifted), zap.Int("orphans", r.Orphans),
		zap.Int("missing", r.Missing), zap.Int("unprovisioned", r.Unprovisioned), zap.Int("unreadable", r.Unreadable), zap.Int("groups", r.Groups),
		zap.Int64("duration_ms", time.Since(d.start).Milliseconds()))
	return r, nil
}

// drift is one drift repair in progress.
type drift struct {
	a       *Agent
	start   time.Time
	byID    map[string]uint32 // SCIM id → uid of the managed accounts
	known   map[uint32]bool   // uids with a record
	listed  map[uint32]bool   // managed uids met on the server
	flagged []uint32          // uids to reconcile
	rep     DriftReport
}

// newDrift indexes the state file's records.
func (a *Agent) newDrift() (*drift, error) {
	d := &drift{a: a, start: time.Now(), byID: map[string]uint32{}, known: map[uint32]bool{}, listed: map[uint32]bool{}}
	err := a.store.ForEachAccount(func(acc state.Account) error {
		d.known[acc.UID] = true
		if acc.SCIMID != "" {
			d.byID[acc.SCIMID] = acc.UID
		}
		return nil
	})
	return d, err
}

// walkServer compares every managed account on the server with Drupal,
// page by page (startIndex/count until totalResults). A page over the
// response limit is asked for again at half the size; an account too
// large to read alone is skipped and counted unreadable.
func (d *drift) walkServer(ctx context.Context) error {
	lastLog := time.Now()
	count := driftPageSize
	for startIndex := 1; ; {
		page, cr, err := d.a.scim.client.ListUsers(ctx, "", startIndex, count)
		d.a.logList(startIndex, cr, err)
		switch {
		case errors.Is(err, scimclient.ErrResponseTooLarge) && count > 1:
			count /= 2
			continue
		case errors.Is(err, scimclient.ErrResponseTooLarge):
			d.rep.Unreadable++
			startIndex++
			continue
		case err != nil:
			return err
		}
		if err := d.compare(ctx, page.Resources); err != nil {
			return err
		}
		d.rep.Checked += len(page.Resources)
		if time.Since(lastLog) >= progressEvery {
			lastLog = time.Now()
			d.a.log.Info(MsgDriftProgress, zap.Int("done", d.rep.Checked), zap.Int("total", page.TotalResults),
				zap.Float64("rate_per_s", float64(d.rep.Checked)/time.Since(d.start).Seconds()))
		}
		if len(page.Resources) == 0 || startIndex+len(page.Resources)-1 >= page.TotalResults {
			return nil
		}
		startIndex += len(page.Resources)
	}
}

// compare flags the managed accounts of one page that differ from their
// Drupal user, or whose Drupal user is gone.
func (d *drift) compare(ctx context.Context, resources []scimclient.Resource) error {
	server := map[uint32]scimclient.Resource{}
	uids := make([]uint32, 0, len(resources))
	for _, res := range resources {
		id, _ := res["id"].(string)
		uid, managed := d.byID[id]
		if !managed || d.a.cfg.Provisioning.Excluded(uid) {
			continue
		}
		d.listed[uid] = true
		server[uid] = res
		uids = append(uids, uid)
	}
	accounts, err := d.a.kinds.users.reader.LoadMany(ctx, uids)
	if err != nil {
		return err
	}
	m, scope := d.a.kinds.users.mapper, d.a.kinds.users.scope
	for _, uid := range uids {
		acct, exists := accounts[uid]
		switch {
		case !exists:
			d.rep.Orphans++
			d.flagged = append(d.flagged, uid)
		case acct.Values == nil:
		case !scope.In(acct):
			// Outside provisioning.scope: the account should be inactive
			// (out_of_scope: deactivate), or no longer managed at all.
			if d.a.cfg.Provisioning.OutOfScope != config.OutOfScopeDeactivate || mapping.Active(server[uid]) {
				d.rep.Drifted++
				d.flagged = append(d.flagged, uid)
			}
		case !m.Compare(m.Map(acct), server[uid]).Empty():
			d.rep.Drifted++
			d.flagged = append(d.flagged, uid)
		}
	}
	return nil
}

// findMissing flags the managed accounts the walk did not meet. When an
// account was skipped unread, none is known to be missing: it may be any
// of them.
func (d *drift) findMissing() {
	if d.rep.Unreadable > 0 {
		return
	}
	for _, uid := range d.byID {
		if !d.listed[uid] && !d.a.cfg.Provisioning.Excluded(uid) {
			d.rep.Missing++
			d.flagged = append(d.flagged, uid)
		}
	}
}

// findUnprovisioned flags the Drupal users the state file has no record
// of, but those provisioning.scope leaves out.
func (d *drift) findUnprovisioned(ctx context.Context) error {
	for uids, err := range d.a.kinds.users.reader.UIDPages(ctx, syncPageSize) {
		if err != nil {
			return err
		}
		var unknown []uint32
		for _, uid := range uids {
			if !d.known[uid] && !d.a.cfg.Provisioning.Excluded(uid) {
				unknown = append(unknown, uid)
			}
		}
		if unknown, err = d.inScope(ctx, unknown); err != nil {
			return err
		}
		d.rep.Unprovisioned += len(unknown)
		d.flagged = append(d.flagged, unknown...)
	}
	return nil
}

// inScope returns the uids provisioning.scope takes (all of them without
// a scope; a uid whose users row went meanwhile is kept, for its
// reconcile to say so).
func (d *drift) inScope(ctx context.Context, uids []uint32) ([]uint32, error) {
	scope := d.a.kinds.users.scope
	if scope.Everyone() || len(uids) == 0 {
		return uids, nil
	}
	accounts, err := d.a.kinds.users.reader.LoadMany(ctx, uids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(uids, func(uid uint32) bool {
		a, ok := accounts[uid]
		return ok && (a.Values == nil || !scope.In(a))
	}), nil
}

// repair reconciles the flagged uids through the workers, comparing with
// the server's copy, a page at a time.
func (d *drift) repair(ctx context.Context) error {
	for i := 0; i < len(d.flagged); i += syncPageSize {
		chunk := d.flagged[i:min(i+syncPageSize, len(d.flagged))]
		keys := make([]key, len(chunk))
		for j, uid := range chunk {
			keys[j] = userKey(uid)
		}
		if err := d.a.work.wait(ctx, d.a.work.ask(keys, driftCause, true, false)); err != nil {
			return err
		}
	}
	return nil
}

// repairGroups compares every group with its role, through the workers
// and with a fresh GET of the server's copy: members added or removed by
// hand are put right (where the server returns members), a label changed
// back, a group deleted on the server created again.
func (d *drift) repairGroups(ctx context.Context) error {
	keys, err := d.a.roleKeys(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < len(keys); i += syncPageSize {
		if err := d.a.work.wait(ctx, d.a.work.ask(keys[i:min(i+syncPageSize, len(keys))], driftCause, true, false)); err != nil {
			return err
		}
	}
	d.rep.Groups = len(keys)
	return nil
}

// logList writes the one line per SCIM call for a page of GET /Users.
func (a *Agent) logList(startIndex int, cr scimclient.Result, err error) {
	a.noteCall(http.MethodGet, cr, err)
	fields := []zap.Field{zap.String("op", OpLookup), zap.Uint32("uid", 0), zap.String("userName", ""), zap.String("scim_id", ""),
		zap.String("method", http.MethodGet), zap.String("path", "/Users?startIndex="+strconv.Itoa(startIndex)),
		zap.Int("status", cr.Status), zap.Int("attempt", cr.Attempts), zap.Int64("duration_ms", cr.Duration.Milliseconds()),
		zap.String("binlog_pos", driftCause)}
	if err != nil {
		a.log.Warn(MsgSCIMRequest, append(fields, zap.Error(err))...)
		return
	}
	a.log.Info(MsgSCIMRequest, fields...)
}
