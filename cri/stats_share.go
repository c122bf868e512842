package cri

import (
	"sync"
	"time"
)

// statsShareWindow is how old a reading of every container's (or pod's)
// stats may be and still answer an unfiltered list: kubelet's summary API,
// its eviction manager and a metrics scraper all ask for everything, often
// together, and one reading of 500 cgroups costs tens of milliseconds.
const statsShareWindow = time.Second

// sharedReading hands concurrent unfiltered stats lists one reading: a call
// waits for the reading in flight, or takes the last one when it is younger
// than statsShareWindow and the store has committed nothing since (a
// container started or stopped shows at once). The value is shared and
// must not be changed.
type sharedReading[T any] struct {
	mu     sync.Mutex
	flight *readingFlight[T]
	last   T
	lastAt time.Time
	gen    uint64
	have   bool
}

type readingFlight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func (c *sharedReading[T]) get(gen func() uint64, read func() (T, error)) (T, error) {
	c.mu.Lock()
	if g := gen(); c.have && c.gen == g && time.Since(c.lastAt) < statsShareWindow {
		v := c.last
		c.mu.Unlock()
		return v, nil
	}
	if f := c.flight; f != nil {
		c.mu.Unlock()
		<-f.done
		return f.val, f.err
	}
	f := &readingFlight[T]{done: make(chan struct{})}
	c.flight = f
	c.mu.Unlock()

	g := gen() // before the reading: a later write makes it look older, never newer
	f.val, f.err = read()

	c.mu.Lock()
	c.flight = nil
	if f.err == nil {
		c.last, c.lastAt, c.gen, c.have = f.val, time.Now(), g, true
	}
	c.mu.Unlock()
	close(f.done)
	return f.val, f.err
}
