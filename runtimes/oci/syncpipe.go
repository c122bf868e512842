package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Environment variables of conmon's launch protocol, which crisp's
// monitor speaks too: the fd of the sync pipe (monitor -> launcher: the
// container pid or an error) and of the start pipe (launcher -> monitor:
// one byte once the monitor sits in its cgroup).
const (
	syncPipeEnv  = "_OCI_SYNCPIPE"
	startPipeEnv = "_OCI_STARTPIPE"
)

// syncMessage is what conmon (--api-version 1), and crisp's monitor,
// write on the sync pipe.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message,omitempty"`
}

// readSyncPipe waits for the monitor's first sync message: the container
// pid, or -1 and the runtime's error output.
func readSyncPipe(ctx context.Context, r *os.File, name string) (int, error) {
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var m syncMessage
	err := json.NewDecoder(r).Decode(&m)
	switch {
	case err == nil && m.Data > 0:
		return m.Data, nil
	case err == nil:
		return 0, fmt.Errorf("runtime failed: %s", runtimeMessage(m.Message))
	case ctx.Err() != nil:
		return 0, fmt.Errorf("wait for %s: %w", name, ctx.Err())
	case errors.Is(err, io.EOF):
		return 0, fmt.Errorf("%s exited without reporting a pid", name)
	default:
		return 0, fmt.Errorf("read %s sync pipe: %w", name, err)
	}
}

// writeSync writes one sync message. A nil pipe (no launcher) is fine.
func writeSync(w *os.File, m syncMessage) error {
	if w == nil {
		return nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// pipeFromEnv returns the pipe whose fd the environment variable name
// holds, or nil. The fd is made close-on-exec at once, so that no runtime
// process, nor the sandbox and gofers they leave behind, inherits it.
func pipeFromEnv(name string) *os.File {
	fd, err := strconv.Atoi(os.Getenv(name))
	if err != nil || fd < 3 {
		return nil
	}
	if _, err := syscall.Seek(fd, 0, io.SeekCurrent); !errors.Is(err, syscall.ESPIPE) {
		return nil // not an open pipe
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}
