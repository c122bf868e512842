package oci

import (
	"bufio"
	"os"
	"regexp"
	"testing"
	"time"
)

// waitLogLines waits for at least n lines in the CRI log at path.
func waitLogLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	waitFor(5*time.Second, func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		return len(lines) >= n
	})
	if len(lines) < n {
		t.Fatalf("log %s has %d lines, want %d: %q", path, len(lines), n, lines)
	}
	return lines
}

var criLogLine = regexp.MustCompile(`^(\S+) (stdout|stderr) (F|P) (.*)$`)

// checkCRILog checks that lines are k8s-file records and that each text
// in want appears as a full line on its stream.
func checkCRILog(t *testing.T, lines []string, want map[string]string) {
	t.Helper()
	found := map[string]bool{}
	for _, l := range lines {
		m := criLogLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("log line %q is not in CRI format", l)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("log line %q: bad timestamp: %v", l, err)
		}
		if stream, ok := want[m[4]]; ok && stream == m[2] && m[3] == "F" {
			found[m[4]] = true
		}
	}
	for text, stream := range want {
		if !found[text] {
			t.Errorf("log %q lacks a full %s line %q", lines, stream, text)
		}
	}
}
