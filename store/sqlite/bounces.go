package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"herald/subscribers"
)

var _ subscribers.FeedbackTx = (*tx)(nil)

// SubscriberByMessageID returns the subscriber the outbox message with that
// Message-ID was for, or ENOTFOUND.
func (t *tx) SubscriberByMessageID(messageID string) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRowContext(t.ctx, `SELECT `+subscriberColumns+`
        FROM subscribers s WHERE s.id = (SELECT m.subscriber_id FROM messages m WHERE m.message_id = ?)`, messageID))
	if err != nil {
		return nil, translate(err, "subscriber by message id", "message")
	}
	return s, nil
}

// SubscriberByOutboxID returns the subscriber the outbox message with that
// id was for, or ENOTFOUND.
func (t *tx) SubscriberByOutboxID(id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRowContext(t.ctx, `SELECT `+subscriberColumns+`
        FROM subscribers s WHERE s.id = (SELECT m.subscriber_id FROM messages m WHERE m.id = ?)`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("subscriber by outbox message %d", id), "message")
	}
	return s, nil
}

// AddSoftBounce counts a soft bounce of the subscriber at at and returns
// the count, which starts again at 1 when the previous soft bounce was
// before since. ENOTFOUND for an unknown subscriber.
func (t *tx) AddSoftBounce(subscriberID int64, at, since time.Time) (int, error) {
	var n int
	err := t.tx.QueryRowContext(t.ctx, `UPDATE subscribers SET
            soft_bounces = CASE WHEN last_soft_bounce_at IS NULL OR last_soft_bounce_at < ?1 THEN 1 ELSE soft_bounces + 1 END,
            last_soft_bounce_at = MAX(COALESCE(last_soft_bounce_at, 0), ?2)
        WHERE id = ?3 RETURNING soft_bounces`,
		since.UnixMilli(), at.UnixMilli(), subscriberID).Scan(&n)
	if err != nil {
		return 0, translate(err, fmt.Sprintf("add soft bounce of subscriber %d", subscriberID), "subscriber")
	}
	return n, nil
}

// LogFeedback appends to the bounce log; it returns false, writing nothing,
// when l.ReportID was logged before.
func (t *tx) LogFeedback(l subscribers.FeedbackLog) (bool, error) {
	var sub, report any
	if l.SubscriberID > 0 {
		sub = l.SubscriberID
	}
	if l.ReportID != "" {
		report = l.ReportID
	}
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO bounce_log
        (at, received_at, kind, result, subscriber_id, reason, source, report_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (report_id) DO NOTHING`,
		encTimeNN(l.At), encTimeNN(l.ReceivedAt), string(l.Kind), string(l.Result), sub, l.Reason, l.Source, report)
	if err != nil {
		return false, translate(err, "log feedback", "bounce report")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("log feedback: %w", err)
	}
	return n == 1, nil
}

// FeedbackLogEntry is one row of the bounce log as FindFeedbackLog reads
// it.
type FeedbackLogEntry struct {
	ID int64
	subscribers.FeedbackLog
}

// FindFeedbackLog returns the newest limit rows of the bounce log (at most
// MaxLimit), newest first: for operators and tests.
func (db *DB) FindFeedbackLog(ctx context.Context, limit int) ([]FeedbackLogEntry, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT id, at, received_at, kind, result, subscriber_id, reason, source, report_id
        FROM bounce_log ORDER BY id DESC LIMIT ?`, min(limit, MaxLimit))
	if err != nil {
		return nil, translate(err, "find bounce log", "bounce report")
	}
	defer rows.Close()
	var out []FeedbackLogEntry
	for rows.Next() {
		var (
			e            FeedbackLogEntry
			at, received sql.NullInt64
			sub          sql.NullInt64
			report       sql.NullString
			kind, result string
		)
		if err := rows.Scan(&e.ID, &at, &received, &kind, &result, &sub, &e.Reason, &e.Source, &report); err != nil {
			return nil, translate(err, "find bounce log", "bounce report")
		}
		e.At, e.ReceivedAt = decTime(at), decTime(received)
		e.Kind, e.Result = subscribers.FeedbackKind(kind), subscribers.FeedbackResult(result)
		e.SubscriberID, e.ReportID = sub.Int64, report.String
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find bounce log", "bounce report")
	}
	return out, nil
}

// SoftBounces returns a subscriber's soft bounce count and the time of the
// last one (zero when none), or ENOTFOUND.
func (db *DB) SoftBounces(ctx context.Context, subscriberID int64) (int, time.Time, error) {
	var (
		n    int
		last sql.NullInt64
	)
	err := db.reader.QueryRowContext(ctx, `SELECT soft_bounces, last_soft_bounce_at FROM subscribers WHERE id = ?`, subscriberID).Scan(&n, &last)
	if err != nil {
		return 0, time.Time{}, translate(err, fmt.Sprintf("soft bounces of subscriber %d", subscriberID), "subscriber")
	}
	return n, decTime(last), nil
}
