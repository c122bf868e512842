// Package host holds the primitives crisp uses on the host itself, so
// that each is written once: reading /proc/self/mountinfo (octal escapes
// decoded), unmounting, creating, joining and removing cgroups, and a
// process's start time and the machine's boot time. The runtimes packages
// and the reconciler's node adapter use it; it imports nothing from crisp.
package host
