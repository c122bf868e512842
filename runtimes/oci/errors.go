package oci

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	runc "github.com/containerd/go-runc"
)

// ErrNotFound means the runtime does not know the container id.
var ErrNotFound = errors.New("container not found")

// ErrNotRunning means the operation needs a running (or created) container
// and the container has stopped.
var ErrNotRunning = errors.New("container not running")

// ErrUnsupported means the handler's runtime cannot do the operation at all
// (for example runsc has no update command). It also matches
// errors.ErrUnsupported.
var ErrUnsupported = fmt.Errorf("not supported by this runtime: %w", errors.ErrUnsupported)

// Substrings of the runtimes' own error output. runc 1.1 writes logrus
// lines ("level=error msg=..."), runsc 20221219 plain text; both exit
// non-zero (runc 1, or 255 for exec; runsc 128). Matching is
// case-insensitive.
var notRunningTexts = []string{
	"not running",            // runc kill, pause, update, events; runsc "sandbox is not running"
	"has stopped",            // runc start
	"in a stopped container", // runc exec
	"in state stopped",       // runsc start, exec, pause, ps
	"control server at pid",  // runsc kill once the sandbox has died (connection refused)
	"no such process",        // runsc kill of a sub-container whose process has exited ("PID 0: no such process")
}

// isNotFound matches runc's "container does not exist" and runsc's
// "loading container: file does not exist", `loading container "id": file
// does not exist`, "loading sandbox: file does not exist" and (gVisor
// 2026, deleting a sub-container it already removed) `destroying
// container "id": container "id" not found`.
func isNotFound(lower string) bool {
	if strings.Contains(lower, "container does not exist") {
		return true
	}
	if i := strings.LastIndex(lower, `container "`); i >= 0 && strings.HasSuffix(strings.TrimSpace(lower[i:]), `" not found`) {
		return true
	}
	return strings.Contains(lower, "file does not exist") &&
		(strings.Contains(lower, "loading container") || strings.Contains(lower, "loading sandbox"))
}

// translate turns a failed runtime command into an error that callers can
// test with errors.Is: ErrNotFound, ErrNotRunning or neither. err is what
// the command returned and stderr what the runtime printed. The
// *runc.ExitError stays reachable with errors.As.
//
// It is the only place in crisp that looks at a runtime's output text.
func translate(err error, stderr string) error {
	if err == nil {
		return nil
	}
	msg := runtimeMessage(stderr)
	var ee *runc.ExitError
	if !errors.As(err, &ee) {
		if msg == "" {
			return err
		}
		return fmt.Errorf("%w: %s", err, msg)
	}
	lower := strings.ToLower(msg)
	switch {
	case isNotFound(lower):
		return fmt.Errorf("%w: %s (%w)", ErrNotFound, msg, err)
	case containsAny(lower, notRunningTexts):
		return fmt.Errorf("%w: %s (%w)", ErrNotRunning, msg, err)
	case msg == "":
		return err
	default:
		return fmt.Errorf("%s (%w)", msg, err)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// runtimeMessage extracts a readable message from runtime output: the msg
// field of runc's logrus lines, joined with "; ", or the trimmed text.
func runtimeMessage(out string) string {
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m, ok := logrusMsg(line); ok {
			line = m
		}
		msgs = append(msgs, line)
	}
	return strings.Join(msgs, "; ")
}

// logrusMsg returns the msg value of a line like
// time="..." level=error msg="container does not exist".
func logrusMsg(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, " msg=")
	if !ok || !strings.HasPrefix(line, "time=") {
		return "", false
	}
	if !strings.HasPrefix(rest, `"`) {
		msg, _, _ := strings.Cut(rest, " ")
		return msg, true
	}
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	msg, err := strconv.Unquote(quoted)
	return msg, err == nil
}
