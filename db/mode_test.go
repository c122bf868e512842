package db

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDatabaseFilesAreOwnerOnly: the database holds whole container
// configs (env values among them), so it and its -wal and -shm are 0600,
// also when an earlier crisp left them readable.
func TestDatabaseFilesAreOwnerOnly(t *testing.T) {
	for _, tt := range []struct {
		name string
		pre  os.FileMode // 0: no files before Open
	}{{"new database", 0}, {"files left 0644", 0o644}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if tt.pre != 0 {
				s, err := Open(context.Background(), path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				for _, f := range []string{path, path + "-wal", path + "-shm"} {
					os.WriteFile(f, nil, tt.pre) // creates what Close removed
					os.Chmod(f, tt.pre)
				}
				os.Remove(path + "-shm")
				os.Remove(path + "-wal")
				os.Chmod(path, tt.pre)
			}
			s, err := Open(context.Background(), path, Options{})
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			defer s.Close()
			if _, _, err := s.CreateSandbox(context.Background(), testSandbox("web")); err != nil {
				t.Fatal(err) // a write, so that the WAL exists
			}
			for _, f := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatalf("stat %s: %v", f, err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s mode = %v, want 0600", filepath.Base(f), got)
				}
			}
		})
	}
}
