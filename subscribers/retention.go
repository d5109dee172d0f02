package subscribers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Retention defaults (privacy.pending_retention, privacy.delivery_log_days).
const (
	DefaultPendingRetention  = 30 * 24 * time.Hour
	DefaultDeliveryLogDays   = 180
	DefaultRetentionInterval = time.Hour
)

// retentionBatch is how many rows one retention transaction deletes, so
// that no pass holds the database's one writer for long.
const retentionBatch = 500

// Retention deletes what Herald no longer needs to keep: signups never
// confirmed within PendingRetention (with everything they hold; they are
// not put on the suppression list, since they never confirmed anything),
// messages settled more than DeliveryLogDays ago (counted into the
// delivery statistics first), and stored tokens long expired. After a pass
// that deleted anything it scrubs the store, which also finishes the scrub
// of an erase that could not complete at the time. With MailCopies set,
// the copies of the mail sent to the purged signups (their confirmations)
// are removed after each batch.
type Retention struct {
	Store PrivacyStore
	// PendingRetention is how old an unconfirmed signup may get; 0 means
	// DefaultPendingRetention, a negative value keeps them forever.
	PendingRetention time.Duration
	// DeliveryLogDays is how many days settled messages are kept one by
	// one; 0 means DefaultDeliveryLogDays, a negative value forever.
	DeliveryLogDays int
	// Interval is the time between passes; 0 means
	// DefaultRetentionInterval.
	Interval time.Duration
	// MailCopies, when set, holds copies of sent mail outside the database
	// (the outbox transport's .eml files); the purged signups' copies are
	// removed from it once their rows are gone. A failure there is logged
	// without the addresses and does not fail the pass.
	MailCopies MailCopies
	Now        func() time.Time
	Logger     *slog.Logger
}

// RetentionStats counts what one pass deleted.
type RetentionStats struct {
	PendingPurged int
	// MailCopiesRemoved is how many copies of mail sent to the purged
	// signups were removed from MailCopies.
	MailCopiesRemoved  int
	MessagesAggregated int
	TokensDeleted      int
}

// Run runs a pass at once and then every Interval until ctx ends; it
// returns nil then. A failed pass is logged and tried again at the next
// tick.
func (r Retention) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultRetentionInterval
	}
	log := r.logger()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "retention pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r Retention) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// RunOnce runs one pass and reports what it deleted. Each batch is its own
// transaction: a pass cut short keeps what it did.
func (r Retention) RunOnce(ctx context.Context) (RetentionStats, error) {
	var st RetentionStats
	if r.Store == nil {
		return st, errors.New("retention: no store")
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	at := now().UTC()
	pending := r.PendingRetention
	if pending == 0 {
		pending = DefaultPendingRetention
	}
	days := r.DeliveryLogDays
	if days == 0 {
		days = DefaultDeliveryLogDays
	}
	// drain runs one kind of batch until a batch comes back short.
	drain := func(what string, fn func() (int, error), total *int) error {
		for {
			n, err := fn()
			*total += n
			if err != nil {
				return fmt.Errorf("retention: %s: %w", what, err)
			}
			if n < retentionBatch {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if pending > 0 {
		cutoff := at.Add(-pending)
		if err := drain("purge pending signups", func() (int, error) {
			// Mail copies kept from now on are not the purged signups':
			// one who signs up again once the batch is committed gets a
			// new confirmation, which must stay. (The wall clock, as the
			// copies' times are: r.Now may be a test's.)
			before := time.Now()
			emails, err := r.Store.PurgePending(ctx, cutoff, retentionBatch)
			st.MailCopiesRemoved += r.forgetCopies(ctx, emails, before)
			return len(emails), err
		}, &st.PendingPurged); err != nil {
			return st, err
		}
	}
	if days > 0 {
		cutoff := at.AddDate(0, 0, -days)
		if err := drain("aggregate delivery log", func() (int, error) {
			return r.Store.AggregateMessages(ctx, cutoff, retentionBatch)
		}, &st.MessagesAggregated); err != nil {
			return st, err
		}
	}
	// A token is kept a day past its expiry, so that a reader who opens
	// a link just too late is told it expired rather than that it never
	// existed.
	if err := drain("delete expired tokens", func() (int, error) {
		return r.Store.DeleteExpiredTokens(ctx, at.Add(-24*time.Hour), retentionBatch)
	}, &st.TokensDeleted); err != nil {
		return st, err
	}
	// Scrub on every pass: it is cheap when there is nothing to do, and
	// it finishes the scrub of an erase that could not complete.
	if err := r.Store.Scrub(ctx); err != nil {
		return st, fmt.Errorf("retention: scrub: %w", err)
	}
	if st != (RetentionStats{}) {
		r.logger().InfoContext(ctx, "retention pass", "pending_purged", st.PendingPurged,
			"mail_copies_removed", st.MailCopiesRemoved,
			"messages_aggregated", st.MessagesAggregated, "tokens_deleted", st.TokensDeleted)
	}
	return st, nil
}

// forgetCopies removes the copies of the mail sent to emails, the
// addresses of one batch of purged signups, kept before keptBefore, and
// returns how many it removed. Their rows are gone, so this is the one
// chance: it runs even if ctx has just ended, within its own bound, as for
// an erase.
func (r Retention) forgetCopies(ctx context.Context, emails []string, keptBefore time.Time) int {
	if r.MailCopies == nil || len(emails) == 0 {
		return 0
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forgetCopiesTimeout)
	defer cancel()
	n, err := r.MailCopies.ForgetRecipients(cctx, emails, keptBefore)
	if err != nil {
		r.logger().ErrorContext(ctx, "removing purged signups' mail copies did not finish",
			"purged", len(emails), "removed", n, "error", err)
	}
	return n
}
