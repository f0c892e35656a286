package workqueue

import "sync"

// Gate bounds how many batches are open at once: back-pressure, so that
// a reader far ahead of the workers (an outage of the server, a bulk
// update) holds a bounded amount of memory. The zero value is not usable;
// make one with NewGate.
type Gate struct {
	mu     sync.Mutex
	cond   *sync.Cond // broadcast when room frees up, and on Close
	open   int
	max    int // 0: no bound
	paused int // Enter calls waiting for room
	closed bool
}

// NewGate returns a Gate letting max batches in at once (0: any number).
func NewGate(max int) *Gate {
	g := &Gate{max: max}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Enter waits for room and takes it; ok is false once the gate is closed.
func (g *Gate) Enter() (ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.closed && g.max > 0 && g.open >= g.max {
		g.paused++
		g.cond.Wait()
		g.paused--
	}
	if g.closed {
		return false
	}
	g.open++
	return true
}

// Leave gives back the room of n batches.
func (g *Gate) Leave(n int) {
	if n <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = max(g.open-n, 0)
	g.cond.Broadcast()
}

// Paused returns the number of Enter calls waiting for room: the reader
// is paused by back-pressure while it is not 0.
func (g *Gate) Paused() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Close wakes every waiting Enter; Enter returns false from now on.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cond.Broadcast()
}
