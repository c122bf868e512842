package main

import (
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/crisp-cri/crisp/runtimes/logkey"
)

// notifySystemd tells the service manager crispd's state (sd_notify), when
// NOTIFY_SOCKET says one is listening (Type=notify in
// contrib/systemd/crisp.service): READY=1 once both sockets serve, so that
// kubelet, ordered after crisp, never starts against a socket that is not
// there yet; STOPPING=1 as shutdown begins. Without NOTIFY_SOCKET it does
// nothing.
func notifySystemd(state string, log *slog.Logger) {
	sent, err := daemon.SdNotify(false, state)
	switch {
	case err != nil:
		log.Warn("systemd notification not sent", slog.String("state", state), slog.Any(logkey.Err, err))
	case sent:
		log.Debug("systemd notified", slog.String("state", state))
	}
}
