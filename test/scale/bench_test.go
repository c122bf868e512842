package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestParallel(t *testing.T) {
	var sum atomic.Int64
	err := parallel(context.Background(), 3, 100, func(_ context.Context, i int) error {
		sum.Add(int64(i))
		return nil
	})
	if err != nil || sum.Load() != 4950 {
		t.Errorf("parallel() sum = %d, err %v; want 4950, nil", sum.Load(), err)
	}
	boom := errors.New("boom")
	var calls atomic.Int64
	err = parallel(context.Background(), 2, 1000, func(ctx context.Context, i int) error {
		calls.Add(1)
		switch {
		case i < 3:
			return nil
		case i == 3:
			return boom
		}
		<-ctx.Done() // later jobs wait for the failure to cancel them
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("parallel() = %v, want %v", err, boom)
	}
	if calls.Load() > 10 {
		t.Errorf("parallel() ran %d jobs after the failure, want it to stop feeding", calls.Load())
	}
}
