package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crisp-cri/crisp/runtimes/layout"
	"github.com/crisp-cri/crisp/runtimes/logkey"
)

const (
	// createdPoll is how often the monitor of a created container checks
	// that the container still exists (it may be deleted unstarted).
	createdPoll = time.Second
	// drainGrace bounds how long, after the exit, the monitor keeps
	// reading output that is still in the pipes.
	drainGrace = 100 * time.Millisecond
	// killedExitCode is recorded for a container that disappears without
	// an exit status: deleted before it started, or killed with its
	// sandbox.
	killedExitCode = 137
	commandTimeout = 2 * time.Minute // runsc create, start, state
)

// monitor is the detached second stage of RunMonitor.
type monitor struct {
	a    MonitorArgs
	rt   *Runtime
	log  *slog.Logger
	clog *criLog
	// attach serves the bundle's attach socket, conmon's protocol.
	attach *attachServer
	reqs   chan chan startReply // start requests from the socket
}

func runMonitor(a MonitorArgs) error {
	// runsc create gets PDEATHSIG, which fires when the thread that
	// forked it ends: keep this goroutine on one thread for good.
	runtime.LockOSThread()
	os.Unsetenv(monitorStageEnv) // not for runsc and the sandbox
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With(slog.String(logkey.Container, a.ID))
	m := &monitor{a: a, log: log, reqs: make(chan chan startReply)}
	m.rt = New(Handler{Name: "monitor", Type: TypeRunsc, Path: a.Runtime, Root: a.RuntimeRoot,
		ExtraArgs: a.RuntimeArgs}, "", layout.New(a.RunDir), log)

	syncW := pipeFromEnv(syncPipeEnv)
	ctl, ln, err := m.setup(syncW)
	if syncW != nil {
		syncW.Close()
	}
	if err != nil {
		log.Error("monitor gives up", slog.Any(logkey.Err, err))
		return err
	}
	go m.serve(ln)

	code, started, outR, errR := m.awaitStart()
	exited := time.Now()
	if started {
		code, exited = m.follow(outR, errR)
	}
	ln.Close() // removes the socket: Start now finds no monitor
	ctl.Close()
	m.attach.close()
	m.finish(code)
	log.Info("container exited", slog.Int("code", code), slog.Duration("recorded after wait", time.Since(exited)))
	return nil
}

// setup writes the monitor's pid, opens the log, makes the ctl FIFO and
// the socket, creates the container and reports its pid on syncW. On
// failure it reports the error there and undoes what it did.
func (m *monitor) setup(syncW *os.File) (ctl *os.File, ln net.Listener, err error) {
	defer func() {
		if err == nil {
			return
		}
		_ = writeSync(syncW, syncMessage{Data: -1, Message: err.Error()})
		if ln != nil {
			ln.Close()
		}
		if m.attach != nil {
			m.attach.close()
		}
		if ctl != nil {
			ctl.Close()
		}
	}()
	files := m.a.files()
	if err := writeFileAtomic(files.MonitorPidFile(), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		return nil, nil, err
	}
	if m.clog, err = openCRILog(m.a.LogPath); err != nil {
		return nil, nil, err
	}
	if ctl, err = serveCtl(files.CtlFifo(), m.clog, m.logErr); err != nil {
		return nil, nil, err
	}
	if m.attach, err = listenAttach(files.AttachSocket(), m.a.StdinOnce, m.logErr); err != nil {
		return ctl, nil, err
	}
	sock := files.MonitorSocket()
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ctl, nil, err
	}
	if ln, err = net.Listen("unix", sock); err != nil {
		return ctl, nil, err
	}
	pid, err := m.create()
	if err != nil {
		return ctl, ln, err
	}
	if err := writeSync(syncW, syncMessage{Data: pid}); err != nil {
		// The launcher gave up on us: leave nothing behind.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_, _ = m.rt.run(ctx, nil, "delete", "--force", m.a.ID)
		return ctl, ln, fmt.Errorf("report pid: %w", err)
	}
	m.log.Info("container created", slog.Int("pid", pid))
	return ctl, ln, nil
}

// create runs `runsc create` and returns the pid it writes: the sandbox's.
// Its message becomes the error when it fails.
func (m *monitor) create() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	files := m.a.files()
	cmd := m.rt.command(ctx, "create", "--bundle", files.Bundle, "--pid-file", files.InitPidFile(), m.a.ID)
	out, err := scratchFile()
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		msg, _ := readAll(out)
		if s := strings.TrimSpace(string(msg)); s != "" {
			return 0, errors.New(s)
		}
		return 0, fmt.Errorf("runsc create: %w", err)
	}
	return readPidFile(files.InitPidFile())
}

// follow copies the container's output into the log until it exits, and
// returns its exit code and when `runsc wait` returned it. Start requests
// from now on are refused.
func (m *monitor) follow(outR, errR *os.File) (int, time.Time) {
	go func() {
		for reply := range m.reqs {
			reply <- startReply{Status: 1, Message: fmt.Sprintf("container %s has already been started", m.a.ID)}
		}
	}()
	var wg sync.WaitGroup
	for stream, r := range map[string]*os.File{"stdout": outR, "stderr": errR} {
		if r == nil {
			continue
		}
		tee := m.attach.writer(attachStdout)
		if stream == "stderr" {
			tee = m.attach.writer(attachStderr)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.clog.copyStream(r, stream, tee, m.logErr)
		}()
	}
	code := m.wait()
	exited := time.Now()
	// What the container wrote before it exited is in the pipes now; the
	// sandbox may hold their other ends for a while yet.
	deadline := time.Now().Add(drainGrace)
	for _, r := range []*os.File{outR, errR} {
		if r != nil {
			_ = r.SetReadDeadline(deadline)
		}
	}
	wg.Wait()
	for _, r := range []*os.File{outR, errR} {
		if r != nil {
			r.Close()
		}
	}
	return code, exited
}

// wait runs `runsc wait` until it yields the exit status. While the
// container still runs, failures are retried; once it has stopped or
// gone without a status (its sandbox died), it counts as killed.
func (m *monitor) wait() int {
	delay, stoppedRetry := 50*time.Millisecond, false
	for {
		out, err := m.rt.run(context.Background(), nil, "wait", m.a.ID)
		if err == nil {
			var ws struct {
				ExitStatus *int `json:"exitStatus"`
			}
			if json.Unmarshal(out, &ws) == nil && ws.ExitStatus != nil {
				return *ws.ExitStatus
			}
			err = fmt.Errorf("runsc wait printed %q", out)
		}
		m.log.Warn("runsc wait failed", slog.Any(logkey.Err, err))
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		st, serr := m.rt.State(ctx, m.a.ID)
		cancel()
		switch {
		case serr == nil && st.Status != "stopped":
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
		case serr == nil && !stoppedRetry:
			stoppedRetry = true
		default:
			return killedExitCode
		}
	}
}

// finish closes the log and writes the exit files, persist dir first,
// as conmon does.
func (m *monitor) finish(code int) {
	if err := m.clog.close(); err != nil {
		m.logErr(fmt.Errorf("close log: %w", err))
	}
	data := []byte(strconv.Itoa(code))
	files := m.a.files()
	if err := writeFileAtomic(files.PersistExitFile(), data); err != nil {
		m.logErr(err)
	}
	if err := writeFileAtomic(files.ExitFile, data); err != nil {
		m.logErr(err)
	}
}

func (m *monitor) logErr(err error) {
	m.log.Error("monitor", slog.Any(logkey.Err, err))
}
