package stream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair. The slave is in raw mode
// already, so that nothing the client types is echoed before the runtime
// takes the terminal over. The master is non-blocking (Go's poller), so
// closing it ends a pending Read.
//
// Raw keeps output processing (OPOST, ONLCR), as the runtime's own raw
// mode (containerd/console's SetRaw) does: runc clears ONLCR on the
// container's terminal and lets the outer terminal turn "\n" into "\r\n".
// Output the process writes before runc has done so comes out as
// "\r\r\n", which terminals show the same.
func openPty() (master, slave *os.File, retErr error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	defer func() {
		if retErr != nil {
			master.Close()
		}
	}()
	var slaveFd int
	err = control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		// TIOCGPTPEER opens the slave without a path lookup in /dev/pts.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER,
			uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno != 0 {
			return fmt.Errorf("open pty slave: %w", errno)
		}
		slaveFd = int(r)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slave = os.NewFile(uintptr(slaveFd), "pty-slave")
	if err := makeRaw(slaveFd); err != nil {
		slave.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// makeRaw does what cfmakeraw(3) does, but keeps output processing.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("pty raw mode: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag |= unix.OPOST | unix.ONLCR
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("pty raw mode: %w", err)
	}
	return nil
}

// setWinsize sets the terminal size of the pty pair through its master.
func setWinsize(master *os.File, rows, cols uint16) error {
	return control(master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
}

// control runs f on f's descriptor without making it blocking, as Fd
// would.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// ptyReader reads a pty master and reports EIO, which Linux returns once
// every slave descriptor is closed and the buffer is empty, as EOF.
type ptyReader struct{ f *os.File }

func (r ptyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

// cappedBuffer keeps the first max bytes written and drops the rest. It is
// safe for concurrent use.
type cappedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Len returns the number of bytes kept.
func (b *cappedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// String returns the bytes kept.
func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
