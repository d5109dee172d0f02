package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"herald/articles"
	"herald/digest"
	"herald/subscribers"
)

// The admin API's optional store capabilities.
var (
	_ subscribers.AdminStore = (*DB)(nil)
	_ articles.Deleter       = (*DB)(nil)
	_ digest.FailedResender  = (*DB)(nil)
)

// DeleteArticle deletes one article and (by cascade) its tags; ENOTFOUND
// when there is none with that id.
func (db *DB) DeleteArticle(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete article %d", id)
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM articles WHERE id = ?`, id)
		if err != nil {
			return translate(err, op, "article")
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		} else if n == 0 {
			return notFound(op, "article")
		}
		return nil
	})
}

// RequeueFailed sets the issue's failed messages back to queued, due at
// now with their attempts reset, sets a sent issue back to sending, and
// returns how many messages it queued.
func (db *DB) RequeueFailed(ctx context.Context, issueID int64, now time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		at := now.UnixMilli()
		res, err := tx.ExecContext(ctx, `UPDATE messages
            SET status = 'queued', attempts = 0, next_attempt_at = ?1, last_error = '', updated_at = ?1,
                lease_owner = NULL, lease_until = NULL
            WHERE issue_id = ?2 AND status = 'failed'`, at, issueID)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		// SettleIssues marks it sent again once these settle.
		_, err = tx.ExecContext(ctx, `UPDATE issues SET status = 'sending', completed_at = NULL
            WHERE id = ? AND status = 'sent'`, issueID)
		return err
	})
	if err != nil {
		return 0, translate(err, fmt.Sprintf("requeue failed messages of issue %d", issueID), "issue")
	}
	return int(n), nil
}

// CountSubscribers counts subscribers by newsletter and status.
func (db *DB) CountSubscribers(ctx context.Context) ([]subscribers.NewsletterCount, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT n.newsletter_id, s.status, count(*)
        FROM subscriber_newsletters n JOIN subscribers s ON s.id = n.subscriber_id
        GROUP BY n.newsletter_id, s.status ORDER BY n.newsletter_id, s.status`)
	if err != nil {
		return nil, translate(err, "count subscribers", "subscriber")
	}
	defer rows.Close()
	var out []subscribers.NewsletterCount
	for rows.Next() {
		var c subscribers.NewsletterCount
		var status string
		if err := rows.Scan(&c.Newsletter, &status, &c.Count); err != nil {
			return nil, translate(err, "count subscribers", "subscriber")
		}
		c.Status = subscribers.Status(status)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "count subscribers", "subscriber")
	}
	return out, nil
}

// dayMillis is one day in the unit of the time columns.
const dayMillis = 24 * 60 * 60 * 1000

// dailyActivitySQL counts events per UTC day over a range of events_at.
// Imports count the addresses an import created (detail "pending" or
// "active"), not those it activated.
const dailyActivitySQL = `SELECT at / ?3 AS day,
    sum(kind = 'signup'),
    sum(kind = 'import' AND detail IN ('pending', 'active')),
    sum(kind = 'confirm'),
    sum(kind = 'unsubscribe'),
    sum(kind = 'bounce' OR (kind = 'status_change' AND detail LIKE 'bounced%')),
    sum(kind = 'complaint' OR (kind = 'status_change' AND detail LIKE 'complained%'))
FROM events WHERE at >= ?1 AND at < ?2
GROUP BY day ORDER BY day`

// DailyActivity counts activity log events per UTC day from since
// (inclusive) to until (exclusive), oldest first; days without events are
// absent.
func (db *DB) DailyActivity(ctx context.Context, since, until time.Time) ([]subscribers.DayActivity, error) {
	rows, err := db.reader.QueryContext(ctx, dailyActivitySQL, since.UnixMilli(), until.UnixMilli(), dayMillis)
	if err != nil {
		return nil, translate(err, "daily activity", "event")
	}
	defer rows.Close()
	var out []subscribers.DayActivity
	for rows.Next() {
		var (
			d   subscribers.DayActivity
			day int64
		)
		if err := rows.Scan(&day, &d.Signups, &d.Imports, &d.Confirmations, &d.Unsubscribes, &d.Bounces, &d.Complaints); err != nil {
			return nil, translate(err, "daily activity", "event")
		}
		d.Day = time.UnixMilli(day * dayMillis).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "daily activity", "event")
	}
	return out, nil
}
