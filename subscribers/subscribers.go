// Package subscribers is the readers' side of Herald: who signed up, what they
// consented to, which newsletters they chose, and the tokens that let them
// confirm, manage and leave.
package subscribers

import (
	"context"
	"time"
)

// Status is where a subscriber stands. Only active subscribers receive
// newsletters; pending ones receive only their confirmation.
type Status string

// The statuses a subscriber moves through.
const (
	StatusPending      Status = "pending"
	StatusActive       Status = "active"
	StatusUnsubscribed Status = "unsubscribed"
	StatusBounced      Status = "bounced"
	StatusComplained   Status = "complained"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusActive, StatusUnsubscribed, StatusBounced, StatusComplained:
		return true
	}
	return false
}

// Subscriber is one reader's address and choices.
type Subscriber struct {
	ID          int64
	Email       string // normalised by NormalizeAddress
	Name        string
	Status      Status
	Newsletters []string // newsletter ids, sorted
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ConfirmedAt time.Time // zero until confirmed
	// ConfirmSentAt is when the last confirmation email was queued; it
	// throttles confirmations to one per ConfirmInterval.
	ConfirmSentAt time.Time
	// PausedUntil is when a reader's pause, chosen on the preference page,
	// ends; until then they receive no digest. Zero, or a time past: not
	// paused.
	PausedUntil time.Time
}

// Consent is the proof of one signup: what the reader saw and chose, when and
// from where, and when they confirmed.
type Consent struct {
	ID           int64
	SubscriberID int64
	CreatedAt    time.Time
	IP           string
	UserAgent    string
	Source       string // the page or channel the signup came from ("import" for CSV)
	TextVersion  string // the version of the consent wording shown
	Newsletters  []string
	ConfirmedAt  time.Time // zero until confirmed
	ConfirmIP    string
}

// Event is one line of a subscriber's activity log.
type Event struct {
	ID           int64
	SubscriberID int64
	At           time.Time
	Kind         string // EventSignup, EventConfirm, ...
	Detail       string // short, never an address or token
}

// Activity log event kinds.
const (
	EventSignup       = "signup"
	EventConfirm      = "confirm"
	EventUnsubscribe  = "unsubscribe"
	EventImport       = "import"
	EventResubscribe  = "resubscribe"
	EventStatusChange = "status_change"
)

// Purpose says what a stored token may be used for; a token is good for one
// purpose only.
type Purpose string

// Token purposes.
const (
	PurposeConfirm Purpose = "confirm"
	// PurposeDataExport tokens open a reader's data export page (GET
	// /data/{token}) and download it once.
	PurposeDataExport Purpose = "data_export"
)

// Token is a stored single-use token. Only the SHA-256 hash of the token
// ever reaches the store.
type Token struct {
	Hash         []byte
	SubscriberID int64
	Purpose      Purpose
	CreatedAt    time.Time
	ExpiresAt    time.Time
	UsedAt       time.Time // zero until used
}

// Message kinds queued on the outbox by this package.
const (
	KindConfirmation = "confirmation"
	KindWelcome      = "welcome"
	// KindDataExport carries the link to a reader's data export, which they
	// asked for on their preference page.
	KindDataExport = "data_export"
)

// OutboxMessage is one email to queue, written in the same transaction as the
// change that causes it. The delivery engine renders it when it is claimed.
type OutboxMessage struct {
	Kind         string
	SubscriberID int64
	MessageID    string // RFC 5322 msg-id without angle brackets, fixed at birth
	Priority     int    // lower goes first; transactional mail is 0
	CreatedAt    time.Time
}

// Filter selects subscribers for FindSubscribers.
type Filter struct {
	Query      string // prefix of the address or the name, case-insensitive
	Status     Status // empty: any
	Newsletter string // empty: any
	AfterID    int64  // cursor: only ids greater than this
	Limit      int
}

// Store is what the subscribers service needs from a database. Every method
// is one transaction. Methods return *herald.Error with ENOTFOUND when a
// looked-up row does not exist and ECONFLICT on a uniqueness violation.
type Store interface {
	// Update runs fn in one read-write transaction, committed when fn returns
	// nil and rolled back otherwise.
	Update(ctx context.Context, fn func(tx Tx) error) error

	// FindSubscriberByID returns one subscriber, or ENOTFOUND.
	FindSubscriberByID(ctx context.Context, id int64) (*Subscriber, error)
	// FindToken returns the stored token with that hash, or ENOTFOUND,
	// without a write transaction (checking a link changes nothing).
	FindToken(ctx context.Context, hash []byte) (*Token, error)
	// FindSubscribers returns subscribers matching f, ordered by id.
	FindSubscribers(ctx context.Context, f Filter) ([]*Subscriber, error)
	// EachSubscriber streams every subscriber, ordered by id, calling fn for
	// each; it stops at the first error fn returns and returns it.
	EachSubscriber(ctx context.Context, fn func(*Subscriber) error) error
	// Secret returns the named secret, creating it with gen on first use.
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
}

// Tx is the set of operations available inside Store.Update.
type Tx interface {
	// SubscriberByEmail returns the subscriber with that normalised address,
	// or ENOTFOUND.
	SubscriberByEmail(email string) (*Subscriber, error)
	// SubscriberByID returns the subscriber with that id, or ENOTFOUND.
	SubscriberByID(id int64) (*Subscriber, error)
	// CreateSubscriber inserts s with its newsletters and sets s.ID.
	// ECONFLICT when the address exists; the transaction stays usable
	// (Signup inserts first and reads the existing row on ECONFLICT).
	CreateSubscriber(s *Subscriber) error
	// UpdateSubscriber writes s's name, status, newsletters, ConfirmedAt,
	// ConfirmSentAt, PausedUntil and UpdatedAt. ENOTFOUND when s.ID does
	// not exist.
	UpdateSubscriber(s *Subscriber) error
	// AddConsent inserts c and sets c.ID.
	AddConsent(c *Consent) error
	// LatestConsent returns the newest consent of a subscriber, or ENOTFOUND.
	LatestConsent(subscriberID int64) (*Consent, error)
	// ConfirmConsent records the confirmation time and IP on a consent.
	ConfirmConsent(consentID int64, at time.Time, ip string) error
	// AddEvent appends to the subscriber's activity log.
	AddEvent(e Event) error
	// CreateToken stores a token (by its hash).
	CreateToken(t Token) error
	// TokenByHash returns the token with that hash, or ENOTFOUND.
	TokenByHash(hash []byte) (*Token, error)
	// UseToken marks the token used at the given time.
	UseToken(hash []byte, at time.Time) error
	// Enqueue writes an outbox row. ECONFLICT when its MessageID exists.
	Enqueue(m OutboxMessage) error
}
