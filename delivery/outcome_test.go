package delivery

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"herald/mailer"
)

func TestJudge(t *testing.T) {
	h := newHarness()
	h.cfg.RetryBase, h.cfg.RetryMax, h.cfg.MaxAge = 30*time.Second, time.Hour, 72*time.Hour
	e := h.engine()
	e.rnd = func(n int64) int64 { return n - 1 } // the top of the jitter range: the full delay

	now := t0.Add(time.Hour)
	fresh := Job{ID: 7, SubscriberID: 70, Kind: "digest", Attempts: 3, CreatedAt: t0, Email: "bob@example.com"}
	stale := fresh
	stale.CreatedAt = now.Add(-73 * time.Hour)

	rcpt550 := &mailer.SendError{Code: 550, Stage: "rcpt", Permanent: true, Err: errors.New("5.1.1 <bob@example.com>: Recipient address rejected")}
	data554 := &mailer.SendError{Code: 554, Stage: "data", Permanent: true, Err: errors.New("5.7.1 message refused")}
	rcpt451 := &mailer.SendError{Code: 451, Stage: "rcpt", Err: errors.New("4.7.1 greylisted, try again")}
	busy421 := &mailer.SendError{Code: 421, Stage: "mail", Err: errors.New("4.7.0 too many connections")}
	dial := &mailer.SendError{Stage: "dial", Err: errors.New("connect: connection refused")}
	auth535 := &mailer.SendError{Code: 535, Stage: "auth", Permanent: true, Err: errors.New("5.7.8 authentication failed")}
	network := fmt.Errorf("write: %w", io.ErrUnexpectedEOF)
	renderBug := errors.New("template: digest.html: missing key")

	tests := []struct {
		name      string
		job       Job
		renderErr error
		sendErr   error
		want      Outcome
		wantErr   string // a fragment of Result.Error
		poolWide  bool
		code      int
	}{
		{name: "sent", job: fresh, want: OutcomeSent},
		{name: "cancelled by renderer", job: fresh, renderErr: fmt.Errorf("subscriber left: %w", ErrCancel), want: OutcomeCancelled, wantErr: "no longer wanted"},
		{name: "renderer error retries", job: fresh, renderErr: renderBug, want: OutcomeRetry, wantErr: "missing key"},
		{name: "bounce", job: fresh, sendErr: rcpt550, want: OutcomeBounced, wantErr: "rcpt: 550 5.1.1", code: 550},
		{name: "bounce wrapped", job: fresh, sendErr: fmt.Errorf("send: %w", rcpt550), want: OutcomeBounced, code: 550},
		{name: "permanent", job: fresh, sendErr: data554, want: OutcomeFailed, wantErr: "554", code: 554},
		{name: "temporary", job: fresh, sendErr: rcpt451, want: OutcomeRetry, wantErr: "greylisted", code: 451},
		{name: "421 is pool-wide", job: fresh, sendErr: busy421, want: OutcomeRetry, poolWide: true, code: 421},
		{name: "dial is pool-wide", job: fresh, sendErr: dial, want: OutcomeRetry, wantErr: "refused", poolWide: true},
		{name: "permanent pool-wide retries", job: fresh, sendErr: auth535, want: OutcomeRetry, wantErr: "535", poolWide: true, code: 535},
		{name: "network error", job: fresh, sendErr: network, want: OutcomeRetry, wantErr: "unexpected EOF"},
		{name: "too old temporary", job: stale, sendErr: rcpt451, want: OutcomeFailed, wantErr: "gave up after 73h0m0s: rcpt: 451", code: 451},
		{name: "too old render error", job: stale, renderErr: renderBug, want: OutcomeFailed, wantErr: "gave up"},
		{name: "too old pool-wide still pauses", job: stale, sendErr: busy421, want: OutcomeFailed, poolWide: true, code: 421},
		{name: "too old permanent", job: stale, sendErr: data554, want: OutcomeFailed, wantErr: "554", code: 554},
		{name: "too old bounce", job: stale, sendErr: rcpt550, want: OutcomeBounced, code: 550},
		{name: "too old cancel", job: stale, renderErr: ErrCancel, want: OutcomeCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.judge(tt.job, now, tt.renderErr, tt.sendErr)
			if got := v.Outcome; got != tt.want {
				t.Fatalf("outcome = %q, want %q (error %q)", got, tt.want, v.Error)
			}
			if v.ID != tt.job.ID || v.SubscriberID != tt.job.SubscriberID || !v.At.Equal(now) {
				t.Errorf("result = %+v, want id %d, subscriber %d, at %v", v.Result, tt.job.ID, tt.job.SubscriberID, now)
			}
			if !strings.Contains(v.Error, tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", v.Error, tt.wantErr)
			}
			if tt.want == OutcomeSent && v.Error != "" {
				t.Errorf("error = %q for a sent message", v.Error)
			}
			if strings.Contains(v.Error, "@") {
				t.Errorf("error %q holds an address", v.Error)
			}
			if v.poolWide != tt.poolWide {
				t.Errorf("pool-wide = %v, want %v", v.poolWide, tt.poolWide)
			}
			if v.code != tt.code {
				t.Errorf("code = %d, want %d", v.code, tt.code)
			}
			// Attempt 3 with base 30s: 2m, and rnd gives the full delay.
			if tt.want == OutcomeRetry {
				if got, want := v.NextAttemptAt, now.Add(2*time.Minute); !got.Equal(want) {
					t.Errorf("next attempt = %v, want %v", got, want)
				}
			} else if !v.NextAttemptAt.IsZero() {
				t.Errorf("next attempt = %v for outcome %q", v.NextAttemptAt, v.Outcome)
			}
		})
	}
}

// TestPoolWide covers the fallback used while mailer.SendError has no
// PoolWide method; once it has one, its answers must agree with these.
func TestPoolWide(t *testing.T) {
	tests := []struct {
		err  *mailer.SendError
		want bool
	}{
		{&mailer.SendError{Code: 421, Stage: "rcpt", Err: io.EOF}, true},
		{&mailer.SendError{Stage: "dial", Err: io.EOF}, true},
		{&mailer.SendError{Code: 450, Stage: "rcpt", Err: io.EOF}, false},
		{&mailer.SendError{Stage: "write", Err: io.EOF}, false},
		{&mailer.SendError{Code: 535, Stage: "auth", Permanent: true, Err: io.EOF}, true},
		{&mailer.SendError{Code: 554, Stage: "hello", Permanent: true, Err: io.EOF}, true},
		{&mailer.SendError{Stage: "starttls", Err: io.EOF}, true},
		{&mailer.SendError{Code: 550, Stage: "rcpt", Permanent: true, Err: io.EOF}, false},
	}
	for _, tt := range tests {
		if got := poolWide(tt.err); got != tt.want {
			t.Errorf("poolWide(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	const base, limit = 30 * time.Second, time.Hour
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{0, 30 * time.Second},
		{1, 30 * time.Second},
		{2, time.Minute},
		{3, 2 * time.Minute},
		{4, 4 * time.Minute},
		{5, 8 * time.Minute},
		{6, 16 * time.Minute},
		{7, 32 * time.Minute},
		{8, time.Hour}, // 64m capped
		{9, time.Hour},
		{64, time.Hour},
		{1 << 30, time.Hour},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempts), func(t *testing.T) {
			d := backoff(base, limit, tt.attempts)
			if d != tt.want {
				t.Fatalf("backoff(%d) = %v, want %v", tt.attempts, d, tt.want)
			}
			if got := jitter(d, func(int64) int64 { return 0 }); got != d/2 {
				t.Errorf("lowest jitter = %v, want %v", got, d/2)
			}
			if got := jitter(d, func(n int64) int64 { return n - 1 }); got != d {
				t.Errorf("highest jitter = %v, want %v", got, d)
			}
			for range 1000 {
				if got := jitter(d, rng.Int64N); got < d/2 || got > d {
					t.Fatalf("jitter(%v) = %v, outside [%v, %v]", d, got, d/2, d)
				}
			}
		})
	}
}

func TestCircuit(t *testing.T) {
	c := circuit{base: 10 * time.Second, max: 30 * time.Second}
	now := t0
	step := func(what string, at, wantUntil time.Duration, wantBegan bool) {
		t.Helper()
		until, began := c.trip(now.Add(at))
		if !until.Equal(now.Add(wantUntil)) || began != wantBegan {
			t.Errorf("%s: trip = %v, %v; want %v, %v", what, until.Sub(now), began, wantUntil, wantBegan)
		}
	}
	if _, paused := c.pausedUntil(now); paused {
		t.Fatal("a new circuit is paused")
	}
	step("first failure", 0, 10*time.Second, true)
	step("failure during the pause", 5*time.Second, 10*time.Second, false)
	if until, paused := c.pausedUntil(now.Add(9 * time.Second)); !paused || !until.Equal(now.Add(10*time.Second)) {
		t.Errorf("pausedUntil(9s) = %v, %v", until, paused)
	}
	if _, paused := c.pausedUntil(now.Add(10 * time.Second)); paused {
		t.Error("still paused when the pause ended")
	}
	step("failure after the pause doubles", 10*time.Second, 30*time.Second, true)
	step("third pause is capped", 30*time.Second, 60*time.Second, true)
	c.succeed()
	if _, paused := c.pausedUntil(now.Add(59 * time.Second)); !paused {
		t.Error("a success cut the running pause short")
	}
	step("after a success the pause is short again", 60*time.Second, 70*time.Second, true)
}

func TestRedact(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"rcpt: 550 5.1.1 <bob@example.com>: Recipient address rejected", "rcpt: 550 5.1.1 <[address]>: Recipient address rejected"},
		{"user Bob.Smith+news@sub.example.co.uk unknown", "user [address] unknown"},
		{"mailbox \"anna@example.org\", quota exceeded; a@b and c@d", "mailbox \"[address]\", quota exceeded; [address] and [address]"},
		{"trailing @", "trailing [address]"},
		{"no address here", "no address here"},
		{"ünïcödé@exämple.de rejected", "[address] rejected"},
		{strings.Repeat("é", 400), strings.Repeat("é", 250)},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
