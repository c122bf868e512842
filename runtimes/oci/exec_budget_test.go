package oci

import (
	"testing"
)

// TestExecOutputBudget: stdout and stderr share one cap, and a write past
// it is swallowed (never an error, which would stop the process's copy).
func TestExecOutputBudget(t *testing.T) {
	budget := &outputBudget{left: 10}
	out, errOut := &cappedBuffer{budget: budget}, &cappedBuffer{budget: budget}
	for _, w := range []struct {
		buf  *cappedBuffer
		data string
	}{{out, "abcdef"}, {errOut, "123"}, {out, "ghij"}, {errOut, "45"}} {
		if n, err := w.buf.Write([]byte(w.data)); n != len(w.data) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", w.data, n, err, len(w.data))
		}
	}
	if got, want := string(out.Bytes())+"|"+string(errOut.Bytes()), "abcdefg|123"; got != want {
		t.Errorf("kept %q, want %q (10 bytes in all, first come first kept)", got, want)
	}
	if MaxExecOutput >= 16<<20 {
		t.Errorf("MaxExecOutput = %d leaves no room for the reply's envelope under 16 MiB", MaxExecOutput)
	}
}
