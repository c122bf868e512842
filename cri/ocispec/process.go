package ocispec

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultPath is the PATH a container gets when neither the image nor the
// CRI config sets one (Docker's and containerd's default).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerProcess builds spec.process without capabilities, resources or
// LSM profiles, which the other files fill in.
func containerProcess(in *ContainerInput) (*specs.Process, error) {
	cfg := in.Config
	var img imgspecv1.ImageConfig
	if in.Image != nil {
		img = in.Image.Config
	}
	args, err := processArgs(cfg, img)
	if err != nil {
		return nil, err
	}
	cwd, err := workingDir(cfg.WorkingDir, img.WorkingDir)
	if err != nil {
		return nil, err
	}
	user, home, err := resolveUser(in.Rootfs, cfg.GetLinux().GetSecurityContext(), img.User)
	if err != nil {
		return nil, err
	}
	env, err := processEnv(img.Env, cfg.Envs, in.Sandbox.hostname(), home)
	if err != nil {
		return nil, err
	}
	return &specs.Process{
		Terminal:        cfg.Tty,
		User:            user,
		Args:            args,
		Env:             env,
		Cwd:             cwd,
		NoNewPrivileges: cfg.GetLinux().GetSecurityContext().GetNoNewPrivs(),
	}, nil
}

// processArgs applies Docker's rules: a CRI command replaces the image's
// Entrypoint and drops its Cmd; CRI args replace the Cmd.
func processArgs(cfg *runtimeapi.ContainerConfig, img imgspecv1.ImageConfig) ([]string, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if len(cfg.Command) > 0 {
		entrypoint, cmd = cfg.Command, nil
	}
	if len(cfg.Args) > 0 {
		cmd = cfg.Args
	}
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command: command, args and the image's Entrypoint and Cmd are all empty: %w", ErrInvalid)
	}
	if args[0] == "" {
		return nil, fmt.Errorf("the command's first word is empty: %w", ErrInvalid)
	}
	return args, nil
}

// workingDir picks the CRI working_dir, else the image's, else "/".
func workingDir(cri, image string) (string, error) {
	field, dir := "working_dir", cri
	if dir == "" {
		field, dir = "the image's WorkingDir", image
	}
	if dir == "" {
		return "/", nil
	}
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("%s %q is not absolute: %w", field, dir, ErrInvalid)
	}
	return path.Clean(dir), nil
}

// processEnv overlays the CRI envs on the image's Env: a key keeps its
// first position, the CRI value wins. PATH, HOSTNAME and HOME get defaults
// when neither sets them.
func processEnv(image []string, cri []*runtimeapi.KeyValue, hostname, home string) ([]string, error) {
	var env []string
	at := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			env[i] = kv
			return
		}
		at[k] = len(env)
		env = append(env, kv)
	}
	for _, kv := range image {
		if kv != "" {
			set(kv)
		}
	}
	for i, kv := range cri {
		k, v := kv.GetKey(), string(kv.GetValue())
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("envs[%d].key %q is not a valid variable name: %w", i, k, ErrInvalid)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("envs[%d] (%s) has a NUL byte in its value: %w", i, k, ErrInvalid)
		}
		set(k + "=" + v)
	}
	var defaults []string
	for _, d := range [][2]string{{"PATH", defaultPath}, {"HOSTNAME", hostname}, {"HOME", home}} {
		if _, ok := at[d[0]]; !ok && d[1] != "" {
			defaults = append(defaults, d[0]+"="+d[1])
		}
	}
	return append(defaults, env...), nil
}

// sigRTMIN is Linux's first real-time signal as the kernel numbers it
// (Docker's SIGRTMIN+n naming is relative to it).
const sigRTMIN = 34

var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "BUS": syscall.SIGBUS, "CHLD": syscall.SIGCHLD,
	"CLD": syscall.SIGCLD, "CONT": syscall.SIGCONT, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "IO": syscall.SIGIO, "IOT": syscall.SIGIOT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "POLL": syscall.SIGPOLL, "PROF": syscall.SIGPROF,
	"PWR": syscall.SIGPWR, "QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "STKFLT": syscall.SIGSTKFLT,
	"STOP": syscall.SIGSTOP, "SYS": syscall.SIGSYS, "TERM": syscall.SIGTERM, "TRAP": syscall.SIGTRAP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU, "URG": syscall.SIGURG,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "VTALRM": syscall.SIGVTALRM, "WINCH": syscall.SIGWINCH,
	"XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ,
}

// ParseSignal parses a signal as image configs write it: "SIGQUIT",
// "QUIT", "sigquit", "3", "SIGRTMIN+3" or "RTMAX-1". Errors wrap
// ErrInvalid.
func ParseSignal(s string) (syscall.Signal, error) {
	bad := fmt.Errorf("signal %q is not a Linux signal: %w", s, ErrInvalid)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, bad
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signals[name]; ok {
		return sig, nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", sigRTMIN, 1}, {"RTMAX-", 64, -1}, {"RTMIN", sigRTMIN, 0}, {"RTMAX", 64, 0}} {
		rest, ok := strings.CutPrefix(name, rt.prefix)
		if !ok {
			continue
		}
		off := 0
		if rt.sign != 0 {
			var err error
			if off, err = strconv.Atoi(rest); err != nil || off < 0 {
				return 0, bad
			}
		} else if rest != "" {
			return 0, bad
		}
		n := rt.base + rt.sign*off
		if n < sigRTMIN || n > 64 {
			return 0, bad
		}
		return syscall.Signal(n), nil
	}
	return 0, bad
}

// StopSignal resolves the signal that stops a container of image img: the
// image config's StopSignal, else SIGTERM. An unparseable StopSignal wraps
// ErrInvalid.
func StopSignal(img *imgspecv1.Image) (syscall.Signal, error) {
	if img == nil || img.Config.StopSignal == "" {
		return syscall.SIGTERM, nil
	}
	sig, err := ParseSignal(img.Config.StopSignal)
	if err != nil {
		return 0, fmt.Errorf("image StopSignal: %w", err)
	}
	return sig, nil
}

// ContainerStopSignal is StopSignal with the CRI config's stop_signal
// (KEP-4960) taking precedence over the image's.
func ContainerStopSignal(cfg *runtimeapi.ContainerConfig, img *imgspecv1.Image) (syscall.Signal, error) {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		sig, err := ParseSignal(criSignalName(s))
		if err != nil {
			return 0, fmt.Errorf("stop_signal: %w", err)
		}
		return sig, nil
	}
	return StopSignal(img)
}

// criSignalName is the signal name of a CRI Signal: SIGNAL_SIGRTMINPLUS3
// is SIGRTMIN+3.
func criSignalName(s runtimeapi.Signal) string {
	name := strings.TrimPrefix(s.String(), "SIGNAL_")
	name = strings.Replace(name, "RTMINPLUS", "RTMIN+", 1)
	return strings.Replace(name, "RTMAXMINUS", "RTMAX-", 1)
}

// criSignals maps a signal number to its CRI Signal, the first name in
// CRI's order for numbers with two (SIGCHLD before SIGCLD, SIGABRT before
// SIGIOT).
var criSignals = func() map[syscall.Signal]runtimeapi.Signal {
	m := map[syscall.Signal]runtimeapi.Signal{}
	for n := int32(1); ; n++ {
		if _, ok := runtimeapi.Signal_name[n]; !ok {
			return m
		}
		s := runtimeapi.Signal(n)
		if sig, err := ParseSignal(criSignalName(s)); err == nil {
			if _, seen := m[sig]; !seen {
				m[sig] = s
			}
		}
	}
}()

// CRISignal is sig as CRI names it; SIGNAL_RUNTIME_DEFAULT for 0 or a
// number CRI has no name for.
func CRISignal(sig syscall.Signal) runtimeapi.Signal { return criSignals[sig] }
