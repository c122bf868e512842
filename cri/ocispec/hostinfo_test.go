package ocispec

import (
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"testing"
)

func TestDeviceFromPath(t *testing.T) {
	tests := []struct {
		path    string
		want    string // type major:minor
		wantErr error
	}{
		{path: "/dev/null", want: "c 1:3"},
		{path: "/dev/zero", want: "c 1:5"},
		{path: "/etc/hostname-does-not-exist", wantErr: fs.ErrNotExist},
		{path: "/etc/passwd", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			d, err := DeviceFromPath(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DeviceFromPath() err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Type + " " + itoa(d.Major) + ":" + itoa(d.Minor); got != tt.want {
				t.Errorf("DeviceFromPath() = %s, want %s", got, tt.want)
			}
			if d.Path != tt.path || d.FileMode == nil || d.UID == nil || d.GID == nil {
				t.Errorf("DeviceFromPath() = %+v, want path, mode and owner set", d)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestHostDevices(t *testing.T) {
	devs, err := HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, d := range devs {
		paths = append(paths, d.Path)
	}
	if !slices.Contains(paths, "/dev/null") {
		t.Errorf("HostDevices() = %v, want /dev/null among them", paths)
	}
	if slices.Contains(paths, "/dev/console") {
		t.Errorf("HostDevices() includes /dev/console, which runc makes itself")
	}
}

func TestCapsOfMask(t *testing.T) {
	tests := []struct {
		name string
		mask uint64
		want []string
	}{
		{name: "none", mask: 0, want: []string{}},
		{name: "net_bind_service", mask: 0x400, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "this VM's root", mask: 0x000001fffeffffff, want: slices.DeleteFunc(slices.Clone(allCaps), func(c string) bool { return c == "CAP_SYS_RESOURCE" })},
		{name: "unknown high bits ignored", mask: 1<<41 | 1, want: []string{"CAP_CHOWN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capsOfMask(tt.mask); !slices.Equal(got, tt.want) {
				t.Errorf("capsOfMask(%#x) = %v, want %v", tt.mask, got, tt.want)
			}
		})
	}
	if _, err := CurrentCapabilities(); err != nil {
		t.Errorf("CurrentCapabilities() err = %v", err)
	}
}
