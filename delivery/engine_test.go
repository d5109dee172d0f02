package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/mailer"
)

// settled reports whether no row of s is claimed and unsettled.
func settled(s *fakeStore) func() bool {
	return func() bool { return !slices.Contains(s.statuses(), "sending") }
}

func TestRunSettlesEachOutcome(t *testing.T) {
	h := newHarness()
	sent := h.store.add("welcome")
	bounced := h.store.add("digest")
	failed := h.store.add("digest")
	retried := h.store.add("digest")
	cancelled := h.store.add("digest")
	h.transport.fail(bounced, &mailer.SendError{Code: 550, Stage: "rcpt", Permanent: true,
		Err: errors.New("5.1.1 <reader2@example.com>: no such user")})
	h.transport.fail(failed, &mailer.SendError{Code: 554, Stage: "data", Permanent: true,
		Err: errors.New("5.6.0 message for reader3@example.com refused")})
	h.transport.fail(retried, &mailer.SendError{Code: 451, Stage: "rcpt", Err: errors.New("4.3.0 try later")})
	h.renderer.fail(cancelled, fmt.Errorf("reader unsubscribed: %w", ErrCancel))
	e := h.engine()
	stop := start(t, e)

	eventually(t, "every message settled", func() bool {
		return slices.Equal(h.store.statuses(), []string{"sent", "bounced", "failed", "queued", "cancelled"})
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}

	want := map[int64]string{sent: "sent", bounced: "bounced", failed: "failed", retried: "queued", cancelled: "cancelled"}
	for id, status := range want {
		if got := h.store.row(id).Status; got != status {
			t.Errorf("message %d: status %q, want %q", id, got, status)
		}
	}
	if got := h.transport.deliveries(sent); got != 1 {
		t.Errorf("message %d delivered %d times, want once", sent, got)
	}
	r := h.store.row(retried)
	if r.Attempts != 1 || r.Next.Before(t0.Add(15*time.Second)) || r.Next.After(t0.Add(30*time.Second)) || !strings.Contains(r.LastError, "451") {
		t.Errorf("retried row = attempts %d, next %v, error %q; want 1, t0+[15s,30s], a 451", r.Attempts, r.Next.Sub(t0), r.LastError)
	}
	if got := h.store.row(bounced).LastError; !strings.Contains(got, "550") || strings.Contains(got, "@") {
		t.Errorf("bounce reason = %q, want the reply without the address", got)
	}

	// Settled counts the final outcomes once recorded: not the retry.
	wantStats := Stats{Claimed: 5, Sent: 1, Retried: 1, Failed: 1, Bounced: 1, Cancelled: 1, Settled: 4}
	if got := e.Stats(); got != wantStats {
		t.Errorf("Stats = %+v, want %+v", got, wantStats)
	}
	wantObs := map[string]int{"welcome/sent": 1, "digest/bounced": 1, "digest/failed": 1, "digest/retry": 1, "digest/cancelled": 1}
	if got := h.observer.counts; !maps(got, wantObs) {
		t.Errorf("observed %v, want %v", got, wantObs)
	}
	if lines := h.logs.matching("@"); len(lines) > 0 {
		t.Errorf("logs hold addresses: %q", lines)
	}
	if lines := h.logs.matching("job_id=2 ", "subscriber_id=102", "kind=digest", "outcome=bounced", "code=550"); len(lines) != 1 {
		t.Errorf("bounce logged %d times with its id, subscriber, kind, outcome and code, want once; logs: %q", len(lines), h.logs.lines)
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRunRenderErrorRetriesAndLogsOnce(t *testing.T) {
	h := newHarness()
	id := h.store.add("digest")
	h.renderer.fail(id, errors.New("template: digest.html: no such field"))
	e := h.engine()
	start(t, e)

	eventually(t, "the retry settled", func() bool { return h.store.row(id).Status == "queued" && h.store.row(id).LastError != "" })
	if got := h.store.row(id); got.Attempts != 1 || !strings.Contains(got.LastError, "no such field") {
		t.Errorf("row = attempts %d, error %q", got.Attempts, got.LastError)
	}
	if lines := h.logs.matching("no such field"); len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") {
		t.Errorf("render error logged as %q, want once at ERROR", lines)
	}
	if got := h.transport.deliveries(id); got != 0 {
		t.Errorf("delivered %d times, want never", got)
	}
}

func TestRunRetriesUntilSent(t *testing.T) {
	h := newHarness()
	id := h.store.add("digest")
	h.transport.fail(id,
		&mailer.SendError{Code: 451, Stage: "data", Err: errors.New("try later")},
		&mailer.SendError{Code: 452, Stage: "rcpt", Err: errors.New("mailbox full")})
	e := h.engine()
	start(t, e)

	for attempt := 1; attempt <= 2; attempt++ {
		eventually(t, fmt.Sprintf("retry %d settled", attempt), func() bool {
			r := h.store.row(id)
			return r.Status == "queued" && r.Attempts == attempt
		})
		delay := backoff(e.cfg.RetryBase, e.cfg.RetryMax, attempt)
		if next := h.store.row(id).Next.Sub(h.clock.Now()); next < delay/2 || next > delay {
			t.Fatalf("attempt %d: next attempt in %v, want within [%v, %v]", attempt, next, delay/2, delay)
		}
		h.clock.Advance(delay)
		e.Wake()
	}
	eventually(t, "sent", func() bool { return h.store.row(id).Status == "sent" })
	if got := h.store.row(id).Attempts; got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
	if got := h.transport.deliveries(id); got != 1 {
		t.Errorf("delivered %d times, want once", got)
	}
}

func TestRunPoolWidePause(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 1
	h.cfg.PauseBase = time.Minute
	h.cfg.Lease = 24 * time.Hour // the clock jumps; leases must not be what stops sends
	first := h.store.add("digest")
	h.store.add("digest")
	h.store.add("digest")
	h.transport.fail(first, &mailer.SendError{Code: 421, Stage: "mail", Err: errors.New("4.3.2 service shutting down")})
	e := h.engine()
	start(t, e)

	// The 421 pauses the engine: the jobs after it in the batch go back
	// unattempted, due when the pause ends, their attempt not counted.
	pauseEnd := t0.Add(time.Minute)
	eventually(t, "the batch settled", func() bool {
		r1, r2, r3 := h.store.row(1), h.store.row(2), h.store.row(3)
		return r1.Status == "queued" && r1.Attempts == 1 &&
			r2.Status == "queued" && r2.Next.Equal(pauseEnd) && r3.Status == "queued" && r3.Next.Equal(pauseEnd)
	})
	for id := int64(2); id <= 3; id++ {
		if r := h.store.row(id); r.Attempts != 0 || !r.Next.Equal(pauseEnd) || r.LastError != "" {
			t.Errorf("released row %d = attempts %d, next %v, error %q; want 0, pause end, none", id, r.Attempts, r.Next.Sub(t0), r.LastError)
		}
	}
	if s := e.Stats(); !s.PausedUntil.Equal(pauseEnd) || s.Released != 2 || s.Retried != 1 {
		t.Errorf("Stats = %+v, want paused until t0+1m, 2 released, 1 retried", s)
	}

	// Waking during the pause claims nothing; the sends below must all
	// happen after the clock reached the end of the pause.
	e.Wake()
	e.Wake()
	h.clock.Advance(time.Minute)
	e.Wake()
	receive(t, "three deliveries", h.transport.delivered, 3)
	for id := int64(1); id <= 3; id++ {
		h.transport.mu.Lock()
		at := h.transport.sentAt[fmt.Sprintf("m%d@herald.test", id)]
		h.transport.mu.Unlock()
		if at.Before(pauseEnd) {
			t.Errorf("message %d sent at t0+%v, during the pause", id, at.Sub(t0))
		}
	}
	if s := e.Stats(); !s.PausedUntil.IsZero() {
		t.Errorf("still paused until %v", s.PausedUntil)
	}
}

// runUntilCancelled starts e.Run and returns its context's cancel and a
// channel that receives Run's error.
func runUntilCancelled(e *Engine) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return cancel, done
}

func TestRunDrainsOnCancel(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 2
	h.cfg.BatchSize = 10
	for range 10 {
		h.store.add("digest")
	}
	gate := make(chan struct{})
	h.transport.gate = gate
	e := h.engine()
	cancel, done := runUntilCancelled(e)
	defer cancel()

	// Cancel mid-batch with two sends under way, then let those finish:
	// nothing may start after the cancel.
	receive(t, "two sends under way", h.transport.started, 2)
	cancel()
	close(gate)
	if err := receive(t, "Run to return", done, 1)[0]; err != nil {
		t.Fatalf("Run = %v, want nil after a clean drain", err)
	}

	var sent, queued int
	for id := int64(1); id <= 10; id++ {
		switch r := h.store.row(id); r.Status {
		case "sent":
			sent++
			if r.Attempts != 1 {
				t.Errorf("sent row %d: attempts %d, want 1", id, r.Attempts)
			}
		case "queued":
			queued++
			if r.Attempts != 0 || !r.Next.Equal(h.clock.Now()) || r.LastError != "" {
				t.Errorf("released row %d: attempts %d, next %v, error %q; want 0, now, none", id, r.Attempts, r.Next, r.LastError)
			}
		default:
			t.Errorf("row %d left %q", id, r.Status)
		}
	}
	if sent != 2 || queued != 8 {
		t.Errorf("after drain: %d sent, %d queued; want 2 and 8", sent, queued)
	}
	if s := e.Stats(); s.Sent != 2 || s.Released != 8 || s.Claimed != 10 {
		t.Errorf("Stats = %+v, want 10 claimed, 2 sent, 8 released", s)
	}
	if h.store.ignored != 0 {
		t.Errorf("%d results were for rows not leased by the engine", h.store.ignored)
	}
}

func TestRunDrainsBetweenBatches(t *testing.T) {
	// One worker busy, the dispatcher blocked handing over the next job of
	// a full batch, perhaps one more batch claimed ahead, and more batches
	// due: the cancel releases the rest of what was claimed and claims no
	// more.
	h := newHarness()
	h.cfg.Workers = 1
	h.cfg.BatchSize = 3
	for range 7 {
		h.store.add("digest")
	}
	gate := make(chan struct{})
	h.transport.gate = gate
	e := h.engine()
	cancel, done := runUntilCancelled(e)
	defer cancel()

	receive(t, "one send under way", h.transport.started, 1)
	cancel()
	close(gate)
	if err := receive(t, "Run to return", done, 1)[0]; err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := []string{"sent", "queued", "queued", "queued", "queued", "queued", "queued"}
	if got := h.store.statuses(); !slices.Equal(got, want) {
		t.Errorf("statuses after shutdown = %v, want %v", got, want)
	}
	got := h.store.claimSizes()
	if !slices.Equal(got, []int{3}) && !slices.Equal(got, []int{3, 3}) {
		t.Errorf("claims = %v, want one batch of 3 and at most one more claimed ahead", got)
	}
	if s := e.Stats(); s.Sent != 1 || s.Released != s.Claimed-1 {
		t.Errorf("Stats = %+v, want 1 sent and every other claimed message released", s)
	}
}

func TestWakeClaimsImmediately(t *testing.T) {
	h := newHarness()
	h.cfg.PollInterval = time.Hour
	e := h.engine()
	start(t, e)

	// The first claim (at start) finds nothing; the next one happens only
	// because of Wake, an hour before the poll would.
	receive(t, "the first claim", h.store.claimed, 1)
	id := h.store.add("confirmation")
	e.Wake()
	got := receive(t, "the confirmation", h.transport.delivered, 1)
	if got[0] != fmt.Sprintf("m%d@herald.test", id) {
		t.Errorf("delivered %q", got[0])
	}
}

func TestRunClaimsAgainWhileBatchesFull(t *testing.T) {
	h := newHarness()
	h.cfg.BatchSize = 2
	for range 5 {
		h.store.add("digest")
	}
	e := h.engine()
	start(t, e)

	receive(t, "five deliveries", h.transport.delivered, 5)
	eventually(t, "all settled", settled(h.store))
	if got, want := h.store.claimSizes(), []int{2, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("claims = %v, want %v (no waiting for the poll between full batches)", got, want)
	}
}

func TestRunBoundsConcurrency(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 3
	h.cfg.BatchSize = 50
	for range 20 {
		h.store.add("digest")
	}
	gate := make(chan struct{})
	h.transport.gate = gate
	e := h.engine()
	start(t, e)

	receive(t, "three sends under way", h.transport.started, 3)
	close(gate)
	receive(t, "twenty deliveries", h.transport.delivered, 20)
	h.transport.mu.Lock()
	defer h.transport.mu.Unlock()
	if h.transport.maxInflight != 3 {
		t.Errorf("at most %d sends at once, want 3", h.transport.maxInflight)
	}
}

func TestRunKeepsResultsWhenSettleFails(t *testing.T) {
	h := newHarness()
	h.store.settleErrs = 2
	id := h.store.add("welcome")
	e := h.engine()
	start(t, e)

	eventually(t, "sent", func() bool { return h.store.row(id).Status == "sent" })
	if got := h.transport.deliveries(id); got != 1 {
		t.Errorf("delivered %d times, want once", got)
	}
	if lines := h.logs.matching("settle messages", "database is locked"); len(lines) != 2 {
		t.Errorf("settle failures logged %d times, want 2", len(lines))
	}
}

func TestRunFinalSettleFailure(t *testing.T) {
	h := newHarness()
	h.cfg.SettleEvery = time.Hour // only the final settle
	// The sent result is flushed at once (its worker waits for it to be
	// durable), and fails; the final settle of it fails too.
	h.store.settleErrs = 2
	h.store.add("welcome")
	e := h.engine()
	stop := start(t, e)
	receive(t, "the delivery", h.transport.delivered, 1)
	if err := stop(); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("Run = %v, want the settle error", err)
	}
}

func TestHandleReleasesLateJobs(t *testing.T) {
	h := newHarness()
	h.cfg.Lease = 2 * time.Minute
	id := h.store.add("digest")
	e := h.engine()
	job := claimedJob{Job: h.store.row(id).Job, claimedAt: t0}

	h.clock.Advance(time.Minute + time.Second)
	r := e.handle(context.Background(), job, nil, nil, nil)
	if r.Outcome != OutcomeRelease || !r.NextAttemptAt.Equal(h.clock.Now()) {
		t.Errorf("late job = %+v, want released now", r)
	}
	if got := h.transport.deliveries(id); got != 0 {
		t.Errorf("a job past half its lease was sent")
	}
}

func TestRunTwice(t *testing.T) {
	h := newHarness()
	e := h.engine()
	start(t, e)
	eventually(t, "running", e.running.Load)
	if err := e.Run(context.Background()); err == nil {
		t.Error("a second Run was allowed")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Owner == "" || c.Workers != 4 || c.BatchSize != 100 || c.Lease != 2*time.Minute ||
		c.PollInterval != time.Second || c.RetryBase != 30*time.Second || c.RetryMax != time.Hour ||
		c.MaxAge != 72*time.Hour || c.SettleEvery != 200*time.Millisecond || c.PauseBase != 10*time.Second ||
		c.PauseMax != 10*time.Minute || c.Now == nil || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
	if a, b := (Config{}).withDefaults().Owner, (Config{}).withDefaults().Owner; a == b {
		t.Errorf("two engines share owner %q", a)
	}
}
