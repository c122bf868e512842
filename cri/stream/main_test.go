package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeRuntimeEnv makes the test binary a fake OCI runtime whose exec runs
// the port-forward bridge (BridgeStdio) on the host: see fakeRuntime.
const fakeRuntimeEnv = "CRISP_STREAM_FAKE_RUNTIME"

// fakePidsEnv names a directory where the fake runtime leaves a file
// named after its pid, so tests can check it is gone afterwards.
const fakePidsEnv = "CRISP_STREAM_FAKE_PIDS"

func TestMain(m *testing.M) {
	if os.Getenv(fakeRuntimeEnv) != "" {
		if err := fakeRuntime(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake runtime:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeRuntime serves `--root=<r> exec --process <p> --pid-file <f> <id>`
// for a process whose args are the bridge's, {"/crispd",
// "port-forward-stdio", <port>}: it writes its pid, then is the bridge.
func fakeRuntime(argv []string) error {
	i := slices.Index(argv, "exec")
	if i != 1 || argv[0] != "--root=/fake" || len(argv) != 7 || argv[2] != "--process" || argv[4] != "--pid-file" {
		return fmt.Errorf("unexpected command line %q", argv)
	}
	b, err := os.ReadFile(argv[3])
	if err != nil {
		return err
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if len(p.Args) != 3 || p.Args[0] != "/crispd" || p.Args[1] != "port-forward-stdio" || p.Terminal {
		return fmt.Errorf("unexpected process %+v", p)
	}
	port, err := strconv.Atoi(p.Args[2])
	if err != nil {
		return err
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(argv[5], pid, 0o600); err != nil {
		return err
	}
	if dir := os.Getenv(fakePidsEnv); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, string(pid)), nil, 0o600); err != nil {
			return err
		}
	}
	return BridgeStdio(context.Background(), port, os.Stdin, os.Stdout)
}
