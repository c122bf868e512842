package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/crisp-cri/crisp/runtimes/layout"
)

func TestReadExit(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // relative to the run dir: exits/<id>, and in the bundle c/<id>/exit and c/<id>/oom
		wantCode int32
		wantOOM  bool
		wantOK   bool
		wantErr  bool
	}{
		{"not exited", nil, 0, false, false, false},
		{"exit dir", map[string]string{"exits/c1": "137"}, 137, false, true, false},
		{"persist fallback", map[string]string{"c/c1/exit": "4\n"}, 4, false, true, false},
		{"exit dir wins", map[string]string{"exits/c1": "1", "c/c1/exit": "2"}, 1, false, true, false},
		{"oom", map[string]string{"exits/c1": "137", "c/c1/oom": ""}, 137, true, true, false},
		{"oom without exit", map[string]string{"c/c1/oom": ""}, 0, false, false, false},
		{"empty file", map[string]string{"exits/c1": ""}, 0, false, false, false},
		{"negative", map[string]string{"exits/c1": "-1"}, -1, false, true, false},
		{"garbage", map[string]string{"exits/c1": "abc"}, 0, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"exits", "c/c1"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, oom, ok, err := ReadExit(layout.New(dir).Container("c1"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ReadExit() error = %v, want error %v", err, tt.wantErr)
			}
			if code != tt.wantCode || oom != tt.wantOOM || ok != tt.wantOK {
				t.Errorf("ReadExit() = %d, %v, %v, want %d, %v, %v", code, oom, ok, tt.wantCode, tt.wantOOM, tt.wantOK)
			}
		})
	}
	for _, id := range []string{"../x", "..", ""} {
		if _, _, _, err := ReadExit(layout.New(t.TempDir()).Container(id)); err == nil {
			t.Errorf("ReadExit(%q) = nil error, want invalid id", id)
		}
	}
}

func TestIsExitFileName(t *testing.T) {
	tests := map[string]bool{
		"abc123":                           true,
		"0123456789abcdef0123456789abcdef": true,
		"abc.QX3bZ9":                       false, // g_file_set_contents temporary
		".hidden":                          false,
		"name.with.dots":                   true,
		"a.b-cd_e":                         true,
	}
	for name, want := range tests {
		if got := isExitFileName(name); got != want {
			t.Errorf("isExitFileName(%q) = %v, want %v", name, got, want)
		}
	}
}

// recv waits up to d for an id on ch.
func recv(t *testing.T, ch <-chan string, d time.Duration) (string, bool) {
	t.Helper()
	select {
	case id, ok := <-ch:
		return id, ok
	case <-time.After(d):
		t.Fatalf("no id reported within %v", d)
		return "", false
	}
}

func expectQuiet(t *testing.T, ch <-chan string, d time.Duration) {
	t.Helper()
	select {
	case id := <-ch:
		t.Fatalf("unexpected id %q", id)
	case <-time.After(d):
	}
}

func TestWatchExits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exits") // WatchExits creates it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "early"), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch, err := WatchExits(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := recv(t, ch, 2*time.Second); id != "early" {
		t.Errorf("first id = %q, want early", id)
	}

	// conmon's way: write a temporary, then rename it into place.
	tmp := filepath.Join(dir, "late.Ab12Cd")
	if err := os.WriteFile(tmp, []byte("137"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "late")); err != nil {
		t.Fatal(err)
	}
	if id, _ := recv(t, ch, 2*time.Second); id != "late" {
		t.Errorf("id = %q, want late", id)
	}
	// A plain write (create, then write) is reported once.
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, _ := recv(t, ch, 2*time.Second); id != "plain" {
		t.Errorf("id = %q, want plain", id)
	}
	// Rewriting a reported file does not repeat it; removing and writing
	// it again does.
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("2"), 0o600); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, ch, 200*time.Millisecond)
	if err := os.Remove(filepath.Join(dir, "plain")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("3"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, _ := recv(t, ch, 2*time.Second); id != "plain" {
		t.Errorf("id = %q, want plain again", id)
	}

	cancel()
	if _, ok := recv(t, ch, 2*time.Second); ok {
		t.Error("channel still open after cancel")
	}
}

func TestWatchExitsManyAndUnread(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := WatchExits(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 200 { // more than the channel buffer
		id := fmt.Sprintf("c%03d", i)
		want = append(want, id)
		if err := os.WriteFile(filepath.Join(dir, id), []byte("0"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for len(got) < len(want) {
		id, _ := recv(t, ch, 5*time.Second)
		got = append(got, id)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("got %d ids, want %d: %v", len(got), len(want), got)
	}
	// Nobody reads any more: cancelling must still end the goroutine.
	if err := os.WriteFile(filepath.Join(dir, "unread"), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after cancel")
		}
	}
}

func TestWatchExitsDirRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exits")
	ch, err := WatchExits(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := recv(t, ch, 2*time.Second); ok {
		t.Error("channel still open after its dir was removed")
	}
}

func TestReopenLogFIFO(t *testing.T) {
	ctx := context.Background()
	files := layout.New(t.TempDir()).Container("c1")
	bundle := files.Bundle
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	ctl := files.CtlFifo()

	if err := ReopenLog(ctx, files, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReopenLog(no fifo) = %v, want ErrNotFound", err)
	}
	if err := syscall.Mkfifo(ctl, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ReopenLog(ctx, files, ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ReopenLog(no reader) = %v, want ErrNotRunning", err)
	}

	// Stand in for conmon: a reader on the FIFO.
	rd, err := os.OpenFile(ctl, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	logPath := filepath.Join(bundle, "ctr.log")
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = os.WriteFile(logPath, nil, 0o600)
	}()
	start := time.Now()
	if err := ReopenLog(ctx, files, logPath); err != nil {
		t.Fatalf("ReopenLog() = %v", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("ReopenLog returned after %v, before the log existed", took)
	}
	buf := make([]byte, 64)
	n, _ := rd.Read(buf)
	if got := string(buf[:n]); got != "2 0 0\n" {
		t.Errorf("ctl got %q, want %q", got, "2 0 0\n")
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := ReopenLog(short, files, filepath.Join(bundle, "never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReopenLog(never) = %v, want DeadlineExceeded", err)
	}
}
