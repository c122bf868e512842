package host

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStat returns pid's start time (field 22 of /proc/<pid>/stat, clock
// ticks after boot) and state letter (field 3: R, S, Z...); 0 and "" when
// the process is gone. The start time tells a process from a later one
// that got the same pid.
func ProcStat(pid int) (start uint64, state string) {
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

// ProcStart is pid's start time in clock ticks after boot, 0 when the
// process is gone.
func ProcStart(pid int) uint64 {
	start, _ := ProcStat(pid)
	return start
}

// userHZ is the clock tick of /proc's times (USER_HZ), 100 on Linux.
const userHZ = 100

// ProcStartTime is pid's start as a wall time, with its start in ticks;
// ok is false when the process is gone. Without a boot time the wall
// time is zero.
func ProcStartTime(pid int) (ticks uint64, at time.Time, ok bool) {
	ticks = ProcStart(pid)
	if ticks == 0 {
		return 0, time.Time{}, false
	}
	boot, ok := BootTime()
	if !ok {
		return ticks, time.Time{}, true
	}
	return ticks, boot.Add(time.Duration(ticks) * time.Second / userHZ), true
}

// BootTime is when the machine booted, from /proc/stat's btime.
func BootTime() (time.Time, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(s, 0), err == nil
		}
	}
	return time.Time{}, false
}
