package ocispec

import (
	"slices"
	"syscall"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestProcessArgs(t *testing.T) {
	tests := []struct {
		name            string
		command, args   []string
		entrypoint, cmd []string
		noImage         bool
		want            []string
		wantErr         string
	}{
		{name: "image entrypoint and cmd", entrypoint: []string{"/entry", "-v"}, cmd: []string{"serve"}, want: []string{"/entry", "-v", "serve"}},
		{name: "image cmd only", cmd: []string{"/bin/sh", "-c", "true"}, want: []string{"/bin/sh", "-c", "true"}},
		{name: "args replace cmd", entrypoint: []string{"/entry"}, cmd: []string{"serve"}, args: []string{"check"}, want: []string{"/entry", "check"}},
		{name: "command replaces entrypoint and drops cmd", entrypoint: []string{"/entry"}, cmd: []string{"serve"}, command: []string{"/bin/echo"}, want: []string{"/bin/echo"}},
		{name: "command and args", entrypoint: []string{"/entry"}, cmd: []string{"serve"}, command: []string{"/bin/echo"}, args: []string{"hi"}, want: []string{"/bin/echo", "hi"}},
		{name: "args without any entrypoint", args: []string{"/bin/true"}, want: []string{"/bin/true"}},
		{name: "no image config", noImage: true, command: []string{"/pause"}, want: []string{"/pause"}},
		{name: "nothing to run", wantErr: `container "app": no command`},
		{name: "empty first word", command: []string{""}, wantErr: "first word is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Config.Command, in.Config.Args = tt.command, tt.args
				in.Image.Config.Entrypoint, in.Image.Config.Cmd = tt.entrypoint, tt.cmd
				if tt.noImage {
					in.Image = nil
				}
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Process.Args; !slices.Equal(got, tt.want) {
				t.Errorf("Args = %q, want %q", got, tt.want)
			}
		})
	}
}

func kv(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }

func TestProcessEnv(t *testing.T) {
	tests := []struct {
		name     string
		image    []string
		cri      []*runtimeapi.KeyValue
		hostname string
		user     int64
		want     []string
		wantErr  string
	}{
		{
			name: "image env kept, defaults added", image: []string{"A=1", "B=2"}, hostname: "web",
			want: []string{"PATH=" + defaultPath, "HOSTNAME=web", "HOME=/root", "A=1", "B=2"},
		},
		{
			name: "CRI wins in the image's position, new keys appended", image: []string{"PATH=/bin", "A=1", "B=2"},
			cri:  []*runtimeapi.KeyValue{kv("C", "3"), kv("A", "cri"), kv("HOME", "/h")},
			want: []string{"HOSTNAME=web", "PATH=/bin", "A=cri", "B=2", "C=3", "HOME=/h"}, hostname: "web",
		},
		{
			name: "CRI PATH replaces the default", cri: []*runtimeapi.KeyValue{kv("PATH", "/x")},
			want: []string{"HOME=/root", "PATH=/x"},
		},
		{
			name: "HOME of the user from passwd", user: 1000,
			want: []string{"PATH=" + defaultPath, "HOME=/home/app"},
		},
		{
			name: "HOME of a user not in passwd is /", user: 4242,
			want: []string{"PATH=" + defaultPath, "HOME=/"},
		},
		{name: "value with '=' kept", cri: []*runtimeapi.KeyValue{kv("Q", "a=b")}, want: []string{"PATH=" + defaultPath, "HOME=/root", "Q=a=b"}},
		{name: "empty key", cri: []*runtimeapi.KeyValue{kv("", "x")}, wantErr: `envs[0].key ""`},
		{name: "key with =", cri: []*runtimeapi.KeyValue{kv("A", "1"), kv("B=C", "x")}, wantErr: `envs[1].key "B=C"`},
		{name: "NUL in value", cri: []*runtimeapi.KeyValue{kv("A", "x\x00y")}, wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Image.Config.Env = tt.image
				in.Config.Envs = tt.cri
				in.Sandbox.Hostname = tt.hostname
				in.Sandbox.Config.Hostname = ""
				if tt.user != 0 {
					sc(in).RunAsUser = int64v(tt.user)
				}
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Process.Env; !slices.Equal(got, tt.want) {
				t.Errorf("Env = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWorkingDirAndTerminal(t *testing.T) {
	tests := []struct {
		name       string
		cri, image string
		tty        bool
		want       string
		wantErr    string
	}{
		{name: "CRI working_dir wins", cri: "/work", image: "/srv", want: "/work"},
		{name: "image WorkingDir", image: "/srv/", want: "/srv", tty: true},
		{name: "default root", want: "/"},
		{name: "relative CRI dir", cri: "work", wantErr: `working_dir "work" is not absolute`},
		{name: "relative image dir", image: "srv", wantErr: `the image's WorkingDir "srv"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildSpec(t, func(in *ContainerInput) {
				in.Config.WorkingDir, in.Image.Config.WorkingDir, in.Config.Tty = tt.cri, tt.image, tt.tty
			})
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got := s.Process.Cwd; got != tt.want {
				t.Errorf("Cwd = %q, want %q", got, tt.want)
			}
			if got := s.Process.Terminal; got != tt.tty {
				t.Errorf("Terminal = %v, want %v", got, tt.tty)
			}
		})
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		name    string
		img     *imgspecv1.Image
		cri     runtimeapi.Signal
		want    syscall.Signal
		wantErr string
	}{
		{name: "no image", want: syscall.SIGTERM},
		{name: "image without StopSignal", img: &imgspecv1.Image{}, want: syscall.SIGTERM},
		{name: "SIG name", img: stopImage("SIGQUIT"), want: syscall.SIGQUIT},
		{name: "bare name", img: stopImage("QUIT"), want: syscall.SIGQUIT},
		{name: "lower case", img: stopImage("sigwinch"), want: syscall.SIGWINCH},
		{name: "number", img: stopImage("9"), want: syscall.SIGKILL},
		{name: "RTMIN+3", img: stopImage("SIGRTMIN+3"), want: syscall.Signal(37)},
		{name: "RTMAX-1", img: stopImage("RTMAX-1"), want: syscall.Signal(63)},
		{name: "RTMIN", img: stopImage("SIGRTMIN"), want: syscall.Signal(34)},
		{name: "unknown name", img: stopImage("SIGFOO"), wantErr: `image StopSignal: signal "SIGFOO"`},
		{name: "number out of range", img: stopImage("65"), wantErr: `signal "65"`},
		{name: "RTMIN beyond RTMAX", img: stopImage("RTMIN+31"), wantErr: `signal "RTMIN+31"`},
		{name: "CRI stop_signal wins", img: stopImage("SIGQUIT"), cri: runtimeapi.Signal_SIGNAL_SIGUSR1, want: syscall.SIGUSR1},
		{name: "CRI real-time signal", cri: runtimeapi.Signal_SIGNAL_SIGRTMINPLUS2, want: syscall.Signal(36)},
		{name: "CRI RTMAX-minus", cri: runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1, want: syscall.Signal(63)},
		{name: "CRI RTMAX", cri: runtimeapi.Signal_SIGNAL_SIGRTMAX, want: syscall.Signal(64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{StopSignal: tt.cri}
			got, err := ContainerStopSignal(cfg, tt.img)
			if tt.cri == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
				got2, err2 := StopSignal(tt.img)
				if got2 != got || (err == nil) != (err2 == nil) {
					t.Errorf("StopSignal() = %v, %v; ContainerStopSignal() = %v, %v; want the same", got2, err2, got, err)
				}
			}
			if !checkErr(t, err, tt.wantErr, false) {
				return
			}
			if got != tt.want {
				t.Errorf("signal = %d, want %d", got, tt.want)
			}
		})
	}
}

func stopImage(sig string) *imgspecv1.Image {
	return &imgspecv1.Image{Config: imgspecv1.ImageConfig{StopSignal: sig}}
}

func TestCRISignal(t *testing.T) {
	tests := []struct {
		sig  syscall.Signal
		want runtimeapi.Signal
	}{
		{syscall.SIGTERM, runtimeapi.Signal_SIGNAL_SIGTERM},
		{syscall.SIGQUIT, runtimeapi.Signal_SIGNAL_SIGQUIT},
		{syscall.SIGCHLD, runtimeapi.Signal_SIGNAL_SIGCHLD}, // not SIGCLD
		{syscall.SIGABRT, runtimeapi.Signal_SIGNAL_SIGABRT}, // not SIGIOT
		{syscall.SIGIO, runtimeapi.Signal_SIGNAL_SIGIO},     // not SIGPOLL
		{syscall.Signal(sigRTMIN + 3), runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3},
		{syscall.Signal(63), runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1},
		{0, runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT},
	}
	for _, tt := range tests {
		if got := CRISignal(tt.sig); got != tt.want {
			t.Errorf("CRISignal(%d) = %v, want %v", tt.sig, got, tt.want)
		}
	}
	// Every CRI signal maps back to itself or to the first name of its number.
	for n := range runtimeapi.Signal_name {
		s := runtimeapi.Signal(n)
		if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		sig, err := ContainerStopSignal(&runtimeapi.ContainerConfig{StopSignal: s}, nil)
		if err != nil {
			t.Errorf("%v does not parse: %v", s, err)
			continue
		}
		if back := CRISignal(sig); back != s && back > s {
			t.Errorf("CRISignal(%d) = %v, want %v or an earlier name", sig, back, s)
		}
	}
}
