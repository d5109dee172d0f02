// Command herald is Herald's one binary: the web server, scheduler and
// delivery workers (serve), and the operator commands around them.
//
// Run "herald help" for the list of commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// Embedded zone data, so that newsletter time zones resolve on hosts and
	// containers without /usr/share/zoneinfo.
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
