// Package logkey names the slog attribute keys that every crisp package
// uses, so that one grep finds a pod or container across all logs. It
// imports nothing.
package logkey

// Attribute keys.
const (
	Pod       = "pod"       // sandbox id
	Container = "container" // container id
	Runtime   = "runtime"   // runtime handler
	Namespace = "namespace"
	RPC       = "rpc"
	Code      = "code"
	Action    = "action"
	Reason    = "reason"
	Took      = "took"
	Err       = "err"
	// Subscriber numbers a GetContainerEvents stream.
	Subscriber = "subscriber"
)
