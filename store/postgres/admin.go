package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
// when there is none with that id. Editions keep the id in their article
// lists (there is no foreign key into an array): the archive skips it.
func (db *DB) DeleteArticle(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete article %d", id)
	tag, err := db.pool.Exec(ctx, `DELETE FROM articles WHERE id = $1`, id)
	if err != nil {
		return translate(err, op, "article")
	}
	if tag.RowsAffected() == 0 {
		return notFound(op, "article")
	}
	return nil
}

// requeueFailedSQL queues an issue's failed messages again and sets the
// issue back to sending if it was sent, in one statement. The issue is
// only touched when a message was queued, as on SQLite.
const requeueFailedSQL = `WITH m AS (
    UPDATE messages
    SET status = 'queued', attempts = 0, next_attempt_at = $2, last_error = '', updated_at = $2,
        lease_owner = NULL, lease_until = NULL
    WHERE issue_id = $1 AND status = 'failed'
    RETURNING 1),
i AS (
    UPDATE issues SET status = 'sending', completed_at = NULL
    WHERE id = $1 AND status = 'sent' AND EXISTS (SELECT 1 FROM m))
SELECT count(*) FROM m`

// RequeueFailed sets the issue's failed messages back to queued, due at
// now with their attempts reset, sets a sent issue back to sending, and
// returns how many messages it queued (0 for an unknown issue).
//
// Unlike SQLite's single writer, PostgreSQL lets a settle (SettleIssues,
// SettleIssue) run alongside. The issue row is locked first, in its own
// statement, and stays locked until the commit: a settle that locked it
// before has committed by the time requeueFailedSQL takes its snapshot, so
// that statement sees the issue sent and sets it back to sending; a settle
// that comes after waits, and then sees the messages queued (see settle).
func (db *DB) RequeueFailed(ctx context.Context, issueID int64, now time.Time) (int, error) {
	var n int
	err := db.inTx(ctx, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `SELECT id FROM issues WHERE id = $1 FOR NO KEY UPDATE`, issueID); err != nil {
			return err
		}
		return t.QueryRow(ctx, requeueFailedSQL, issueID, now).Scan(&n)
	})
	if err != nil {
		return 0, translate(err, fmt.Sprintf("requeue failed messages of issue %d", issueID), "issue")
	}
	return n, nil
}

// CountSubscribers counts subscribers by newsletter and status, ordered
// by newsletter then status, byte for byte as on SQLite; combinations
// with none are absent.
func (db *DB) CountSubscribers(ctx context.Context) ([]subscribers.NewsletterCount, error) {
	rows, err := db.pool.Query(ctx, `SELECT n.newsletter_id, s.status, count(*)
        FROM subscriber_newsletters n JOIN subscribers s ON s.id = n.subscriber_id
        GROUP BY n.newsletter_id, s.status
        ORDER BY n.newsletter_id, s.status COLLATE "C"`)
	if err != nil {
		return nil, translate(err, "count subscribers", "subscriber")
	}
	var (
		out    []subscribers.NewsletterCount
		c      subscribers.NewsletterCount
		status string
	)
	_, err = pgx.ForEachRow(rows, []any{&c.Newsletter, &status, &c.Count}, func() error {
		c.Status = subscribers.Status(status)
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, translate(err, "count subscribers", "subscriber")
	}
	return out, nil
}

// dailyActivitySQL counts events per UTC day over a range of events.at
// (the events_at index serves it). Imports count the addresses an import
// created (detail "pending" or "active"), not those it activated. ILIKE
// matches as SQLite's LIKE does, ignoring ASCII case.
const dailyActivitySQL = `SELECT date_trunc('day', at, 'UTC') AS day,
    count(*) FILTER (WHERE kind = 'signup'),
    count(*) FILTER (WHERE kind = 'import' AND detail IN ('pending', 'active')),
    count(*) FILTER (WHERE kind = 'confirm'),
    count(*) FILTER (WHERE kind = 'unsubscribe'),
    count(*) FILTER (WHERE kind = 'bounce' OR (kind = 'status_change' AND detail ILIKE 'bounced%')),
    count(*) FILTER (WHERE kind = 'complaint' OR (kind = 'status_change' AND detail ILIKE 'complained%'))
FROM events WHERE at >= $1 AND at < $2
GROUP BY day ORDER BY day`

// DailyActivity counts activity log events per UTC day from since
// (inclusive) to until (exclusive), oldest first; days without events are
// absent.
func (db *DB) DailyActivity(ctx context.Context, since, until time.Time) ([]subscribers.DayActivity, error) {
	rows, err := db.pool.Query(ctx, dailyActivitySQL, since, until)
	if err != nil {
		return nil, translate(err, "daily activity", "event")
	}
	var (
		out []subscribers.DayActivity
		d   subscribers.DayActivity
		day pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&day, &d.Signups, &d.Imports, &d.Confirmations, &d.Unsubscribes, &d.Bounces, &d.Complaints},
		func() error {
			d.Day = decTime(day)
			out = append(out, d)
			return nil
		})
	if err != nil {
		return nil, translate(err, "daily activity", "event")
	}
	return out, nil
}
