package main

import "net"

// isLocalHost reports whether host names this machine: "localhost" or a
// loopback address.
func isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
