package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald/subscribers"
)

var _ subscribers.FeedbackTx = (*tx)(nil)

// SubscriberByMessageID returns the subscriber the outbox message with that
// Message-ID was for, or ENOTFOUND.
func (t *tx) SubscriberByMessageID(messageID string) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRow(t.ctx, `SELECT `+subscriberColumns+`
        FROM subscribers s WHERE s.id = (SELECT m.subscriber_id FROM messages m WHERE m.message_id = $1)`, messageID))
	if err != nil {
		return nil, translate(err, "subscriber by message id", "message")
	}
	return s, nil
}

// SubscriberByOutboxID returns the subscriber the outbox message with that
// id was for, or ENOTFOUND.
func (t *tx) SubscriberByOutboxID(id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRow(t.ctx, `SELECT `+subscriberColumns+`
        FROM subscribers s WHERE s.id = (SELECT m.subscriber_id FROM messages m WHERE m.id = $1)`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("subscriber by outbox message %d", id), "message")
	}
	return s, nil
}

// AddSoftBounce counts a soft bounce of the subscriber at at and returns
// the count, which starts again at 1 when the previous soft bounce was
// before since. ENOTFOUND for an unknown subscriber. The row lock the
// UPDATE takes makes reports about one reader count one after the other.
func (t *tx) AddSoftBounce(subscriberID int64, at, since time.Time) (int, error) {
	var n int
	// GREATEST ignores NULL: the first soft bounce sets the time.
	err := t.tx.QueryRow(t.ctx, `UPDATE subscribers SET
            soft_bounces = CASE WHEN last_soft_bounce_at IS NULL OR last_soft_bounce_at < $1 THEN 1 ELSE soft_bounces + 1 END,
            last_soft_bounce_at = GREATEST(last_soft_bounce_at, $2)
        WHERE id = $3 RETURNING soft_bounces`,
		since, at, subscriberID).Scan(&n)
	if err != nil {
		return 0, translate(err, fmt.Sprintf("add soft bounce of subscriber %d", subscriberID), "subscriber")
	}
	return n, nil
}

// LogFeedback appends to the bounce log; it returns false, writing nothing,
// when l.ReportID was logged before. The insert skips a logged report
// rather than failing, so the transaction stays usable.
func (t *tx) LogFeedback(l subscribers.FeedbackLog) (bool, error) {
	var sub, report any
	if l.SubscriberID > 0 {
		sub = l.SubscriberID
	}
	if l.ReportID != "" {
		report = l.ReportID
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO bounce_log
        (at, received_at, kind, result, subscriber_id, reason, source, report_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (report_id) DO NOTHING`,
		l.At, l.ReceivedAt, string(l.Kind), string(l.Result), sub, l.Reason, l.Source, report)
	if err != nil {
		return false, translate(err, "log feedback", "bounce report")
	}
	return tag.RowsAffected() == 1, nil
}

// FeedbackLogEntry is one row of the bounce log as FindFeedbackLog reads
// it.
type FeedbackLogEntry struct {
	ID int64
	subscribers.FeedbackLog
}

// FindFeedbackLog returns the newest limit rows of the bounce log (default
// DefaultLimit, at most MaxLimit), newest first: for operators and tests.
func (db *DB) FindFeedbackLog(ctx context.Context, limit int) ([]FeedbackLogEntry, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	rows, err := db.pool.Query(ctx, `SELECT id, at, received_at, kind, result, subscriber_id, reason, source, report_id
        FROM bounce_log ORDER BY id DESC LIMIT $1`, min(limit, MaxLimit))
	if err != nil {
		return nil, translate(err, "find bounce log", "bounce report")
	}
	var (
		out          []FeedbackLogEntry
		e            FeedbackLogEntry
		at, received pgtype.Timestamptz
		sub          pgtype.Int8
		report       pgtype.Text
		kind, result string
	)
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &at, &received, &kind, &result, &sub, &e.Reason, &e.Source, &report}, func() error {
		e.At, e.ReceivedAt = decTime(at), decTime(received)
		e.Kind, e.Result = subscribers.FeedbackKind(kind), subscribers.FeedbackResult(result)
		e.SubscriberID, e.ReportID = sub.Int64, report.String
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, translate(err, "find bounce log", "bounce report")
	}
	return out, nil
}

// SoftBounces returns a subscriber's soft bounce count and the time of the
// last one (zero when none), or ENOTFOUND.
func (db *DB) SoftBounces(ctx context.Context, subscriberID int64) (int, time.Time, error) {
	var (
		n    int
		last pgtype.Timestamptz
	)
	err := db.pool.QueryRow(ctx, `SELECT soft_bounces, last_soft_bounce_at FROM subscribers WHERE id = $1`, subscriberID).Scan(&n, &last)
	if err != nil {
		return 0, time.Time{}, translate(err, fmt.Sprintf("soft bounces of subscriber %d", subscriberID), "subscriber")
	}
	return n, decTime(last), nil
}
