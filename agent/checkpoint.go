package agent

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/scim-agent/scim-agent/binlog"
	"github.com/scim-agent/scim-agent/internal/state"
)

// positionKey is the state meta key of the saved binlog position.
const positionKey = "position"

// checkpoint is the saved binlog position, what a restart resumes from,
// and whether a full sync is running (then the position waits for it).
// A position is saved only after what it depends on (the deletion guard's
// held uids, via before) is durable.
type checkpoint struct {
	store   *state.Store
	dryRun  bool                  // save nothing
	before  func() error          // saves what a position depends on first
	observe func(binlog.Position) // publishes a saved position (metrics)
	log     *zap.Logger

	mu     sync.Mutex // orders saves: the saver and a sync's own save
	saved  binlog.Position
	synced atomic.Bool // no full sync is running
}

// load reads the saved position; found is false on a first start.
func (c *checkpoint) load() (pos binlog.Position, found bool, err error) {
	if found, err = c.store.Meta(positionKey, &pos); err != nil || !found {
		return pos, found, err
	}
	c.mu.Lock()
	c.saved = pos
	c.mu.Unlock()
	c.observe(pos)
	c.synced.Store(true)
	return pos, true, nil
}

// position returns the position last saved.
func (c *checkpoint) position() binlog.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saved
}

// advance saves the position safe reports, if it moved. safe runs under
// the checkpoint's lock, so a full sync's save (resynced) never
// interleaves with it.
func (c *checkpoint) advance(safe func() (binlog.Position, bool)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pos, ok := safe()
	// What the position depends on first, read after it: a position
	// saved past a held deletion finds it in the guard's state.
	if err := c.before(); err != nil {
		return err
	}
	if !ok || c.dryRun || pos == c.saved {
		return nil
	}
	return c.put(pos)
}

// syncing marks a full sync as running.
func (c *checkpoint) syncing() { c.synced.Store(false) }

// resynced saves the position a full sync noted before it began, once the
// sync is over. forget runs first, under the lock: the watermark drops the
// positions of transactions read before it, so the saver can never write
// one of them over pos.
func (c *checkpoint) resynced(pos binlog.Position, forget func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	forget()
	if err := c.before(); err != nil {
		return err
	}
	if !c.dryRun {
		if err := c.put(pos); err != nil {
			return err
		}
	} else {
		c.saved = pos
		c.observe(pos)
	}
	c.synced.Store(true)
	return nil
}

// put saves pos; c.mu is held.
func (c *checkpoint) put(pos binlog.Position) error {
	if err := c.store.PutMeta(positionKey, pos); err != nil {
		return err
	}
	c.saved = pos
	c.observe(pos)
	c.log.Debug(MsgPositionSaved, zap.String("binlog_pos", pos.String()), zap.String("gtid", pos.GTID))
	return nil
}
