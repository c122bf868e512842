package oci

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a": "0", "b": "137\n", "c.Xy12ab": "1", "d": "", "e": "junk"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ExitCodes(dir)
	if want := map[string]int32{"a": 0, "b": 137}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ExitCodes() = %v, %v; want %v", got, err, want)
	}
	if got, err := ExitCodes(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("ExitCodes(missing dir) = %v, %v; want empty", got, err)
	}
}

func TestKillMonitorLeavesStrangersAlone(t *testing.T) {
	bundle := t.TempDir()
	// Our own pid is no conmon and no monitor of "x".
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, f := range []string{conmonPidName, monitorPidName} {
		if err := os.WriteFile(filepath.Join(bundle, f), pid, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := KillMonitor(bundle, "x"); err != nil {
		t.Fatal(err)
	}
	if err := KillMonitor(t.TempDir(), "x"); err != nil {
		t.Errorf("KillMonitor(no pid files) = %v", err)
	}
}
