// Package delivery is the outbox engine: it claims queued messages under a
// lease, renders and sends them through a mailer.Transport, and settles each
// as sent, retried later, failed, bounced or cancelled.
package delivery

import (
	"context"
	"errors"
	"time"

	"herald/mailer"
)

// Job is one claimed outbox row, joined with its recipient.
type Job struct {
	ID               int64
	Kind             string // e.g. "confirmation", "welcome", "digest"
	SubscriberID     int64
	IssueID          int64 // 0 when the message belongs to no digest issue
	MessageID        string
	Attempts         int // attempts so far, including this one
	CreatedAt        time.Time
	Email            string
	Name             string
	SubscriberStatus string
}

// Outcome is how a message settles.
type Outcome string

// Outcomes of an attempt.
const (
	OutcomeSent      Outcome = "sent"      // the relay said 250
	OutcomeRetry     Outcome = "retry"     // temporary failure: queued again at NextAttemptAt
	OutcomeFailed    Outcome = "failed"    // permanent failure or too old: given up
	OutcomeBounced   Outcome = "bounced"   // the relay refused the recipient: the address is suppressed
	OutcomeCancelled Outcome = "cancelled" // no longer wanted (e.g. the reader left before it was sent)
)

// Result settles one claimed message.
type Result struct {
	ID            int64
	SubscriberID  int64
	Outcome       Outcome
	At            time.Time
	NextAttemptAt time.Time // for OutcomeRetry
	Error         string    // the reason, for anything but OutcomeSent; never an address
}

// Store is what the engine needs from a database.
type Store interface {
	// ClaimMessages leases up to limit messages that are due (queued with
	// next_attempt_at <= now, or sending with an expired lease) to owner until
	// now+lease, increments their attempt count and returns them joined with
	// their recipients, transactional (lower priority) first.
	ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Job, error)
	// SettleMessages records the results in one transaction. Only rows still
	// leased by owner are changed. OutcomeBounced also sets the subscriber's
	// status to bounced and logs it.
	SettleMessages(ctx context.Context, owner string, results []Result) error
}

// Renderer turns a claimed job into an email. It returns an error wrapping
// ErrCancel when the message should no longer be sent.
type Renderer interface {
	Render(ctx context.Context, job Job) (*mailer.Email, error)
}

// ErrCancel, wrapped by a Renderer, settles a job as cancelled.
var ErrCancel = errors.New("message no longer wanted")
