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
	EditionID        int64 // the issue's article set this reader gets; 0 with no issue
	MessageID        string
	Attempts         int // attempts so far, including this one
	CreatedAt        time.Time
	Email            string
	Name             string
	SubscriberStatus string // "" when the recipient no longer exists
	// PausedUntil is the end of the recipient's pause, zero when none (it
	// may lie in the past).
	PausedUntil time.Time
	// InNewsletter reports, for a message of an issue, whether the
	// recipient still takes the issue's newsletter; false for a message of
	// no issue.
	InNewsletter bool
	// Prepared is what a BatchPreparer recorded for this job when its
	// batch was claimed; nil otherwise. The engine and the stores leave it
	// alone.
	Prepared any
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
	// OutcomeRelease hands back a message that was claimed but never
	// attempted (the engine is shutting down, the relay is paused, or the
	// lease ran too short to start a send). The store queues it again at
	// NextAttemptAt and takes back the attempt ClaimMessages counted, so a
	// release never brings a message closer to giving up; it leaves the last
	// recorded error as it was.
	OutcomeRelease Outcome = "release"
)

// Result settles one claimed message.
type Result struct {
	ID            int64
	SubscriberID  int64
	Outcome       Outcome
	At            time.Time
	NextAttemptAt time.Time // for OutcomeRetry and OutcomeRelease
	Error         string    // the reason, for failures; never an address; empty for OutcomeRelease

	// durable, set by the engine on a sent result, is closed once the
	// settle that records it has been attempted. It never reaches a Store.
	durable chan<- struct{}
}

// Store is what the engine needs from a database.
type Store interface {
	// ClaimMessages leases up to limit messages that are due (queued with
	// next_attempt_at <= now, or sending with an expired lease) to owner until
	// now+lease, increments their attempt count and returns them joined with
	// their recipients (address, name, status, pause, and whether they still
	// take the newsletter of the message's issue), transactional (lower
	// priority) first, ordered by priority then id. When due messages of
	// more than one priority exist and limit >= 4, the most urgent due
	// priority takes at most limit - limit/4 of them and the rest go to the
	// other due messages in (priority, id) order, so that a flood of
	// signups cannot starve the digests; when fewer of those are due, the
	// urgent ones fill the batch.
	ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Job, error)
	// SettleMessages records the results in one transaction. Only rows still
	// leased by owner are changed. OutcomeBounced also sets the subscriber's
	// status to bounced and logs it. OutcomeRelease sets the row back to
	// queued at NextAttemptAt, decrements its attempt count and clears the
	// lease without touching its last error.
	SettleMessages(ctx context.Context, owner string, results []Result) error
}

// Renderer turns a claimed job into an email. It returns an error wrapping
// ErrCancel when the message should no longer be sent.
type Renderer interface {
	Render(ctx context.Context, job Job) (*mailer.Email, error)
}

// BatchPreparer is a Renderer that looks up at once, for a whole claimed
// batch, what it would otherwise look up once per message (the suppression
// list). The engine calls PrepareBatch with each batch it claims, before
// any of its jobs is handed to a worker; PrepareBatch may set the jobs'
// Prepared fields, which Render then receives. An error is logged and the
// batch goes out unprepared (Render must then look for itself).
type BatchPreparer interface {
	PrepareBatch(ctx context.Context, jobs []Job) error
}

// ErrCancel, wrapped by a Renderer, settles a job as cancelled.
var ErrCancel = errors.New("message no longer wanted")

// ErrUnsendable, wrapped by a Renderer, settles a job as failed at once: the
// message can never be rendered (bad data, a template that fails, a panic),
// so retrying it for days would only repeat the failure.
var ErrUnsendable = errors.New("message cannot be rendered")

// Observer receives one call per attempted message, for metrics. Observe is
// called from several goroutines at once and must not block. Releases are
// not attempts and are not observed.
type Observer interface {
	// Observe records that a message of kind settled with outcome after
	// latency spent rendering and sending it.
	Observe(kind string, outcome Outcome, latency time.Duration)
}

// DefaultRelay names, in RelayError calls, a relay that a send error does not
// name (a transport other than a mailer.Router).
const DefaultRelay = "default"

// RelayErrorObserver is an Observer that also counts relay errors. The engine
// calls RelayError, from several goroutines at once, for every attempt whose
// send failed with a *mailer.SendError (except a message that cannot be
// encoded): relay is the name a *mailer.RelayError in the chain gives, or
// DefaultRelay; code is the SMTP reply code, 0 when there was none (a
// network error). It must not block.
type RelayErrorObserver interface {
	RelayError(relay string, code int)
}
