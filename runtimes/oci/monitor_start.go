package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// serve hands start requests from the socket to the main goroutine.
func (m *monitor) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || line != startRequest {
				return
			}
			reply := make(chan startReply, 1)
			m.reqs <- reply
			data, _ := json.Marshal(<-reply)
			_, _ = conn.Write(append(data, '\n'))
		}()
	}
}

// awaitStart serves start requests until one succeeds, and returns the
// pipes then holding the container's output. If the container is deleted
// or stops unstarted, it returns killedExitCode and started false. If
// something else starts it, it returns started true and no pipes.
func (m *monitor) awaitStart() (code int, started bool, outR, errR *os.File) {
	tick := time.NewTicker(createdPoll)
	defer tick.Stop()
	for {
		select {
		case reply := <-m.reqs:
			rep, outR, errR := m.start()
			reply <- rep
			if rep.Status == 0 {
				m.log.Info("container started")
				return 0, true, outR, errR
			}
			m.log.Warn("start failed", slog.Int("status", rep.Status), slog.String("message", rep.Message))
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			st, err := m.rt.State(ctx, m.a.ID)
			cancel()
			switch {
			case errors.Is(err, ErrNotFound) || err == nil && st.Status == "stopped":
				m.log.Warn("container gone before it started", slog.Any(logkey.Err, err))
				return killedExitCode, false, nil, nil
			case err == nil && st.Status != "created":
				m.log.Warn("container started without its monitor: its output is not logged")
				return 0, true, nil, nil
			}
		}
	}
}

// start runs `runsc start`, whose stdout and stderr runsc hands to the
// container. Output is not copied before start returns, so that what the
// pipes hold after a failure is runsc's message.
func (m *monitor) start() (rep startReply, outR, errR *os.File) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return startReply{Status: -1, Message: err.Error()}, nil, nil
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return startReply{Status: -1, Message: err.Error()}, nil, nil
	}
	// runsc gives the container the stdin of `start` too: a pipe whose
	// other end attach sessions write to, or nothing.
	var inR, inW *os.File
	if m.a.Stdin {
		if inR, inW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return startReply{Status: -1, Message: err.Error()}, nil, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := m.rt.command(ctx, "start", m.a.ID)
	cmd.Stdout, cmd.Stderr = outW, errW
	if inR != nil {
		cmd.Stdin = inR
	}
	err = cmd.Run()
	outW.Close()
	errW.Close()
	if inR != nil {
		inR.Close()
	}
	if err == nil {
		if inW != nil {
			m.attach.setStdin(inW)
		}
		return startReply{}, outR, errR
	}
	if inW != nil {
		inW.Close()
	}
	msg := strings.TrimSpace(pending(errR) + "\n" + pending(outR))
	outR.Close()
	errR.Close()
	rep = startReply{Status: -1, Message: msg}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		rep.Status = ee.ExitCode()
	}
	if rep.Message == "" {
		rep.Message = err.Error()
	}
	return rep, nil, nil
}

// pending returns up to 64 KiB of what a pipe holds now.
func pending(r *os.File) string {
	_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	return string(b)
}
