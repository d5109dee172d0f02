package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald"
	"herald/digest"
)

// The interface this file implements.
var _ digest.Store = (*DB)(nil)

// SeenNewsletter returns when the newsletter id was first seen, recording
// now if it never was. Racing first calls agree on the first value written.
func (db *DB) SeenNewsletter(ctx context.Context, id string, now time.Time) (time.Time, error) {
	const read = `SELECT first_seen_at FROM newsletters WHERE id = $1`
	var first pgtype.Timestamptz
	// Every scheduler pass asks; only the first one writes.
	err := db.pool.QueryRow(ctx, read, id).Scan(&first)
	if errors.Is(err, pgx.ErrNoRows) {
		err = db.pool.QueryRow(ctx, `WITH ins AS (
                INSERT INTO newsletters (id, first_seen_at) VALUES ($1, $2)
                ON CONFLICT (id) DO NOTHING RETURNING first_seen_at)
            SELECT first_seen_at FROM ins UNION ALL SELECT first_seen_at FROM newsletters WHERE id = $1 LIMIT 1`,
			id, now).Scan(&first)
		if errors.Is(err, pgx.ErrNoRows) {
			// Inserted by another instance after this statement began:
			// only a new statement sees it.
			err = db.pool.QueryRow(ctx, read, id).Scan(&first)
		}
	}
	if err != nil {
		return time.Time{}, translate(err, "seen newsletter "+id, "newsletter")
	}
	return decTime(first), nil
}

// issueColumns lists what scanIssue reads; the main edition's article list
// comes along.
const issueColumns = `i.id, i.newsletter_id, i.slot_at, i.manual, i.status, i.subject, i.created_at,
    i.completed_at, i.readers, (SELECT e.article_ids FROM editions e WHERE e.id = i.main_edition_id)`

func scanIssue(row pgx.Row) (*digest.Issue, error) {
	var (
		iss                      digest.Issue
		status                   string
		slot, created, completed pgtype.Timestamptz
	)
	if err := row.Scan(&iss.ID, &iss.NewsletterID, &slot, &iss.Manual, &status, &iss.Subject, &created,
		&completed, &iss.Readers, &iss.ArticleIDs); err != nil {
		return nil, err
	}
	iss.Status = digest.IssueStatus(status)
	iss.Slot, iss.CreatedAt, iss.CompletedAt = decTime(slot), decTime(created), decTime(completed)
	if len(iss.ArticleIDs) == 0 {
		iss.ArticleIDs = nil
	}
	return &iss, nil
}

// LastIssue returns the newsletter's issue with the latest slot, or
// ENOTFOUND.
func (db *DB) LastIssue(ctx context.Context, newsletterID string) (*digest.Issue, error) {
	iss, err := scanIssue(db.pool.QueryRow(ctx, `SELECT `+issueColumns+` FROM issues i
        WHERE i.newsletter_id = $1 ORDER BY i.slot_at DESC LIMIT 1`, newsletterID))
	if err != nil {
		return nil, translate(err, "last issue of "+newsletterID, "issue")
	}
	return iss, nil
}

// CreateIssue inserts iss (status building unless set) and sets its ID.
// ECONFLICT when the newsletter already has an issue for that slot: of
// several instances racing for one slot, exactly one wins.
func (db *DB) CreateIssue(ctx context.Context, iss *digest.Issue) error {
	status := iss.Status
	if status == "" {
		status = digest.IssueBuilding
	}
	op := "create issue of " + iss.NewsletterID
	var id int64
	err := db.pool.QueryRow(ctx, `INSERT INTO issues
            (newsletter_id, slot_at, manual, status, subject, created_at, completed_at, readers)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
        ON CONFLICT (newsletter_id, slot_at) DO NOTHING RETURNING id`,
		iss.NewsletterID, iss.Slot, iss.Manual, string(status), iss.Subject,
		iss.CreatedAt, encTime(iss.CompletedAt)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return conflict(op, "issue")
	} else if err != nil {
		return translate(err, op, "issue")
	}
	iss.ID, iss.Status, iss.Readers, iss.ArticleIDs = id, status, 0, nil
	return nil
}

// sinceSQL is a reader's Since: the creation time of the newsletter's
// latest issue whose message to subscriber s.id is queued, being sent or
// sent. It walks messages_subscriber_issue backwards from the subscriber's
// newest issue and stops at the first of this newsletter: a few rows
// however long the reader's history (issue ids grow with creation time).
const sinceSQL = `(SELECT i.created_at
    FROM messages m JOIN issues i ON i.id = m.issue_id
    WHERE m.subscriber_id = s.id AND m.issue_id IS NOT NULL AND m.kind = 'digest'
      AND m.status IN ('queued', 'sending', 'sent') AND i.newsletter_id = $1
    ORDER BY m.issue_id DESC LIMIT 1)`

// readersSQL pages through a newsletter's active subscribers in id order,
// driven by subscriber_newsletters_newsletter.
const readersSQL = `SELECT s.id, s.email, s.name, ` + sinceSQL + `
    FROM subscriber_newsletters n JOIN subscribers s ON s.id = n.subscriber_id
    WHERE n.newsletter_id = $1 AND n.subscriber_id > $2 AND s.status = 'active'
      AND (s.paused_until IS NULL OR s.paused_until <= $4)
    ORDER BY n.subscriber_id LIMIT $3`

func scanReader(row pgx.Row) (digest.Reader, error) {
	var (
		r     digest.Reader
		since pgtype.Timestamptz
	)
	if err := row.Scan(&r.SubscriberID, &r.Email, &r.Name, &since); err != nil {
		return digest.Reader{}, err
	}
	r.Since = decTime(since)
	return r, nil
}

// Readers returns up to limit active subscribers of the newsletter with ids
// above afterID, ordered by id, each with their Since.
func (db *DB) Readers(ctx context.Context, newsletterID string, afterID int64, limit int, now time.Time) ([]digest.Reader, error) {
	if limit <= 0 {
		return nil, nil
	}
	op := "readers of " + newsletterID
	rows, err := db.pool.Query(ctx, readersSQL, newsletterID, afterID, limit, now)
	if err != nil {
		return nil, translate(err, op, "subscriber")
	}
	defer rows.Close()
	out := make([]digest.Reader, 0, min(limit, 4096))
	for rows.Next() {
		r, err := scanReader(rows)
		if err != nil {
			return nil, translate(err, op, "subscriber")
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, op, "subscriber")
	}
	return out, nil
}

// Reader returns the active subscriber of the newsletter with that address
// (compared without regard to case), with their Since, or ENOTFOUND.
func (db *DB) Reader(ctx context.Context, newsletterID, email string) (digest.Reader, error) {
	r, err := scanReader(db.pool.QueryRow(ctx, `SELECT s.id, s.email, s.name, `+sinceSQL+`
        FROM subscribers s
        WHERE lower(s.email) = lower($2) AND s.status = 'active'
          AND EXISTS (SELECT 1 FROM subscriber_newsletters n WHERE n.subscriber_id = s.id AND n.newsletter_id = $1)`,
		newsletterID, strings.TrimSpace(email)))
	if err != nil {
		return digest.Reader{}, translate(err, "reader of "+newsletterID, "subscriber")
	}
	return r, nil
}

// editionSQL returns the id of the issue's edition with that article list,
// creating it if need be.
const editionSQL = `WITH ins AS (
    INSERT INTO editions (issue_id, article_ids, readers) VALUES ($1, $2, 0)
    ON CONFLICT (issue_id, article_ids) DO NOTHING RETURNING id)
SELECT id FROM ins UNION ALL SELECT id FROM editions WHERE issue_id = $1 AND article_ids = $2 LIMIT 1`

// enqueueDigestSQL writes a batch's outbox rows in one statement and adds
// to each edition's reader count the rows actually written. A reader who
// left or was erased since Readers read them gets no row (and no
// foreign-key failure for the whole batch); a reader whose (issue,
// subscriber) row exists is skipped.
const enqueueDigestSQL = `WITH ins AS (
    INSERT INTO messages
        (kind, subscriber_id, issue_id, edition_id, message_id, priority, status, attempts,
         next_attempt_at, created_at, updated_at)
    SELECT $1, s.id, $2, r.edition_id, r.message_id, $3, 'queued', 0, $4, $4, $4
    FROM unnest($5::bigint[], $6::bigint[], $7::text[]) AS r(subscriber_id, edition_id, message_id)
    JOIN subscribers s ON s.id = r.subscriber_id AND s.status = 'active'
    ON CONFLICT DO NOTHING
    RETURNING edition_id),
added AS (
    SELECT edition_id, count(*) AS n FROM ins GROUP BY edition_id)
UPDATE editions e SET readers = e.readers + added.n FROM added WHERE e.id = added.edition_id`

// EnqueueIssue writes, in one transaction, the editions the batch needs
// (reusing the issue's existing ones with the same article list) and one
// outbox row (kind digest, priority digest.Priority) per message, all in
// one statement. A message whose (issue, subscriber) row exists is skipped,
// and so is one whose subscriber is no longer active. Edition reader counts
// grow by the rows actually written. EINVALID for a message with no article
// or no Message-ID, and then nothing is written.
func (db *DB) EnqueueIssue(ctx context.Context, issueID int64, batch []digest.IssueMessage, now time.Time) error {
	if len(batch) == 0 {
		return nil
	}
	for _, m := range batch {
		if len(m.ArticleIDs) == 0 || m.MessageID == "" {
			return herald.Errorf(herald.EINVALID, "A digest message needs articles and a Message-ID.")
		}
	}
	op := fmt.Sprintf("enqueue issue %d", issueID)
	err := db.inTx(ctx, func(t pgx.Tx) error {
		// Readers mostly share a handful of article lists, and most share
		// the same slice: look an edition up only when the list changes.
		type edition struct {
			ids []int64
			id  int64
		}
		var (
			editions []*edition
			last     *edition
			subs     = make([]int64, len(batch))
			eds      = make([]int64, len(batch))
			mids     = make([]string, len(batch))
		)
		for i, m := range batch {
			if last == nil || !slices.Equal(m.ArticleIDs, last.ids) {
				last = nil
				for _, ed := range editions {
					if slices.Equal(ed.ids, m.ArticleIDs) {
						last = ed
						break
					}
				}
				if last == nil {
					last = &edition{ids: m.ArticleIDs}
					err := t.QueryRow(ctx, editionSQL, issueID, m.ArticleIDs).Scan(&last.id)
					if errors.Is(err, pgx.ErrNoRows) {
						// Created by a concurrent build of the same issue
						// after this statement began.
						err = t.QueryRow(ctx, `SELECT id FROM editions WHERE issue_id = $1 AND article_ids = $2`,
							issueID, m.ArticleIDs).Scan(&last.id)
					}
					if err != nil {
						return err
					}
					editions = append(editions, last)
				}
			}
			subs[i], eds[i], mids[i] = m.SubscriberID, last.id, m.MessageID
		}
		_, err := t.Exec(ctx, enqueueDigestSQL, digest.KindDigest, issueID, digest.Priority, now, subs, eds, mids)
		return err
	})
	return translate(err, op, "message")
}

// FinishBuilding sets an issue's status to sending (or empty when it has no
// message), its reader count and its main edition (the one with the most
// readers; the oldest on a tie). An issue already sending or empty is
// counted again (a build that raced another stays accurate); a sent one is
// left as it is. ENOTFOUND for an unknown issue.
func (db *DB) FinishBuilding(ctx context.Context, issueID int64, now time.Time) (*digest.Issue, error) {
	op := fmt.Sprintf("finish building issue %d", issueID)
	var iss *digest.Issue
	err := db.inTx(ctx, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `WITH c AS (
                SELECT (SELECT count(*) FROM messages WHERE issue_id = $1) AS readers,
                    (SELECT id FROM editions WHERE issue_id = $1 ORDER BY readers DESC, id LIMIT 1) AS main)
            UPDATE issues i
            SET readers = c.readers, main_edition_id = c.main,
                status = CASE WHEN c.readers > 0 THEN 'sending' ELSE 'empty' END,
                completed_at = CASE WHEN c.readers > 0 THEN NULL ELSE coalesce(i.completed_at, $2) END
            FROM c
            WHERE i.id = $1 AND i.status IN ('building', 'sending', 'empty')`, issueID, now); err != nil {
			return err
		}
		var err error
		iss, err = scanIssue(t.QueryRow(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = $1`, issueID))
		return err
	})
	if err != nil {
		return nil, translate(err, op, "issue")
	}
	return iss, nil
}

// SettleIssues marks issues in status sending with no message left to send
// as sent, at now. Instances settling at once mark each issue once, and a
// resend racing a settle never leaves an issue sent with messages queued
// (see settle).
func (db *DB) SettleIssues(ctx context.Context, now time.Time) error {
	// Every scheduler pass asks: a quiet pass costs one read, no
	// transaction.
	var some bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM issues i WHERE `+settledWhere+`)`).Scan(&some); err != nil {
		return translate(err, "settle issues", "issue")
	}
	if !some {
		return nil
	}
	err := db.inTx(ctx, func(t pgx.Tx) error {
		return settle(ctx, t, `true`, nil, now)
	})
	return translate(err, "settle issues", "issue")
}

// settledWhere holds for an issue i in status sending with no message left
// to send: what SettleIssues and SettleIssue mark sent.
const settledWhere = `i.status = 'sending'
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.issue_id = i.id AND m.status IN ('queued', 'sending'))`

// settle marks sent, at now, the issues i matching where (an SQL condition
// whose parameters are args) for which settledWhere holds, in t.
//
// One UPDATE with settledWhere is not enough under READ COMMITTED: its
// NOT EXISTS reads messages as of the statement's start, even after it
// waited for the issue row, so a resend (RequeueFailed) committed in
// between went unseen and the issue was marked sent with messages queued
// again. So settle first locks the candidate rows (in id order, as every
// settler does, so that two never deadlock), then checks settledWhere
// again in a new statement, whose snapshot is taken with the locks held.
// RequeueFailed locks the issue row before it touches a message and holds
// the lock until it commits, so it has either committed before that
// snapshot, which then sees its messages queued, or it waits for this
// transaction to end, and then sees the issue sent and sets it back to
// sending. TestSettleRacesResend forces both orders.
func settle(ctx context.Context, t pgx.Tx, where string, args []any, now time.Time) error {
	rows, err := t.Query(ctx, `SELECT i.id FROM issues i WHERE `+where+` AND `+settledWhere+`
        ORDER BY i.id FOR NO KEY UPDATE`, args...)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return err
	}
	_, err = t.Exec(ctx, `UPDATE issues i SET status = 'sent', completed_at = $1
        WHERE i.id = ANY ($2) AND `+settledWhere, now, ids)
	return err
}

// SettleIssue marks one issue sent at now, as SettleIssues would, when it
// is sending with no message left to send, and returns it as it then
// stands; ENOTFOUND for an unknown issue.
func (db *DB) SettleIssue(ctx context.Context, id int64, now time.Time) (*digest.Issue, error) {
	var iss *digest.Issue
	err := db.inTx(ctx, func(t pgx.Tx) error {
		if err := settle(ctx, t, `i.id = $1`, []any{id}, now); err != nil {
			return err
		}
		var err error
		iss, err = scanIssue(t.QueryRow(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = $1`, id))
		return err
	})
	if err != nil {
		return nil, translate(err, fmt.Sprintf("settle issue %d", id), "issue")
	}
	return iss, nil
}

// FindIssue returns one issue, or ENOTFOUND.
func (db *DB) FindIssue(ctx context.Context, id int64) (*digest.Issue, error) {
	iss, err := scanIssue(db.pool.QueryRow(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = $1`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("find issue %d", id), "issue")
	}
	return iss, nil
}

// FindIssues returns up to f.Limit (default DefaultLimit, at most MaxLimit)
// issues matching f, newest (highest id) first.
func (db *DB) FindIssues(ctx context.Context, f digest.IssueFilter) ([]*digest.Issue, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + issueColumns + ` FROM issues i WHERE true`)
	if f.NewsletterID != "" {
		q.WriteString(` AND i.newsletter_id = ` + a.add(f.NewsletterID))
	}
	if len(f.Statuses) > 0 {
		statuses := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			statuses[i] = string(st)
		}
		q.WriteString(` AND i.status = ANY (` + a.add(statuses) + `::text[])`)
	}
	if f.BeforeID > 0 {
		q.WriteString(` AND i.id < ` + a.add(f.BeforeID))
	}
	q.WriteString(` ORDER BY i.id DESC LIMIT ` + a.add(limit))
	rows, err := db.pool.Query(ctx, q.String(), a...)
	if err != nil {
		return nil, translate(err, "find issues", "issue")
	}
	defer rows.Close()
	var out []*digest.Issue
	for rows.Next() {
		iss, err := scanIssue(rows)
		if err != nil {
			return nil, translate(err, "find issues", "issue")
		}
		out = append(out, iss)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find issues", "issue")
	}
	return out, nil
}

// IssueProgress counts an issue's messages by status (all zero for an
// issue with none, or none at all).
func (db *DB) IssueProgress(ctx context.Context, issueID int64) (digest.Progress, error) {
	op := fmt.Sprintf("progress of issue %d", issueID)
	rows, err := db.pool.Query(ctx, `SELECT status, count(*) FROM messages WHERE issue_id = $1 GROUP BY status`, issueID)
	if err != nil {
		return digest.Progress{}, translate(err, op, "issue")
	}
	var (
		p      digest.Progress
		status string
		n      int
	)
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		p.Total += n
		switch status {
		case "queued", "sending":
			p.Queued += n
		case "sent":
			p.Sent += n
		case "failed":
			p.Failed += n
		case "bounced":
			p.Bounced += n
		case "cancelled":
			p.Cancelled += n
		}
		return nil
	})
	if err != nil {
		return digest.Progress{}, translate(err, op, "issue")
	}
	return p, nil
}

// Edition returns one edition, or ENOTFOUND.
func (db *DB) Edition(ctx context.Context, id int64) (*digest.Edition, error) {
	var ed digest.Edition
	err := db.pool.QueryRow(ctx, `SELECT id, issue_id, article_ids, readers FROM editions WHERE id = $1`, id).
		Scan(&ed.ID, &ed.IssueID, &ed.ArticleIDs, &ed.Readers)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("find edition %d", id), "edition")
	}
	return &ed, nil
}

// LastEnqueued returns the highest subscriber id with a message in the
// issue, or 0 when it has none.
func (db *DB) LastEnqueued(ctx context.Context, issueID int64) (int64, error) {
	var id int64
	err := db.pool.QueryRow(ctx,
		`SELECT coalesce(max(subscriber_id), 0) FROM messages WHERE issue_id = $1`, issueID).Scan(&id)
	if err != nil {
		return 0, translate(err, fmt.Sprintf("last enqueued of issue %d", issueID), "issue")
	}
	return id, nil
}

var _ digest.Analyzer = (*DB)(nil)

// AnalyzeMessages refreshes the planner's statistics of the outbox
// (digest.Analyzer), which an issue's build fills by tens of thousands of
// rows at once.
func (db *DB) AnalyzeMessages(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `ANALYZE messages`); err != nil {
		return translate(err, "analyze messages", "message")
	}
	return nil
}
