package main

import (
	"os"
	"testing"
)

func TestProcState(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want byte
	}{
		{"running", "42 (crispd) S 1 42 42 0", 'S'},
		{"zombie", "42 (containerd) Z 1 42", 'Z'},
		{"parenthesis in the name", "42 (a) b) R 1", 'R'},
		{"truncated", "42 (x)", 0},
		{"garbage", "nothing", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := procState([]byte(tt.stat)); got != tt.want {
				t.Errorf("procState(%q) = %q, want %q", tt.stat, got, tt.want)
			}
		})
	}
}

func TestExited(t *testing.T) {
	if exited(os.Getpid()) {
		t.Error("exited(self) = true, want false")
	}
	if !exited(1 << 30) { // above pid_max
		t.Error("exited(no such pid) = false, want true")
	}
}

func TestShellDaemonPID(t *testing.T) {
	path := t.TempDir() + "/pid"
	d := &shellDaemon{pidFile: path}
	if err := os.WriteFile(path, []byte("1234\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, err := d.pid(); pid != 1234 || err != nil {
		t.Errorf("pid() = %d, %v; want 1234, nil", pid, err)
	}
	if err := os.WriteFile(path, []byte("soon"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pid(); err == nil {
		t.Error("pid() of a pid file without a number: no error")
	}
}
