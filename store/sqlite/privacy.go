package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"herald"
	"herald/subscribers"
)

// The privacy side of the store: the suppression list, one subscriber's
// records for their export, erase, consent export and retention.
var (
	_ subscribers.PrivacyStore = (*DB)(nil)
	_ subscribers.PrivacyTx    = (*tx)(nil)
)

// settledStatuses is the SQL list of the statuses a message ends in.
const settledStatuses = `('sent', 'failed', 'bounced', 'cancelled')`

// Statements that count settled messages into delivery_stats before they
// are deleted. The day is the UTC date of the message's last change (when
// it settled). The WHERE clause keeps SQLite from reading ON CONFLICT as a
// join constraint.
const (
	aggregateSubscriberSQL = `INSERT INTO delivery_stats (day, kind, status, count)
        SELECT strftime('%Y-%m-%d', updated_at / 1000, 'unixepoch'), kind, status, count(*)
        FROM messages WHERE subscriber_id = ?1 AND status IN ` + settledStatuses + `
        GROUP BY 1, 2, 3
        ON CONFLICT (day, kind, status) DO UPDATE SET count = count + excluded.count`
	aggregateIDsSQL = `INSERT INTO delivery_stats (day, kind, status, count)
        SELECT strftime('%Y-%m-%d', updated_at / 1000, 'unixepoch'), kind, status, count(*)
        FROM messages WHERE id IN (SELECT value FROM json_each(?1))
          AND status IN ` + settledStatuses + ` AND updated_at < ?2
        GROUP BY 1, 2, 3
        ON CONFLICT (day, kind, status) DO UPDATE SET count = count + excluded.count`
	deleteIDsSQL = `DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))
          AND status IN ` + settledStatuses + ` AND updated_at < ?2`
)

// eraseRows deletes a subscriber and every row that names them. Settled
// messages are counted into delivery_stats first, so that the totals of
// past days do not change when a reader goes. The foreign keys would
// cascade most of this; it is spelled out so that no table is forgotten
// when one is added (storetest.RunPrivacy checks every table with a
// subscriber_id column).
func eraseRows(ctx context.Context, t *sql.Tx, id int64) error {
	if _, err := t.ExecContext(ctx, aggregateSubscriberSQL, id); err != nil {
		return fmt.Errorf("count messages of subscriber %d: %w", id, err)
	}
	for _, q := range []string{
		`DELETE FROM messages WHERE subscriber_id = ?`,
		`DELETE FROM tokens WHERE subscriber_id = ?`,
		`DELETE FROM events WHERE subscriber_id = ?`,
		`DELETE FROM consents WHERE subscriber_id = ?`,
		`DELETE FROM subscriber_newsletters WHERE subscriber_id = ?`,
		`DELETE FROM subscribers WHERE id = ?`,
	} {
		if _, err := t.ExecContext(ctx, q, id); err != nil {
			return fmt.Errorf("erase subscriber %d: %w", id, err)
		}
	}
	return nil
}

// FindSubscriberRecords returns every row the database holds about one
// subscriber, read in one snapshot; ENOTFOUND for an unknown id.
func (db *DB) FindSubscriberRecords(ctx context.Context, id int64) (*subscribers.Records, error) {
	op := fmt.Sprintf("records of subscriber %d", id)
	// One read transaction: the rows of every table come from one snapshot.
	t, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return nil, translate(err, op, "subscriber")
	}
	defer t.Rollback()
	rec := &subscribers.Records{}
	if rec.Subscriber, err = scanSubscriber(t.QueryRowContext(ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = ?`, id)); err != nil {
		return nil, translate(err, op, "subscriber")
	}
	if err := eachRow(ctx, t, `SELECT id, subscriber_id, created_at, ip, user_agent, source, text_version,
            newsletters, confirmed_at, confirm_ip
        FROM consents WHERE subscriber_id = ? ORDER BY id`, []any{id}, func(rows *sql.Rows) error {
		c, err := scanConsent(rows)
		if err == nil {
			rec.Consents = append(rec.Consents, *c)
		}
		return err
	}); err != nil {
		return nil, translate(err, op, "consent")
	}
	if err := eachRow(ctx, t, `SELECT id, subscriber_id, at, kind, detail FROM events
        WHERE subscriber_id = ? ORDER BY id`, []any{id}, func(rows *sql.Rows) error {
		var (
			e  subscribers.Event
			at sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail); err != nil {
			return err
		}
		e.At = decTime(at)
		rec.Events = append(rec.Events, e)
		return nil
	}); err != nil {
		return nil, translate(err, op, "event")
	}
	if err := eachRow(ctx, t, `SELECT subscriber_id, purpose, created_at, expires_at, used_at FROM tokens
        WHERE subscriber_id = ? ORDER BY created_at, hash`, []any{id}, func(rows *sql.Rows) error {
		var (
			tok                    subscribers.Token
			purpose                string
			created, expires, used sql.NullInt64
		)
		if err := rows.Scan(&tok.SubscriberID, &purpose, &created, &expires, &used); err != nil {
			return err
		}
		tok.Purpose = subscribers.Purpose(purpose)
		tok.CreatedAt, tok.ExpiresAt, tok.UsedAt = decTime(created), decTime(expires), decTime(used)
		rec.Tokens = append(rec.Tokens, tok)
		return nil
	}); err != nil {
		return nil, translate(err, op, "token")
	}
	if err := eachRow(ctx, t, `SELECT id, kind, issue_id, message_id, status, attempts, last_error,
            created_at, updated_at, sent_at
        FROM messages WHERE subscriber_id = ? ORDER BY id`, []any{id}, func(rows *sql.Rows) error {
		var (
			m                      subscribers.Delivery
			issue                  sql.NullInt64
			created, updated, sent sql.NullInt64
		)
		if err := rows.Scan(&m.ID, &m.Kind, &issue, &m.MessageID, &m.Status, &m.Attempts, &m.LastError,
			&created, &updated, &sent); err != nil {
			return err
		}
		m.IssueID = issue.Int64
		m.CreatedAt, m.UpdatedAt, m.SentAt = decTime(created), decTime(updated), decTime(sent)
		rec.Messages = append(rec.Messages, m)
		return nil
	}); err != nil {
		return nil, translate(err, op, "message")
	}
	if rec.Other, err = otherRecords(ctx, t, id); err != nil {
		return nil, translate(err, op, "record")
	}
	return rec, nil
}

// knownTables are the tables FindSubscriberRecords reads field by field.
func knownTables() []string {
	return []string{"subscribers", "subscriber_newsletters", "consents", "events", "tokens", "messages"}
}

// otherRecords reads the subscriber's rows of every other table with a
// subscriber_id column, column by column, as stored.
func otherRecords(ctx context.Context, t *sql.Tx, id int64) (map[string][]map[string]any, error) {
	rows, err := t.QueryContext(ctx, `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
        WHERE m.type = 'table' AND c.name = 'subscriber_id' ORDER BY m.name`)
	if err != nil {
		return nil, err
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		if !slices.Contains(knownTables(), name) {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make(map[string][]map[string]any, len(tables))
	for _, table := range tables {
		quoted := `"` + strings.ReplaceAll(table, `"`, `""`) + `"`
		list := []map[string]any{}
		err := eachRow(ctx, t, `SELECT * FROM `+quoted+` WHERE subscriber_id = ? ORDER BY 1`, []any{id}, func(r *sql.Rows) error {
			cols, err := r.Columns()
			if err != nil {
				return err
			}
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := r.Scan(ptrs...); err != nil {
				return err
			}
			row := make(map[string]any, len(cols))
			for i, c := range cols {
				if b, ok := vals[i].([]byte); ok {
					vals[i] = bytes.Clone(b)
				}
				row[c] = vals[i]
			}
			list = append(list, row)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table, err)
		}
		out[table] = list
	}
	return out, nil
}

// eachRow runs a query in t and calls fn for each row.
func eachRow(ctx context.Context, t *sql.Tx, q string, args []any, fn func(*sql.Rows) error) error {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanConsent reads the consent columns in the order LatestConsent lists
// them.
func scanConsent(row scanner) (*subscribers.Consent, error) {
	var (
		c                  subscribers.Consent
		created, confirmed sql.NullInt64
		newsletters        string
	)
	if err := row.Scan(&c.ID, &c.SubscriberID, &created, &c.IP, &c.UserAgent, &c.Source,
		&c.TextVersion, &newsletters, &confirmed, &c.ConfirmIP); err != nil {
		return nil, err
	}
	c.CreatedAt = decTime(created)
	c.ConfirmedAt = decTime(confirmed)
	c.Newsletters = splitList(newsletters)
	return &c, nil
}

// FindSuppression returns the suppression list entry with that hash, or
// ENOTFOUND.
func (db *DB) FindSuppression(ctx context.Context, hash []byte) (*subscribers.Suppression, error) {
	s, err := scanSuppression(db.reader.QueryRowContext(ctx,
		`SELECT hash, reason, created_at FROM suppressions WHERE hash = ?`, hash))
	if err != nil {
		return nil, translate(err, "find suppression", "suppression")
	}
	return s, nil
}

func scanSuppression(row scanner) (*subscribers.Suppression, error) {
	var (
		s       subscribers.Suppression
		created sql.NullInt64
	)
	if err := row.Scan(&s.Hash, &s.Reason, &created); err != nil {
		return nil, err
	}
	s.CreatedAt = decTime(created)
	return &s, nil
}

// FindSuppressions returns up to limit (default DefaultLimit, at most
// MaxLimit) suppression list entries whose hashes sort after after, in
// hash order.
func (db *DB) FindSuppressions(ctx context.Context, after []byte, limit int) ([]subscribers.Suppression, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	if after == nil {
		after = []byte{}
	}
	rows, err := db.reader.QueryContext(ctx,
		`SELECT hash, reason, created_at FROM suppressions WHERE hash > ? ORDER BY hash LIMIT ?`, after, limit)
	if err != nil {
		return nil, translate(err, "find suppressions", "suppression")
	}
	defer rows.Close()
	var out []subscribers.Suppression
	for rows.Next() {
		s, err := scanSuppression(rows)
		if err != nil {
			return nil, translate(err, "find suppressions", "suppression")
		}
		out = append(out, *s)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find suppressions", "suppression")
	}
	return out, nil
}

// EachConsent streams every consent record with its subscriber's address,
// ordered by subscriber id then consent id, from one read snapshot. It stops
// at the first error fn returns and returns it unwrapped.
func (db *DB) EachConsent(ctx context.Context, fn func(email string, c *subscribers.Consent) error) error {
	rows, err := db.reader.QueryContext(ctx, `SELECT c.id, c.subscriber_id, c.created_at, c.ip, c.user_agent,
            c.source, c.text_version, c.newsletters, c.confirmed_at, c.confirm_ip, s.email
        FROM subscribers s CROSS JOIN consents c ON c.subscriber_id = s.id
        ORDER BY s.id, c.id`)
	if err != nil {
		return translate(err, "each consent", "consent")
	}
	defer rows.Close()
	for rows.Next() {
		var email string
		c, err := scanConsent(consentWithEmail{rows, &email})
		if err != nil {
			return translate(err, "each consent", "consent")
		}
		if err := fn(email, c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err, "each consent", "consent")
	}
	return nil
}

// consentWithEmail scans the consent columns and then the address.
type consentWithEmail struct {
	rows  *sql.Rows
	email *string
}

func (c consentWithEmail) Scan(dest ...any) error { return c.rows.Scan(append(dest, c.email)...) }

// PurgePending deletes, with everything they hold, up to limit subscribers
// still pending whose last change is before before, oldest first, and
// returns their addresses (at most limit of them).
func (db *DB) PurgePending(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	var emails []string
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		emails = nil
		rows, err := t.QueryContext(ctx, `SELECT id, email FROM subscribers INDEXED BY subscribers_pending
            WHERE status = 'pending' AND updated_at < ? ORDER BY updated_at LIMIT ?`, before.UnixMilli(), limit)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
			emails = append(emails, email)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := eraseRows(ctx, t, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, translate(err, "purge pending subscribers", "subscriber")
	}
	return emails, nil
}

// AggregateMessages counts up to limit settled messages last changed before
// before into delivery_stats and deletes them; it returns how many it
// deleted. The rows are found on a read connection, walking the outbox in
// id order (ids grow with time, so the old rows come first), and only the
// counting and deleting take the writer: the walk, which reads the whole
// outbox on the last batch of a pass, never holds up a signup.
func (db *DB) AggregateMessages(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	cutoff := before.UnixMilli()
	rows, err := db.reader.QueryContext(ctx, `SELECT id FROM messages
        WHERE status IN `+settledStatuses+` AND updated_at < ? ORDER BY id LIMIT ?`, cutoff, limit)
	if err != nil {
		return 0, translate(err, "find old messages", "message")
	}
	ids := make([]int64, 0, limit)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, translate(err, "find old messages", "message")
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, translate(err, "find old messages", "message")
	}
	if len(ids) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return 0, err
	}
	var n int64
	err = db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		// The same conditions again: a row that changed since the walk
		// is left alone.
		if _, err := t.ExecContext(ctx, aggregateIDsSQL, string(list), cutoff); err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, deleteIDsSQL, string(list), cutoff)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, translate(err, "aggregate messages", "message")
	}
	// A short count (rows changed meanwhile) must not end the pass early.
	if int(n) < len(ids) && len(ids) == limit {
		return limit, nil
	}
	return int(n), nil
}

// DeleteExpiredTokens deletes up to limit stored tokens that expired before
// before, and returns how many.
func (db *DB) DeleteExpiredTokens(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM tokens WHERE hash IN
            (SELECT hash FROM tokens WHERE expires_at < ? LIMIT ?)`, before.UnixMilli(), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, translate(err, "delete expired tokens", "token")
	}
	return int(n), nil
}

// DeliveryStats returns the delivery statistics as day -> "kind/status" ->
// count, for tests and reports.
func (db *DB) DeliveryStats(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT day, kind, status, count FROM delivery_stats ORDER BY day, kind, status`)
	if err != nil {
		return nil, translate(err, "delivery stats", "statistic")
	}
	defer rows.Close()
	out := make(map[string]map[string]int)
	for rows.Next() {
		var day, kind, status string
		var n int
		if err := rows.Scan(&day, &kind, &status, &n); err != nil {
			return nil, translate(err, "delivery stats", "statistic")
		}
		if out[day] == nil {
			out[day] = make(map[string]int)
		}
		out[day][kind+"/"+status] += n
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "delivery stats", "statistic")
	}
	return out, nil
}

// scrubAttempts bounds how often Scrub tries to finish its checkpoint.
const scrubAttempts = 5

// Scrub makes deleted rows unrecoverable from the database files. The
// writer runs with secure_delete, so a deleted row's bytes are zeroed in
// the page that held it; but the WAL still holds earlier images of those
// pages until it is checkpointed and truncated. Scrub does that: a
// TRUNCATE checkpoint copies every committed page into the database file
// and cuts the WAL to zero bytes. It runs on the writer connection between
// two write groups, so no write is under way; readers still reading an old
// snapshot make it wait (busy timeout) and retry, and EUNAVAILABLE means it
// could not finish now.
func (db *DB) Scrub(ctx context.Context) error {
	var last error
	for attempt := range scrubAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		}
		var busy, frames, copied int
		err := db.writer.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
		switch {
		case err == nil && busy == 0:
			return nil
		case err == nil:
			last = errors.New("a reader still holds the WAL")
		default:
			// Most often the background checkpoint is running at this
			// very moment (SQLITE_BUSY); try again.
			last = err
		}
	}
	return fmt.Errorf("scrub: %w (%w)", herald.Errorf(herald.EUNAVAILABLE, "The database could not be scrubbed now; it will be on the next retention pass."), last)
}

// Suppressed reports whether the hash is on the suppression list.
func (t *tx) Suppressed(hash []byte) (bool, error) {
	var one int
	err := t.tx.QueryRowContext(t.ctx, `SELECT 1 FROM suppressions WHERE hash = ?`, hash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, translate(err, "suppressed", "suppression")
	}
	return true, nil
}

// SuppressionByHash returns the entry with that hash, or ENOTFOUND.
func (t *tx) SuppressionByHash(hash []byte) (*subscribers.Suppression, error) {
	s, err := scanSuppression(t.tx.QueryRowContext(t.ctx,
		`SELECT hash, reason, created_at FROM suppressions WHERE hash = ?`, hash))
	if err != nil {
		return nil, translate(err, "suppression by hash", "suppression")
	}
	return s, nil
}

// AddSuppression adds s unless its hash is listed already, and reports
// whether it did.
func (t *tx) AddSuppression(s subscribers.Suppression) (bool, error) {
	if len(s.Hash) == 0 {
		return false, herald.Errorf(herald.EINVALID, "A suppression needs a hash.")
	}
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO suppressions (hash, reason, created_at) VALUES (?, ?, ?)
        ON CONFLICT (hash) DO NOTHING`, bytes.Clone(s.Hash), s.Reason, encTimeNN(s.CreatedAt))
	if err != nil {
		return false, translate(err, "add suppression", "suppression")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("add suppression: %w", err)
	}
	return n == 1, nil
}

// DeleteSuppression removes the entry with that hash, or returns ENOTFOUND.
func (t *tx) DeleteSuppression(hash []byte) error {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM suppressions WHERE hash = ?`, hash)
	if err != nil {
		return translate(err, "delete suppression", "suppression")
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete suppression: %w", err)
	} else if n == 0 {
		return notFound("delete suppression", "suppression")
	}
	return nil
}

// EraseSubscriber deletes the subscriber and every row that names them;
// settled messages are counted into delivery_stats first. ENOTFOUND for an
// unknown id.
func (t *tx) EraseSubscriber(id int64) error {
	var one int
	err := t.tx.QueryRowContext(t.ctx, `SELECT 1 FROM subscribers WHERE id = ?`, id).Scan(&one)
	if err != nil {
		return translate(err, fmt.Sprintf("erase subscriber %d", id), "subscriber")
	}
	return eraseRows(t.ctx, t.tx, id)
}

// LatestEvent returns the subscriber's newest event of that kind, or
// ENOTFOUND.
func (t *tx) LatestEvent(subscriberID int64, kind string) (*subscribers.Event, error) {
	var (
		e  subscribers.Event
		at sql.NullInt64
	)
	// events_subscriber (subscriber_id, id) walks the reader's log from
	// the newest entry.
	err := t.tx.QueryRowContext(t.ctx, `SELECT id, subscriber_id, at, kind, detail FROM events
        WHERE subscriber_id = ? AND kind = ? ORDER BY id DESC LIMIT 1`, subscriberID, kind).
		Scan(&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("latest %s event of subscriber %d", kind, subscriberID), "event")
	}
	e.At = decTime(at)
	return &e, nil
}
