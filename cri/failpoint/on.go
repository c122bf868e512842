//go:build crisp_failpoints

package failpoint

import (
	"fmt"
	"os"
	"syscall"
)

var armed = mustParse(os.Getenv(EnvVar))

// Hit kills the process with SIGKILL if name is armed and due; it never
// returns then. Safe for concurrent use.
func Hit(name string) {
	if !armed.due(name) {
		return
	}
	fmt.Fprintf(os.Stderr, "crisp failpoint %s: SIGKILL\n", name)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; go no further
}

// mustParse parses CRISP_FAILPOINT; a mistake stops crispd at once, so a
// test never runs without the point it meant.
func mustParse(s string) *plan {
	p, err := parse(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", EnvVar, s, err)
		os.Exit(2)
	}
	return p
}
