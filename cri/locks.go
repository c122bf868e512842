package cri

import "sync"

// keyedLocks serialises lifecycle operations on one pod or container id
// (stop against remove, say), while different ids proceed in parallel. It
// guards no data: the database is the truth; it only orders side effects.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

// lock takes the lock of id and returns its release.
func (k *keyedLocks) lock(id string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l, ok := k.locks[id]
	if !ok {
		l = &keyedLock{}
		k.locks[id] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, id)
		}
		k.mu.Unlock()
	}
}
