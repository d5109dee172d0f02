//go:build unix

package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"herald/internal/faultsmtp"
)

// TestKillAndRestart is issue 4's crash-safety promise, at CI size: while
// `herald serve` delivers a digest issue to every reader, it is stopped
// once with SIGTERM and then killed with SIGKILL at random moments and
// restarted each time. Afterwards:
//
//   - the SIGTERM left nothing ambiguous: no row sending, and the relay had
//     received exactly the rows marked sent, once each;
//   - every reader received the issue; a reader received it more than once
//     only with the same Message-ID, and there are at most kills x
//     connections repeats (the messages in flight at the instant of a kill:
//     a worker sends its next message only once the last one is recorded,
//     and there are as many workers as connections);
//   - the database agrees with the relay: rows sent = distinct recipients
//     received, nothing queued, sending or failed.
//
// The knobs, for bench/killtest.sh: HERALD_KILLTEST_READERS (2000),
// HERALD_KILLTEST_KILLS (5), HERALD_KILLTEST_DATA_DELAY (20ms: how long the
// relay takes per message, so that kills land mid-send),
// HERALD_KILLTEST_MAX_UPTIME (1.5s: a child is killed at a random moment
// below this after it resumed sending), HERALD_KILLTEST_CONNECTIONS (4:
// smtp.connections and delivery.workers), HERALD_KILLTEST_SEED.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills herald: not with -short")
	}
	var (
		readers   = envInt(t, "HERALD_KILLTEST_READERS", 2000)
		kills     = envInt(t, "HERALD_KILLTEST_KILLS", 5)
		dataDelay = envDuration(t, "HERALD_KILLTEST_DATA_DELAY", 20*time.Millisecond)
		maxUp     = envDuration(t, "HERALD_KILLTEST_MAX_UPTIME", 1500*time.Millisecond)
		// smtp.connections and delivery.workers alike: the bound on
		// repeats is one per worker.
		connections = envInt(t, "HERALD_KILLTEST_CONNECTIONS", 4)
		sd          = seed(t, "HERALD_KILLTEST_SEED")
	)
	rnd := rand.New(rand.NewPCG(sd, 2))
	uptime := func() time.Duration { return maxUp/10 + time.Duration(rnd.Int64N(int64(maxUp-maxUp/10))) }

	relay, err := faultsmtp.Start(faultsmtp.Config{Seed: sd, Faults: faultsmtp.Faults{DataDelay: dataDelay}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	began := time.Now()
	s := newSite(t, siteOptions{
		smtpPort:    relay.Port(),
		connections: connections,
		batchSize:   50,
		// Short, so that rows a killed child held come back soon; long
		// enough that a send (at most lease/4) never times out on a slow
		// machine, which would make a repeat no kill caused.
		lease:     10 * time.Second,
		retryBase: time.Second,
		retryMax:  5 * time.Second,
	}, readers)
	db := s.openDB(t)
	t.Logf("site ready in %v: %d readers", time.Since(began).Round(time.Millisecond), readers)

	sendStart := time.Now()
	c := s.serve(t)
	issue := s.sendIssue(t)

	// SIGTERM mid-send: serve drains and exits 0, and leaves no row whose
	// fate is unknown.
	waitReceived(t, s, relay, 1)
	time.Sleep(uptime())
	if err := c.signal(t, syscall.SIGTERM, time.Minute); err != nil {
		t.Fatalf("herald serve after SIGTERM: %v\n%s", err, s.logTail(t))
	}
	drained := issueRows(t, db, issue)
	termTally := relay.Tally(faultsmtp.Check{MessageIDPrefix: fmt.Sprintf("<herald.digest.%d.", issue)})
	sentAtTerm := 0
	for _, r := range drained {
		got := len(termTally.Received[r.email])
		switch {
		case r.status == "sending":
			t.Errorf("after SIGTERM %s is still sending (lease owner %q)", r.email, r.leaseOwner)
		case r.status == "sent" && got != 1:
			t.Errorf("after SIGTERM %s is sent and the relay received %d copies", r.email, got)
		case r.status != "sent" && got != 0:
			t.Errorf("after SIGTERM %s is %s and the relay received %d copies", r.email, r.status, got)
		}
		if r.status == "sent" {
			sentAtTerm++
		}
	}
	if sentAtTerm != len(termTally.Received) {
		t.Errorf("after SIGTERM: %d rows sent, the relay received %d recipients", sentAtTerm, len(termTally.Received))
	}
	t.Logf("SIGTERM after %d of %d sent: drained cleanly", sentAtTerm, len(drained))

	// SIGKILL at random moments, restarting each time.
	done := 0
	for done < kills {
		c = s.serve(t)
		if pending(t, db, issue) == 0 {
			t.Logf("the issue was delivered after %d of %d kills", done, kills)
			break
		}
		waitReceived(t, s, relay, relay.Count()+1)
		time.Sleep(uptime())
		if err := c.signal(t, syscall.SIGKILL, 30*time.Second); err == nil {
			t.Fatalf("herald serve exited cleanly before it was killed\n%s", s.logTail(t))
		}
		done++
		t.Logf("kill %d: %d messages received, %d pending", done, relay.Count(), pending(t, db, issue))
	}
	if done < kills {
		t.Errorf("only %d of %d kills landed before the send finished: slow the relay (HERALD_KILLTEST_DATA_DELAY)", done, kills)
	}

	// A last run delivers the rest, including the rows the killed children
	// held, once their leases expire.
	c = s.serve(t)
	waitSettled(t, s, db, issue, 5*time.Minute)
	elapsed := time.Since(sendStart)
	if err := c.signal(t, syscall.SIGTERM, time.Minute); err != nil {
		t.Errorf("herald serve after the last SIGTERM: %v", err)
	}

	tally := agree(t, db, relay, issue, s.readers)
	maxRepeats := done * connections
	result := "PASS"
	if tally.Repeats > maxRepeats {
		result = "FAIL"
		t.Errorf("%d repeats, at most %d allowed (%d kills x %d connections): %s",
			tally.Repeats, maxRepeats, done, connections, strings.Join(repeated(tally), ", "))
	}
	if t.Failed() {
		result = "FAIL"
	}
	counts := statusCounts(issueRows(t, db, issue))
	// One line for bench/killtest.sh to pick up.
	t.Logf("KILLTEST readers=%d kills=%d repeats=%d max_allowed=%d sent_rows=%d received=%d distinct=%d elapsed=%s seed=%d result=%s",
		readers, done, tally.Repeats, maxRepeats, counts["sent"], tally.Repeats+len(tally.Received), len(tally.Received),
		elapsed.Round(100*time.Millisecond), sd, result)
	if tally.Repeats > 0 {
		t.Logf("repeated: %s", strings.Join(repeated(tally), ", "))
	}
}

// waitReceived waits until the relay has accepted at least n messages: the
// child is sending.
func waitReceived(t *testing.T, s *site, relay *faultsmtp.Server, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for relay.Count() < n {
		select {
		case <-relay.Arrived():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("the relay did not reach %d messages within a minute\n%s", n, s.logTail(t))
		}
	}
}
