package proc

import (
	"os"
	"os/exec"
	"testing"
)

func TestStat(t *testing.T) {
	start, state := Stat(os.Getpid())
	if start == 0 || (state != "R" && state != "S") {
		t.Errorf("Stat(self) = %d %q, want a start time and R or S", start, state)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if start, state := Stat(cmd.Process.Pid); start != 0 || state != "" {
		t.Errorf("Stat(reaped pid) = %d %q, want 0 and \"\"", start, state)
	}
	if Start(os.Getpid()) != Start(os.Getpid()) {
		t.Error("Start of one process changed")
	}
}
