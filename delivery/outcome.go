package delivery

import (
	"errors"
	"strings"
	"time"

	"herald/mailer"
)

// maxReason bounds the error text stored with a result.
const maxReason = 500

// verdict is how one attempt settles, with what the engine needs besides the
// Result: the SMTP code for the log and whether the whole relay is in trouble.
type verdict struct {
	Result
	code     int
	poolWide bool
}

// judge decides how an attempt of j settles at now. renderErr is the
// Renderer's error; sendErr the Transport's (only looked at when rendering
// worked).
func (e *Engine) judge(j Job, now time.Time, renderErr, sendErr error) verdict {
	v := verdict{Result: Result{ID: j.ID, SubscriberID: j.SubscriberID, At: now}}
	err := sendErr
	if renderErr != nil {
		err = renderErr
		if errors.Is(renderErr, ErrCancel) {
			v.Outcome = OutcomeCancelled
			v.Error = redact(renderErr.Error())
			return v
		}
		if errors.Is(renderErr, ErrUnsendable) || errors.Is(renderErr, mailer.ErrInvalidEmail) {
			v.Outcome = OutcomeFailed
			v.Error = redact(renderErr.Error())
			return v
		}
	}
	if err == nil {
		v.Outcome = OutcomeSent
		return v
	}
	v.Error = redact(err.Error())

	var se *mailer.SendError
	if renderErr == nil && errors.As(sendErr, &se) {
		v.code = se.Code
		v.poolWide = poolWide(se)
		switch {
		case se.Bounce():
			v.Outcome = OutcomeBounced
			return v
		case se.Permanent && !v.poolWide:
			// A permanent pool-wide error (535 at AUTH) is the relay's
			// configuration, not this message: it is retried below.
			v.Outcome = OutcomeFailed
			return v
		}
	}

	// Temporary: try again later, unless the message has been failing for
	// longer than anyone still wants it.
	if age := now.Sub(j.CreatedAt); age > e.cfg.MaxAge {
		v.Outcome = OutcomeFailed
		v.Error = truncate("gave up after " + age.Round(time.Minute).String() + ": " + v.Error)
		return v
	}
	v.Outcome = OutcomeRetry
	v.NextAttemptAt = now.Add(jitter(backoff(e.cfg.RetryBase, e.cfg.RetryMax, j.Attempts), e.rnd))
	return v
}

// poolWide reports whether se says the relay as a whole is unavailable (421,
// or no working connection: dial, greeting, STARTTLS, AUTH) rather than this
// one message having a problem.
func poolWide(se *mailer.SendError) bool {
	// SendError.PoolWide is the mailer's own answer; the fallback below
	// mirrors it for a mailer that predates it.
	if pw, ok := any(se).(interface{ PoolWide() bool }); ok {
		return pw.PoolWide()
	}
	switch se.Stage {
	case "dial", "hello", "starttls", "auth":
		return true
	}
	return se.Code == 421
}

// backoff is the un-jittered delay before attempt n+1 after n attempts:
// base, doubling per attempt, capped at max.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// jitter spreads d uniformly over [d/2, d] so that messages which failed
// together do not all come back together. rnd(n) returns a value in [0, n).
func jitter(d time.Duration, rnd func(int64) int64) time.Duration {
	half := d / 2
	return d - half + time.Duration(rnd(int64(half)+1))
}

// circuit is the engine-wide pause after pool-wide failures. It is guarded
// by Engine.mu.
type circuit struct {
	base, max time.Duration
	level     int // consecutive pauses without a success in between
	until     time.Time
}

// trip records a pool-wide failure at now and returns the end of the pause
// and whether this failure began it. Failures of sends that were already
// under way when the pause began do not lengthen it.
func (c *circuit) trip(now time.Time) (time.Time, bool) {
	if now.Before(c.until) {
		return c.until, false
	}
	c.level++
	c.until = now.Add(backoff(c.base, c.max, c.level))
	return c.until, true
}

// succeed records a successful send: the next pause starts short again. A
// pause in progress runs its course.
func (c *circuit) succeed() { c.level = 0 }

// pausedUntil returns the end of the pause in force at now, if any.
func (c *circuit) pausedUntil(now time.Time) (time.Time, bool) {
	return c.until, now.Before(c.until)
}

// redact removes anything shaped like an email address from s, so that a
// relay's reply ("550 <bob@example.com>: no such user") can be stored and
// logged, and bounds its length.
func redact(s string) string {
	if strings.IndexByte(s, '@') >= 0 {
		var b strings.Builder
		for {
			at := strings.IndexByte(s, '@')
			if at < 0 {
				b.WriteString(s)
				break
			}
			start, end := at, at+1
			for start > 0 && addressByte(s[start-1]) {
				start--
			}
			for end < len(s) && addressByte(s[end]) {
				end++
			}
			b.WriteString(s[:start])
			b.WriteString("[address]")
			s = s[end:]
		}
		s = b.String()
	}
	return truncate(s)
}

// addressByte reports whether c can be part of an address as relays quote
// them: anything but space, controls and the punctuation around addresses.
func addressByte(c byte) bool {
	if c <= ' ' || c == 0x7f {
		return false
	}
	return !strings.ContainsRune(`<>()[]",;:`, rune(c))
}

// truncate cuts s to maxReason bytes without splitting a UTF-8 sequence.
func truncate(s string) string {
	if len(s) <= maxReason {
		return s
	}
	i := maxReason
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}
