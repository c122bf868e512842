package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// measureMemory sums RSS and PSS of the daemon (pid > 0) and of every other
// process whose command line matches monitors (nil: none).
func measureMemory(daemonPID int, monitors *regexp.Regexp) (*Memory, error) {
	m := &Memory{DaemonPID: daemonPID}
	if daemonPID > 0 {
		rss, pss, err := readRollup(daemonPID)
		if err != nil {
			return nil, fmt.Errorf("daemon pid %d: %w", daemonPID, err)
		}
		m.DaemonRSSKiB, m.DaemonPSSKiB = rss, pss
	}
	if monitors == nil {
		return m, nil
	}
	m.MonitorPattern = monitors.String()
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == daemonPID || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 || !monitors.MatchString(cmdline(raw)) {
			continue // gone, or a kernel thread, or not a monitor
		}
		rss, pss, err := readRollup(pid)
		if err != nil {
			continue // exited meanwhile
		}
		m.Monitors++
		m.MonitorRSSKiB += rss
		m.MonitorPSSKiB += pss
	}
	return m, nil
}

// cmdline turns /proc/<pid>/cmdline (NUL-separated) into one line.
func cmdline(raw []byte) string {
	return strings.TrimSpace(string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '})))
}

func readRollup(pid int) (rssKiB, pssKiB int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseRollup(f)
}

// parseRollup reads the Rss and Pss lines (in kB) of a smaps_rollup file.
func parseRollup(r io.Reader) (rssKiB, pssKiB int64, err error) {
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		var dst *int64
		switch fields[0] {
		case "Rss:":
			dst = &rssKiB
		case "Pss:":
			dst = &pssKiB
		default:
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("smaps_rollup: %q: %w", sc.Text(), err)
		}
		*dst = v
		seen++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if seen != 2 {
		return 0, 0, fmt.Errorf("smaps_rollup: no Rss and Pss lines")
	}
	return rssKiB, pssKiB, nil
}
