package pod

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	root := t.TempDir()
	if HasRecord(root, id) {
		t.Fatal("HasRecord() = true before any write")
	}
	if _, err := ReadRecord(root, id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadRecord() of nothing = %v, want fs.ErrNotExist", err)
	}
	want := Record{Row: json.RawMessage(`{"ID":"x"}`), Infra: true, NetNS: true}
	if err := WriteRecord(root, id, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecord(root, id)
	if err != nil || !reflect.DeepEqual(got, want) || !HasRecord(root, id) {
		t.Fatalf("ReadRecord() = %+v, %v; want %+v", got, err, want)
	}
	entries, _ := os.ReadDir(Dir(root, id))
	if len(entries) != 1 {
		t.Errorf("pod dir holds %v, want only the record", entries)
	}
	if err := WriteRecord(root, "../x", want); err == nil {
		t.Error("WriteRecord(bad id) = nil, want an error")
	}
}

func TestUnpinLeavesTheRecord(t *testing.T) {
	root := t.TempDir()
	if err := WriteRecord(root, id, Record{Row: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// Pin files whose mounts a reboot took away.
	for _, p := range []string{"ipcns", "utsns"} {
		if err := os.WriteFile(filepath.Join(Dir(root, id), p), nil, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := Unpin(root, id); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(Dir(root, id))
	if len(entries) != 1 || entries[0].Name() != recordName {
		t.Errorf("after Unpin the pod dir holds %v, want only %s", entries, recordName)
	}
}
