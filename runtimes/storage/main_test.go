package storage

import (
	"fmt"
	"io"
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// holdLockEnv makes the test binary a process that holds an fcntl write
// lock on the file it names until its stdin closes.
const holdLockEnv = "CRISP_TEST_HOLD_FCNTL_LOCK"

// TestMain lets go.podman.io/storage re-execute the test binary for its
// chrooted layer unpacking, as crispd's main does.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdLock(path))
	}
	os.Exit(m.Run())
}

func holdLock(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
