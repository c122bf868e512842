package oci

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The gVisor monitor's attach socket speaks conmon's protocol, so the
// streaming server attaches to runc and gVisor containers alike: a
// SOCK_SEQPACKET socket at the bundle's attach path; every packet the
// monitor sends is one byte naming the stream (2 stdout, 3 stderr), then
// the data; what a client sends is the container's stdin, as is. A client
// that closes its end (shutdown of writes) closes the container's stdin
// when the container is stdin_once.

// Stream bytes of conmon's attach packets.
const (
	attachStdout = 2
	attachStderr = 3
	// attachPacket is the most data one packet carries, as conmon's.
	attachPacket = 8192
	// attachWriteTimeout is how long a packet may wait for a client.
	attachWriteTimeout = time.Second
)

// attachServer fans the container's output out to attached clients and
// feeds what they send to its stdin.
type attachServer struct {
	ln        *net.UnixListener
	stdinOnce bool
	onErr     func(error)

	mu      sync.Mutex
	clients map[*net.UnixConn]bool
	stdin   *os.File // the container's stdin, nil without one or once closed
}

// listenAttach makes the attach socket at path (owner only).
func listenAttach(path string, stdinOnce bool, onErr func(error)) (*attachServer, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o700); err != nil {
		ln.Close()
		return nil, err
	}
	s := &attachServer{ln: ln, stdinOnce: stdinOnce, onErr: onErr, clients: map[*net.UnixConn]bool{}}
	go s.accept()
	return s, nil
}

// setStdin hands the server the container's stdin once it has started.
func (s *attachServer) setStdin(f *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stdin = f
}

func (s *attachServer) accept() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.clients[c] = true
		s.mu.Unlock()
		go s.readClient(c)
	}
}

// readClient copies a client's packets to the container's stdin until
// the client stops sending.
func (s *attachServer) readClient(c *net.UnixConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			s.mu.Lock()
			in := s.stdin
			s.mu.Unlock()
			if in != nil {
				if _, werr := in.Write(buf[:n]); werr != nil && !errors.Is(werr, os.ErrClosed) {
					s.onErr(werr)
				}
			}
		}
		if err != nil || n == 0 {
			break
		}
	}
	if s.stdinOnce {
		s.closeStdin()
	}
}

func (s *attachServer) closeStdin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stdin != nil {
		s.stdin.Close()
		s.stdin = nil
	}
}

// writer is an io.Writer sending what it gets to every client as
// packets of stream; a client that cannot take them is dropped.
func (s *attachServer) writer(stream byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		total := len(p)
		s.mu.Lock()
		defer s.mu.Unlock()
		for len(p) > 0 && len(s.clients) > 0 {
			n := min(len(p), attachPacket)
			pkt := append([]byte{stream}, p[:n]...)
			for c := range s.clients {
				// A client that does not read for a second loses its
				// session rather than stall the container's log.
				_ = c.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
				if _, err := c.Write(pkt); err != nil {
					c.Close()
					delete(s.clients, c)
				}
			}
			p = p[n:]
		}
		return total, nil
	})
}

// close removes the socket and ends every attach session: the container
// has exited.
func (s *attachServer) close() {
	s.ln.Close()
	s.closeStdin()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		c.Close()
		delete(s.clients, c)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
