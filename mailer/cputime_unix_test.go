//go:build unix

package mailer

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used,
// which, unlike wall time, a busy shared machine does not inflate.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
