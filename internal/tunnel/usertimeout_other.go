//go:build !linux

package tunnel

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist: dead
// peers are then found by keepalive alone (Idle + Interval*Count) and, with
// data in flight, by the write timeout and the kernel's retransmission
// limit.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
