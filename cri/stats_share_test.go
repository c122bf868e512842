package cri

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharedReading(t *testing.T) {
	var gen atomic.Uint64
	var reads atomic.Int32
	release := make(chan struct{})
	var c sharedReading[int32]
	read := func() (int32, error) {
		n := reads.Add(1)
		<-release
		return n, nil
	}
	// 20 callers at once: one reading.
	var wg sync.WaitGroup
	got := make([]int32, 20)
	for i := range got {
		wg.Go(func() { got[i], _ = c.get(gen.Load, read) })
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, v := range got {
		if v != 1 {
			t.Fatalf("caller %d got reading %d, want the one shared reading", i, v)
		}
	}
	if v, _ := c.get(gen.Load, read); v != 1 || reads.Load() != 1 {
		t.Errorf("a call right after = reading %d (%d reads), want the last one again", v, reads.Load())
	}
	gen.Add(1) // a container started: the reading is out of date
	if v, _ := c.get(gen.Load, read); v != 2 {
		t.Errorf("after a write = reading %d, want a new one", v)
	}
	c.lastAt = c.lastAt.Add(-statsShareWindow) // the window passed
	if v, _ := c.get(gen.Load, read); v != 3 {
		t.Errorf("after the window = reading %d, want a new one", v)
	}
	boom := errors.New("boom")
	c.lastAt = time.Time{}
	if _, err := c.get(gen.Load, func() (int32, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("a failed reading = %v, want boom", err)
	}
	if v, _ := c.get(gen.Load, read); v != 4 {
		t.Errorf("after a failed reading = reading %d, want a new one", v)
	}
}
