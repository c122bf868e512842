package ocispec

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestUser(t *testing.T) {
	tests := []struct {
		name      string
		imageUser string
		edit      func(*runtimeapi.LinuxContainerSecurityContext)
		rootfs    fs.FS
		want      specs.User
		wantErr   string
		plain     bool
	}{
		{name: "default root", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image uid in passwd", imageUser: "1000", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{29, 50, 1000}}},
		{name: "image uid not in passwd", imageUser: "4242", want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image uid:gid", imageUser: "4242:4343", want: specs.User{UID: 4242, GID: 4343, AdditionalGids: []uint32{4343}}},
		{name: "image name", imageUser: "app", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{29, 50, 1000}}},
		{name: "image name:group", imageUser: "app:video", want: specs.User{UID: 1000, GID: 44, AdditionalGids: []uint32{29, 44, 50}}},
		{name: "image name:gid", imageUser: "daemon:7", want: specs.User{UID: 1, GID: 7, AdditionalGids: []uint32{7}}},
		{name: "image name missing", imageUser: "ghost", wantErr: `container "app": the image's User "ghost" not in the image's /etc/passwd: invalid config`},
		{name: "image group missing", imageUser: "app:ghosts", wantErr: `the image's User group "ghosts" not in the image's /etc/group`},
		{name: "image name without passwd", imageUser: "app", rootfs: fstest.MapFS{}, wantErr: `"app": the image has no /etc/passwd`},
		{name: "numeric user without passwd", imageUser: "5:6", rootfs: fstest.MapFS{}, want: specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{6}}},
		{name: "group name without group file", imageUser: "5:users", rootfs: fstest.MapFS{"etc/passwd": {Data: []byte(testPasswd)}}, wantErr: "the image has no /etc/group"},
		{
			name: "run_as_user wins over image user", imageUser: "app",
			edit: func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUser = int64v(65534) },
			want: specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{65534}},
		},
		{
			name: "run_as_user, run_as_group and supplemental groups",
			edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.RunAsUser, sc.RunAsGroup, sc.SupplementalGroups = int64v(1000), int64v(2000), []int64{3000, 29, 3000}
			},
			want: specs.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{29, 50, 2000, 3000}},
		},
		{
			name: "strict policy ignores /etc/group",
			edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.RunAsUser, sc.SupplementalGroups = int64v(1000), []int64{3000}
				sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
			},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 3000}},
		},
		{
			name: "run_as_username",
			edit: func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUsername = "daemon" },
			want: specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1}},
		},
		{
			name:    "run_as_username missing",
			edit:    func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUsername = "nobody2" },
			wantErr: `container "app": security_context.run_as_username "nobody2" not in the image's /etc/passwd: invalid config`,
		},
		{
			name:    "run_as_group alone",
			edit:    func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsGroup = int64v(5) },
			wantErr: "security_context.run_as_group needs run_as_user or run_as_username",
		},
		{
			name:    "negative run_as_user",
			edit:    func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.RunAsUser = int64v(-1) },
			wantErr: "security_context.run_as_user -1 is out of range",
		},
		{
			name: "run_as_group too big",
			edit: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.RunAsUser, sc.RunAsGroup = int64v(1), int64v(1<<32)
			},
			wantErr: "security_context.run_as_group 4294967296 is out of range",
		},
		{
			name:    "negative supplemental group",
			edit:    func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.SupplementalGroups = []int64{1, -5} },
			wantErr: "security_context.supplemental_groups[1] -5",
		},
		{
			name:      "unreadable passwd",
			imageUser: "app",
			rootfs:    errFS{},
			wantErr:   "read the image's /etc/passwd: boom",
			plain:     true,
		},
		{
			name:      "huge passwd line",
			imageUser: "app",
			rootfs:    fstest.MapFS{"etc/passwd": {Data: []byte(strings.Repeat("x", 100<<10))}},
			wantErr:   "read the image's /etc/passwd: bufio.Scanner: token too long",
			plain:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Image.Config.User = tt.imageUser
				if tt.edit != nil {
					tt.edit(sc(in))
				}
				if tt.rootfs != nil {
					in.Rootfs = tt.rootfs
				}
			})
			if !checkErr(t, err, tt.wantErr, tt.plain) {
				return
			}
			if got := s.Process.User; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("User = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// errFS fails every open with an error other than "not found".
type errFS struct{}

func (errFS) Open(string) (fs.File, error) { return nil, errors.New("boom") }
