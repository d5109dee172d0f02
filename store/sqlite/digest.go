package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"herald"
	"herald/digest"
)

// The interface this file implements.
var _ digest.Store = (*DB)(nil)

// SeenNewsletter returns when the newsletter id was first seen, recording
// now if it never was.
func (db *DB) SeenNewsletter(ctx context.Context, id string, now time.Time) (time.Time, error) {
	const q = `SELECT first_seen_at FROM newsletters WHERE id = ?`
	var first sql.NullInt64
	// Every scheduler pass asks; only the first one writes.
	err := db.reader.QueryRowContext(ctx, q, id).Scan(&first)
	if errors.Is(err, sql.ErrNoRows) {
		err = db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
			if _, err := t.ExecContext(ctx, `INSERT INTO newsletters (id, first_seen_at) VALUES (?, ?)
                ON CONFLICT (id) DO NOTHING`, id, encTimeNN(now)); err != nil {
				return err
			}
			return t.QueryRowContext(ctx, q, id).Scan(&first)
		})
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

func scanIssue(row scanner) (*digest.Issue, error) {
	var (
		iss                      digest.Issue
		status                   string
		slot, created, completed sql.NullInt64
		articleIDs               sql.NullString
	)
	if err := row.Scan(&iss.ID, &iss.NewsletterID, &slot, &iss.Manual, &status, &iss.Subject, &created,
		&completed, &iss.Readers, &articleIDs); err != nil {
		return nil, err
	}
	iss.Status = digest.IssueStatus(status)
	iss.Slot, iss.CreatedAt, iss.CompletedAt = decTime(slot), decTime(created), decTime(completed)
	ids, err := decodeIDs(articleIDs.String)
	if err != nil {
		return nil, err
	}
	iss.ArticleIDs = ids
	return &iss, nil
}

// encodeIDs writes article ids as the editions table keeps them: decimal,
// comma-separated, in order.
func encodeIDs(ids []int64) string {
	b := make([]byte, 0, len(ids)*8)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(b)
}

func decodeIDs(s string) ([]int64, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	ids := make([]int64, len(parts))
	for i, p := range parts {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("article ids %q: %w", s, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// LastIssue returns the newsletter's issue with the latest slot, or
// ENOTFOUND.
func (db *DB) LastIssue(ctx context.Context, newsletterID string) (*digest.Issue, error) {
	iss, err := scanIssue(db.reader.QueryRowContext(ctx, `SELECT `+issueColumns+` FROM issues i
        WHERE i.newsletter_id = ? ORDER BY i.slot_at DESC LIMIT 1`, newsletterID))
	if err != nil {
		return nil, translate(err, "last issue of "+newsletterID, "issue")
	}
	return iss, nil
}

// CreateIssue inserts iss (status building unless set) and sets its ID.
// ECONFLICT when the newsletter already has an issue for that slot.
func (db *DB) CreateIssue(ctx context.Context, iss *digest.Issue) error {
	status := iss.Status
	if status == "" {
		status = digest.IssueBuilding
	}
	var id int64
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		return t.QueryRowContext(ctx, `INSERT INTO issues
            (newsletter_id, slot_at, manual, status, subject, created_at, completed_at, readers)
            VALUES (?, ?, ?, ?, ?, ?, ?, 0) RETURNING id`,
			iss.NewsletterID, encTimeNN(iss.Slot), iss.Manual, string(status), iss.Subject,
			encTimeNN(iss.CreatedAt), encTime(iss.CompletedAt)).Scan(&id)
	})
	if err != nil {
		return translate(err, "create issue of "+iss.NewsletterID, "issue")
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
    FROM messages m INDEXED BY messages_subscriber_issue CROSS JOIN issues i ON i.id = m.issue_id
    WHERE m.subscriber_id = s.id AND m.issue_id IS NOT NULL AND m.kind = 'digest'
      AND m.status IN ('queued', 'sending', 'sent') AND i.newsletter_id = ?1
    ORDER BY m.issue_id DESC LIMIT 1)`

// readersSQL pages through a newsletter's active subscribers in id order,
// driven by subscriber_newsletters_newsletter (CROSS JOIN keeps that order
// of the loops).
const readersSQL = `SELECT s.id, s.email, s.name, ` + sinceSQL + `
    FROM subscriber_newsletters n CROSS JOIN subscribers s ON s.id = n.subscriber_id
    WHERE n.newsletter_id = ?1 AND n.subscriber_id > ?2 AND s.status = 'active'
      AND (s.paused_until IS NULL OR s.paused_until <= ?4)
    ORDER BY n.subscriber_id LIMIT ?3`

func scanReader(row scanner) (digest.Reader, error) {
	var (
		r     digest.Reader
		since sql.NullInt64
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
	rows, err := db.reader.QueryContext(ctx, readersSQL, newsletterID, afterID, limit, encTimeNN(now))
	if err != nil {
		return nil, translate(err, "readers of "+newsletterID, "subscriber")
	}
	defer rows.Close()
	out := make([]digest.Reader, 0, min(limit, 4096))
	for rows.Next() {
		r, err := scanReader(rows)
		if err != nil {
			return nil, translate(err, "readers of "+newsletterID, "subscriber")
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "readers of "+newsletterID, "subscriber")
	}
	return out, nil
}

// Reader returns the active subscriber of the newsletter with that address
// (compared without regard to case), with their Since, or ENOTFOUND.
func (db *DB) Reader(ctx context.Context, newsletterID, email string) (digest.Reader, error) {
	r, err := scanReader(db.reader.QueryRowContext(ctx, `SELECT s.id, s.email, s.name, `+sinceSQL+`
        FROM subscribers s
        WHERE s.email = ?2 AND s.status = 'active'
          AND EXISTS (SELECT 1 FROM subscriber_newsletters n WHERE n.subscriber_id = s.id AND n.newsletter_id = ?1)`,
		newsletterID, strings.TrimSpace(email)))
	if err != nil {
		return digest.Reader{}, translate(err, "reader of "+newsletterID, "subscriber")
	}
	return r, nil
}

// Statements of EnqueueIssue, prepared once per call: a batch runs them
// thousands of times.
const (
	insertEditionSQL = `INSERT INTO editions (issue_id, article_ids, readers) VALUES (?, ?, 0)
        ON CONFLICT (issue_id, article_ids) DO NOTHING`
	findEditionSQL       = `SELECT id FROM editions WHERE issue_id = ? AND article_ids = ?`
	addEditionReadersSQL = `UPDATE editions SET readers = readers + ? WHERE id = ?`
)

// enqueueChunk is how many messages one INSERT writes: one statement per
// row cost four times SQLite's own work per row in binding and calls.
const enqueueChunk = 250

// insertDigestsSQL returns the INSERT of n messages of one edition, with
// parameters ?1 kind, ?2 issue, ?3 edition, ?4 priority, ?5 now, then a
// (subscriber id, Message-ID) pair per message. A reader who left or was
// erased since Readers read them gets no row (and no foreign-key failure
// for the whole batch); one whose row exists is skipped. Rows are written
// in the order given (the CROSS JOIN keeps the VALUES as the outer loop), so
// that claims, in id order, follow the subscribers' order.
func insertDigestsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO messages
        (kind, subscriber_id, issue_id, edition_id, message_id, priority, status, attempts,
         next_attempt_at, created_at, updated_at)
        SELECT ?1, s.id, ?2, ?3, v.column2, ?4, 'queued', 0, ?5, ?5, ?5
        FROM (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(?%d, ?%d)", 6+2*i, 7+2*i)
	}
	// The WHERE also keeps ON CONFLICT from reading as a join's ON.
	b.WriteString(`) AS v CROSS JOIN subscribers s ON s.id = v.column1
        WHERE s.status = 'active'
        ON CONFLICT DO NOTHING`)
	return b.String()
}

// EnqueueIssue writes, in one transaction, the editions the batch needs
// (reusing the issue's existing ones with the same article list) and one
// outbox row (kind digest, priority digest.Priority) per message. A message
// whose (issue, subscriber) row exists is skipped, and so is one whose
// subscriber is no longer active. Edition reader counts grow by the rows
// actually written. EINVALID for a message with no article or no
// Message-ID, and then nothing is written.
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
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		var stmts [4]*sql.Stmt
		for i, q := range []string{insertEditionSQL, findEditionSQL, insertDigestsSQL(enqueueChunk), addEditionReadersSQL} {
			st, err := t.PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			defer st.Close()
			stmts[i] = st
		}
		insEdition, findEdition, insChunk, addReaders := stmts[0], stmts[1], stmts[2], stmts[3]

		type edition struct {
			id    int64
			added int64
		}
		// Readers mostly share a handful of article lists; most share the
		// same slice, so the key is built once per distinct list.
		editions := make(map[string]*edition)
		at := encTimeNN(now)
		args := make([]any, 5, 5+2*enqueueChunk)
		args[0], args[1], args[3], args[4] = digest.KindDigest, issueID, digest.Priority, at
		// flush writes the run of messages of one edition.
		flush := func(ed *edition, run []digest.IssueMessage) error {
			for len(run) > 0 {
				n := min(len(run), enqueueChunk)
				args = args[:5]
				args[2] = ed.id
				for _, m := range run[:n] {
					args = append(args, m.SubscriberID, m.MessageID)
				}
				st := insChunk
				if n < enqueueChunk {
					var err error
					if st, err = t.PrepareContext(ctx, insertDigestsSQL(n)); err != nil {
						return err
					}
					defer st.Close()
				}
				res, err := st.ExecContext(ctx, args...)
				if err != nil {
					return err
				}
				added, err := res.RowsAffected()
				if err != nil {
					return err
				}
				ed.added += added
				run = run[n:]
			}
			return nil
		}
		var (
			lastIDs  []int64
			last     *edition
			runStart int
		)
		for i, m := range batch {
			if last != nil && sameSlice(m.ArticleIDs, lastIDs) {
				continue
			}
			key := encodeIDs(m.ArticleIDs)
			ed := editions[key]
			if ed == nil {
				if _, err := insEdition.ExecContext(ctx, issueID, key); err != nil {
					return err
				}
				ed = &edition{}
				if err := findEdition.QueryRowContext(ctx, issueID, key).Scan(&ed.id); err != nil {
					return err
				}
				editions[key] = ed
			}
			if ed == last {
				lastIDs = m.ArticleIDs
				continue
			}
			if last != nil {
				if err := flush(last, batch[runStart:i]); err != nil {
					return err
				}
			}
			last, lastIDs, runStart = ed, m.ArticleIDs, i
		}
		if err := flush(last, batch[runStart:]); err != nil {
			return err
		}
		for _, ed := range editions {
			if ed.added == 0 {
				continue
			}
			if _, err := addReaders.ExecContext(ctx, ed.added, ed.id); err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err, op, "message")
}

// sameSlice reports whether a and b are the same slice (same backing array
// and length), the cheap test that most readers of a batch pass.
func sameSlice(a, b []int64) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// FinishBuilding sets an issue's status to sending (or empty when it has no
// message), its reader count and its main edition (the one with the most
// readers; the oldest on a tie). An issue already sending or empty is
// counted again (a build that raced another stays accurate); a sent one is
// left as it is. ENOTFOUND for an unknown issue.
func (db *DB) FinishBuilding(ctx context.Context, issueID int64, now time.Time) (*digest.Issue, error) {
	op := fmt.Sprintf("finish building issue %d", issueID)
	var iss *digest.Issue
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		var readers int64
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE issue_id = ?`, issueID).Scan(&readers); err != nil {
			return err
		}
		var main sql.NullInt64
		err := t.QueryRowContext(ctx, `SELECT id FROM editions WHERE issue_id = ? ORDER BY readers DESC, id LIMIT 1`,
			issueID).Scan(&main)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := t.ExecContext(ctx, `UPDATE issues
            SET readers = ?1, main_edition_id = ?2,
                status = CASE WHEN ?1 > 0 THEN 'sending' ELSE 'empty' END,
                completed_at = CASE WHEN ?1 > 0 THEN NULL ELSE COALESCE(completed_at, ?3) END
            WHERE id = ?4 AND status IN ('building', 'sending', 'empty')`,
			readers, main, encTimeNN(now), issueID); err != nil {
			return err
		}
		iss, err = scanIssue(t.QueryRowContext(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = ?`, issueID))
		return err
	})
	if err != nil {
		return nil, translate(err, op, "issue")
	}
	return iss, nil
}

// settledSQL selects the issues in status sending with no message left to
// send.
const settledSQL = `SELECT i.id FROM issues i WHERE i.status = 'sending'
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.issue_id = i.id AND m.status IN ('queued', 'sending'))`

// SettleIssues marks issues in status sending whose messages are all
// settled as sent, at now.
func (db *DB) SettleIssues(ctx context.Context, now time.Time) error {
	// Every scheduler pass asks; look on a reader first, so that a quiet
	// pass costs no write transaction.
	var one int64
	err := db.reader.QueryRowContext(ctx, settledSQL+` LIMIT 1`).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return translate(err, "settle issues", "issue")
	}
	err = db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `UPDATE issues SET status = 'sent', completed_at = ? WHERE id IN (`+settledSQL+`)`,
			encTimeNN(now))
		return err
	})
	return translate(err, "settle issues", "issue")
}

// SettleIssue marks one issue sent at now, as SettleIssues would, when it
// is sending with no message left to send, and returns it as it then
// stands; ENOTFOUND for an unknown issue.
func (db *DB) SettleIssue(ctx context.Context, id int64, now time.Time) (*digest.Issue, error) {
	var iss *digest.Issue
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `UPDATE issues SET status = 'sent', completed_at = ? WHERE id IN (`+settledSQL+` AND i.id = ?)`,
			encTimeNN(now), id); err != nil {
			return err
		}
		var err error
		iss, err = scanIssue(t.QueryRowContext(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = ?`, id))
		return err
	})
	if err != nil {
		return nil, translate(err, fmt.Sprintf("settle issue %d", id), "issue")
	}
	return iss, nil
}

// FindIssue returns one issue, or ENOTFOUND.
func (db *DB) FindIssue(ctx context.Context, id int64) (*digest.Issue, error) {
	iss, err := scanIssue(db.reader.QueryRowContext(ctx, `SELECT `+issueColumns+` FROM issues i WHERE i.id = ?`, id))
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
	var q strings.Builder
	q.WriteString(`SELECT ` + issueColumns + ` FROM issues i WHERE 1`)
	var args []any
	if f.NewsletterID != "" {
		q.WriteString(` AND i.newsletter_id = ?`)
		args = append(args, f.NewsletterID)
	}
	if len(f.Statuses) > 0 {
		q.WriteString(` AND i.status IN (`)
		for i, st := range f.Statuses {
			if i > 0 {
				q.WriteString(`, `)
			}
			q.WriteString(`?`)
			args = append(args, string(st))
		}
		q.WriteString(`)`)
	}
	if f.BeforeID > 0 {
		q.WriteString(` AND i.id < ?`)
		args = append(args, f.BeforeID)
	}
	q.WriteString(` ORDER BY i.id DESC LIMIT ?`)
	args = append(args, limit)
	rows, err := db.reader.QueryContext(ctx, q.String(), args...)
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
	rows, err := db.reader.QueryContext(ctx, `SELECT status, count(*) FROM messages WHERE issue_id = ? GROUP BY status`, issueID)
	if err != nil {
		return digest.Progress{}, translate(err, op, "issue")
	}
	defer rows.Close()
	var p digest.Progress
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return digest.Progress{}, translate(err, op, "issue")
		}
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
	}
	if err := rows.Err(); err != nil {
		return digest.Progress{}, translate(err, op, "issue")
	}
	return p, nil
}

// Edition returns one edition, or ENOTFOUND.
func (db *DB) Edition(ctx context.Context, id int64) (*digest.Edition, error) {
	op := fmt.Sprintf("find edition %d", id)
	var (
		ed  digest.Edition
		ids string
	)
	err := db.reader.QueryRowContext(ctx, `SELECT id, issue_id, article_ids, readers FROM editions WHERE id = ?`, id).
		Scan(&ed.ID, &ed.IssueID, &ids, &ed.Readers)
	if err != nil {
		return nil, translate(err, op, "edition")
	}
	if ed.ArticleIDs, err = decodeIDs(ids); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &ed, nil
}

// LastEnqueued returns the highest subscriber id with a message in the
// issue, or 0 when it has none.
func (db *DB) LastEnqueued(ctx context.Context, issueID int64) (int64, error) {
	var id int64
	err := db.reader.QueryRowContext(ctx,
		`SELECT coalesce(max(subscriber_id), 0) FROM messages WHERE issue_id = ?`, issueID).Scan(&id)
	if err != nil {
		return 0, translate(err, fmt.Sprintf("last enqueued of issue %d", issueID), "issue")
	}
	return id, nil
}
