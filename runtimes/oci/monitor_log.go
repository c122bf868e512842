package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// stdioBufSize is how much one read of the container's output takes,
	// as conmon's STDIO_BUF_SIZE: longer lines become several P records.
	stdioBufSize = 8192
	// criTimeFormat is conmon's k8s-file timestamp: RFC 3339 with
	// nanoseconds and a numeric offset ("+00:00", not "Z").
	criTimeFormat = "2006-01-02T15:04:05.000000000-07:00"
)

// criLog is a CRI (k8s-file) log file that the container's stdout and
// stderr copiers share, and that the ctl FIFO can have reopened.
type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	buf  []byte
}

func openCRILog(path string) (*criLog, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &criLog{path: path, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
}

// write logs one read of stream ("stdout" or "stderr") as conmon does:
// one "F" record per complete line and a "P" record for a trailing
// partial line, all with the time of the read.
func (l *criLog) write(stream string, p []byte, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := now.UTC().Format(criTimeFormat)
	l.buf = l.buf[:0]
	for len(p) > 0 {
		line, rest, full := bytes.Cut(p, []byte{'\n'})
		tag := " F "
		if !full {
			tag = " P "
		}
		l.buf = append(append(append(append(append(l.buf, ts...), ' '), stream...), tag...), line...)
		l.buf = append(l.buf, '\n')
		p = rest
	}
	if l.f == nil {
		return errors.New("log file is closed")
	}
	_, err := l.f.Write(l.buf)
	return err
}

// reopen closes the log file and opens its path again, which creates it
// if it was renamed away (log rotation).
func (l *criLog) reopen() error {
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
	}
	l.f = f
	return nil
}

// close flushes the file to disk, as conmon does on exit, and closes it.
func (l *criLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// copyStream copies r into the log as stream until r fails (EOF, or a
// read deadline that stops the drain), and to tee (attached clients) if
// not nil. Write failures are reported once through onErr and the copy
// goes on, so that the container never blocks.
func (l *criLog) copyStream(r *os.File, stream string, tee io.Writer, onErr func(error)) {
	buf := make([]byte, stdioBufSize)
	failed := false
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := l.write(stream, buf[:n], time.Now()); werr != nil && !failed {
				failed = true
				onErr(werr)
			}
			if tee != nil {
				_, _ = tee.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// serveCtl makes the control FIFO at path, conmon's ctl, and handles its
// lines in a goroutine: "2 ..." reopens the log, anything else (conmon's
// "1 <rows> <cols>" resizes a terminal) is ignored. It is opened read-write
// so that it never reads EOF and writers never block; closing the returned
// file ends the goroutine, and later writers then get ENXIO.
func serveCtl(path string, log *criLog, onErr func(error)) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("make %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	go func() {
		rd := bufio.NewReader(f)
		for {
			line, err := rd.ReadString('\n')
			if err != nil && (err != io.EOF || line == "") {
				return
			}
			if fields := strings.Fields(line); len(fields) > 0 && fields[0] == "2" {
				if err := log.reopen(); err != nil {
					onErr(fmt.Errorf("reopen log: %w", err))
				}
			}
		}
	}()
	return f, nil
}
