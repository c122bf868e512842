// Package proc reads what crisp needs of /proc/<pid>/stat: a process's
// start time, which tells it from a later process that got the same pid,
// and its state.
package proc

import (
	"os"
	"strconv"
	"strings"
)

// Stat returns pid's start time (field 22, clock ticks after boot) and
// state letter (field 3: R, S, Z...); 0 and "" when the process is gone.
func Stat(pid int) (start uint64, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// The command name may hold spaces; fields resume after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 20 {
		return 0, ""
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, ""
	}
	return v, f[0]
}

// Start is pid's start time, 0 when the process is gone.
func Start(pid int) uint64 {
	start, _ := Stat(pid)
	return start
}
