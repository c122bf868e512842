//go:build !crisp_failpoints

package failpoint

// Hit marks the failpoint name. This build has no failpoints: it does
// nothing, and the compiler inlines it away.
func Hit(name string) {}
