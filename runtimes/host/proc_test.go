package host

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcStat(t *testing.T) {
	start, state := ProcStat(os.Getpid())
	if start == 0 || (state != "R" && state != "S") {
		t.Errorf("ProcStat(self) = %d %q, want a start time and R or S", start, state)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if start, state := ProcStat(cmd.Process.Pid); start != 0 || state != "" {
		t.Errorf("ProcStat(reaped pid) = %d %q, want 0 and \"\"", start, state)
	}
	if ProcStart(os.Getpid()) != ProcStart(os.Getpid()) {
		t.Error("Start of one process changed")
	}
}

func TestProcStartTimeIsAfterBoot(t *testing.T) {
	boot, ok := BootTime()
	if !ok || boot.IsZero() || boot.After(time.Now()) {
		t.Fatalf("BootTime() = %v, %v", boot, ok)
	}
	ticks, at, ok := ProcStartTime(os.Getpid())
	if !ok || ticks == 0 || at.Before(boot) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("ProcStartTime(self) = %d, %v, %v; want a time between boot (%v) and now", ticks, at, ok, boot)
	}
}
