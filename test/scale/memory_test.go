package main

import (
	"strings"
	"testing"
)

func TestParseRollup(t *testing.T) {
	const rollup = `55e4036c4000-7fff4ff41000 ---p 00000000 00:00 0                          [rollup]
Rss:                1772 kB
Pss:                 481 kB
Pss_Dirty:           108 kB
Pss_Anon:            108 kB
Shared_Clean:       1600 kB
SwapPss:               0 kB
`
	rss, pss, err := parseRollup(strings.NewReader(rollup))
	if err != nil || rss != 1772 || pss != 481 {
		t.Errorf("parseRollup() = %d, %d, %v; want 1772, 481, nil", rss, pss, err)
	}
	if _, _, err := parseRollup(strings.NewReader("Rss: 12 kB\n")); err == nil {
		t.Error("parseRollup() without a Pss line: no error")
	}
	if _, _, err := parseRollup(strings.NewReader("Rss: 12 kB\nPss: x kB\n")); err == nil {
		t.Error("parseRollup() with a bad number: no error")
	}
}

func TestCmdline(t *testing.T) {
	got := cmdline([]byte("/usr/bin/conmon\x00-c\x00abc\x00"))
	if want := "/usr/bin/conmon -c abc"; got != want {
		t.Errorf("cmdline() = %q, want %q", got, want)
	}
}
