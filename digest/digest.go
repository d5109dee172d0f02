// Package digest is content out: newsletters and their schedules, which
// articles each reader gets (Build, pure), issues and their editions, and the
// scheduler that makes one issue per schedule slot. It enqueues one outbox
// row per reader through its Store; delivery sends them.
package digest

import (
	"context"
	"time"

	"herald/articles"
)

// Newsletter is one newsletter as configured.
type Newsletter struct {
	ID          string
	Name        string
	Description string
	Schedule    *Schedule // when issues go out
	// Feeds are the feed URLs whose articles go into this newsletter.
	Feeds []string
	// Tags: articles carrying any of these tags go in too. A newsletter
	// with no tags also takes articles that came from no feed (the API,
	// files).
	Tags []string
	// MaxArticles caps one issue (default 10).
	MaxArticles int
	// NewReaderArticles is how many of the latest articles a reader who
	// never received an issue gets (default 3, at most MaxArticles).
	NewReaderArticles int
	// Lookback bounds how old an article may be to go into any issue
	// (default 30 days): a new or returning reader never gets the archive.
	Lookback time.Duration
}

// Reader is one active subscriber of a newsletter, as Build sees them.
type Reader struct {
	SubscriberID int64
	Email        string
	Name         string
	// Since is when the last issue of this newsletter that was delivered
	// to the reader was built; zero when they never received one.
	Since time.Time
}

// IssueStatus is where an issue stands.
type IssueStatus string

// Issue statuses.
const (
	IssueBuilding IssueStatus = "building" // readers are being enqueued; resumed after a crash
	IssueSending  IssueStatus = "sending"  // every message is queued; delivery under way
	IssueSent     IssueStatus = "sent"     // every message settled
	IssueEmpty    IssueStatus = "empty"    // the slot came and nobody had anything new: no email
)

// Issue is one send of a newsletter: one per schedule slot, or one per
// manual send.
type Issue struct {
	ID           int64
	NewsletterID string
	// Slot is the schedule time this issue is for (the request time for a
	// manual send). Unique per newsletter.
	Slot        time.Time
	Manual      bool
	Status      IssueStatus
	Subject     string
	CreatedAt   time.Time
	CompletedAt time.Time // when it became sent or empty
	// ArticleIDs are the articles of the issue's main edition (what the
	// most readers got): the public archive copy shows these.
	ArticleIDs []int64
	Readers    int // messages enqueued
}

// Edition is one article set within an issue: readers whose Build gave the
// same articles share an edition, so it is rendered once.
type Edition struct {
	ID         int64
	IssueID    int64
	ArticleIDs []int64 // in the order the email shows them
	Readers    int
}

// IssueMessage is one reader's message of an issue, to enqueue.
type IssueMessage struct {
	SubscriberID int64
	ArticleIDs   []int64 // the edition: Build's result, in order
	MessageID    string  // fixed at birth: the same on every attempt
}

// Progress counts an issue's messages by outcome.
type Progress struct {
	Total     int
	Queued    int // queued or being sent
	Sent      int
	Failed    int
	Bounced   int
	Cancelled int
}

// Pending is how many messages are not settled yet.
func (p Progress) Pending() int { return p.Queued }

// IssueFilter selects issues for FindIssues.
type IssueFilter struct {
	NewsletterID string        // empty: any
	Statuses     []IssueStatus // empty: any
	BeforeID     int64         // cursor: only ids lower than this (newest first)
	Limit        int
}

// Store is what the digest service needs from a database. Methods return
// *herald.Error with ENOTFOUND for a missing row and ECONFLICT on a
// uniqueness violation.
type Store interface {
	// SeenNewsletter returns when the newsletter id was first seen,
	// recording now if it never was. Slots before it are never sent.
	SeenNewsletter(ctx context.Context, id string, now time.Time) (time.Time, error)
	// LastIssue returns the newsletter's issue with the latest slot, or
	// ENOTFOUND.
	LastIssue(ctx context.Context, newsletterID string) (*Issue, error)
	// CreateIssue inserts iss (status building) and sets its ID; ECONFLICT
	// when the newsletter already has an issue for that slot.
	CreateIssue(ctx context.Context, iss *Issue) error
	// Readers returns up to limit active subscribers of the newsletter with
	// ids above afterID, ordered by id, each with their Since: the
	// CreatedAt of the newsletter's latest issue whose message to them is
	// queued, being sent or sent (an issue on its way counts, so two issues
	// in quick succession never carry the same articles; one that failed,
	// bounced or was cancelled does not). Readers paused at now are left
	// out: they get what is new when the pause ends.
	Readers(ctx context.Context, newsletterID string, afterID int64, limit int, now time.Time) ([]Reader, error)
	// EnqueueIssue writes, in one transaction, the editions the batch
	// needs (reusing the issue's existing ones with the same article list)
	// and one outbox row (kind "digest") per message; a message whose
	// (issue, subscriber) row exists is skipped, so a resumed build is
	// harmless.
	EnqueueIssue(ctx context.Context, issueID int64, batch []IssueMessage, now time.Time) error
	// FinishBuilding sets an issue's status to sending (or empty when it
	// has no message), its Readers count and the main edition's ArticleIDs.
	FinishBuilding(ctx context.Context, issueID int64, now time.Time) (*Issue, error)
	// SettleIssues marks issues in status sending whose messages are all
	// settled as sent.
	SettleIssues(ctx context.Context, now time.Time) error
	// SettleIssue does for one issue what SettleIssues does for all, and
	// returns the issue as it then stands; ENOTFOUND for an unknown issue.
	SettleIssue(ctx context.Context, id int64, now time.Time) (*Issue, error)
	// FindIssue returns one issue, or ENOTFOUND.
	FindIssue(ctx context.Context, id int64) (*Issue, error)
	// FindIssues returns issues matching f, newest first.
	FindIssues(ctx context.Context, f IssueFilter) ([]*Issue, error)
	// IssueProgress counts an issue's messages by status.
	IssueProgress(ctx context.Context, issueID int64) (Progress, error)
	// Edition returns one edition, or ENOTFOUND.
	Edition(ctx context.Context, id int64) (*Edition, error)
	// LastEnqueued returns the highest subscriber id with a message in the
	// issue, or 0 when it has none: where a resumed build starts again.
	LastEnqueued(ctx context.Context, issueID int64) (int64, error)
	// Reader returns the active subscriber of the newsletter with that
	// address (compared without regard to case), with their Since, or
	// ENOTFOUND.
	Reader(ctx context.Context, newsletterID, email string) (Reader, error)
}

// ArticleSource is what the digest service reads articles through.
type ArticleSource interface {
	// FindArticles returns the articles matching f, ordered by id.
	FindArticles(ctx context.Context, f articles.Filter) ([]*articles.Article, error)
	// FindArticleByID returns one article, or ENOTFOUND.
	FindArticleByID(ctx context.Context, id int64) (*articles.Article, error)
}

// Message kind of digest emails on the outbox.
const KindDigest = "digest"

// Priority is the outbox priority of digest messages: lower goes first, and
// transactional mail (a confirmation, 0) must not wait behind an issue.
const Priority = 10
