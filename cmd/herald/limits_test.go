package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/store/postgres/pgtest"
)

// TestServeSharesSignupLimits runs two `herald serve` on one PostgreSQL
// schema, as two instances behind a load balancer: one client's signups
// count against limits.signup_per_ip together, whichever instance takes
// them.
func TestServeSharesSignupLimits(t *testing.T) {
	pgtest.Require(t)
	usePostgres(t)
	var bases [2]string
	for i := range bases {
		bases[i], _ = startLimitsServe(t, fmt.Sprint(i), "  signup_per_ip: 3\n  altcha: \"off\"\n")
	}

	signup := func(base string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/subscribe", strings.NewReader(`{"email":"jane@example.org"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, _ := do(t, req)
		return resp.StatusCode
	}
	// The limit is a sliding minute estimated from two fixed ones: three
	// signups at the end of one minute weigh a little under three just
	// after it. Start early enough in a minute that the burst stays in it.
	if now := time.Now(); now.Second() >= 50 {
		time.Sleep(now.Truncate(time.Minute).Add(time.Minute + 100*time.Millisecond).Sub(now))
	}
	// Three from 127.0.0.1 over both instances, then the fourth, on
	// either, is refused; each instance alone has seen at most two.
	for i := range 3 {
		if got := signup(bases[i%2]); got != http.StatusAccepted {
			t.Fatalf("signup %d: status %d, want 202", i+1, got)
		}
	}
	for i, base := range bases {
		if got := signup(base); got != http.StatusTooManyRequests {
			t.Errorf("instance %d: status %d after three signups, want 429", i, got)
		}
	}
}

// waitReady waits until the serve at base answers /readyz.
func waitReady(t *testing.T, base string, done chan int, stderr *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case c := <-done:
			t.Fatalf("serve exited %d before answering:\n%s", c, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
