package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

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

// countGoneSQL counts the rows of a DELETE ... RETURNING updated_at, kind,
// status named gone into delivery_stats, by the UTC date of their last
// change (when they settled). Counting what the DELETE returns counts
// exactly the rows deleted, even those changed by a concurrent settle the
// DELETE waited for. Keys are written in order, so two transactions adding
// to the same days cannot deadlock.
const countGoneSQL = `INSERT INTO delivery_stats (day, kind, status, count)
    SELECT to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), kind, status, count(*)
    FROM gone WHERE status IN ` + settledStatuses + `
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, kind, status) DO UPDATE SET count = delivery_stats.count + excluded.count`

// eraseSQL deletes subscribers and every row that names them; settled
// messages are counted into delivery_stats first, so that the totals of
// past days do not change when a reader goes. The foreign keys would
// cascade most of this; it is spelled out so that no table is forgotten
// when one is added (bounce_log keeps its rows: its reference is SET NULL).
var eraseSQL = []string{
	`WITH gone AS (DELETE FROM messages WHERE subscriber_id = ANY ($1) RETURNING updated_at, kind, status) ` + countGoneSQL,
	`DELETE FROM tokens WHERE subscriber_id = ANY ($1)`,
	`DELETE FROM events WHERE subscriber_id = ANY ($1)`,
	`DELETE FROM consents WHERE subscriber_id = ANY ($1)`,
	`DELETE FROM subscriber_newsletters WHERE subscriber_id = ANY ($1)`,
	`DELETE FROM subscribers WHERE id = ANY ($1)`,
}

// eraseRows deletes the subscribers with these ids and every row that names
// them (eraseSQL), in one round trip.
func eraseRows(ctx context.Context, t pgx.Tx, ids []int64) error {
	b := &pgx.Batch{}
	for _, q := range eraseSQL {
		b.Queue(q, ids)
	}
	return t.SendBatch(ctx, b).Close()
}

// FindSubscriberRecords returns every row the database holds about one
// subscriber, read in one snapshot (a read-only REPEATABLE READ
// transaction); ENOTFOUND for an unknown id. Rows of the other tables with
// a subscriber_id column come as pgx decodes them: times as time.Time in
// UTC (SQLite's are unix milliseconds, as stored there).
func (db *DB) FindSubscriberRecords(ctx context.Context, id int64) (*subscribers.Records, error) {
	op := fmt.Sprintf("records of subscriber %d", id)
	t, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, translate(err, op, "subscriber")
	}
	// Read only: there is nothing to commit.
	defer t.Rollback(context.WithoutCancel(ctx))
	rec := &subscribers.Records{}
	if rec.Subscriber, err = scanSubscriber(t.QueryRow(ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = $1`, id)); err != nil {
		return nil, translate(err, op, "subscriber")
	}
	rows, err := t.Query(ctx, `SELECT `+consentColumns+` FROM consents WHERE subscriber_id = $1 ORDER BY id`, id)
	if err == nil {
		rec.Consents, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (subscribers.Consent, error) {
			c, err := scanConsent(row)
			if err != nil {
				return subscribers.Consent{}, err
			}
			return *c, nil
		})
	}
	if err != nil {
		return nil, translate(err, op, "consent")
	}
	rows, err = t.Query(ctx, `SELECT id, subscriber_id, at, kind, detail FROM events WHERE subscriber_id = $1 ORDER BY id`, id)
	if err == nil {
		var (
			e  subscribers.Event
			at pgtype.Timestamptz
		)
		_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail}, func() error {
			e.At = decTime(at)
			rec.Events = append(rec.Events, e)
			return nil
		})
	}
	if err != nil {
		return nil, translate(err, op, "event")
	}
	rows, err = t.Query(ctx, `SELECT subscriber_id, purpose, created_at, expires_at, used_at FROM tokens
        WHERE subscriber_id = $1 ORDER BY created_at, hash`, id)
	if err == nil {
		var (
			tok                    subscribers.Token
			purpose                string
			created, expires, used pgtype.Timestamptz
		)
		_, err = pgx.ForEachRow(rows, []any{&tok.SubscriberID, &purpose, &created, &expires, &used}, func() error {
			tok.Purpose = subscribers.Purpose(purpose)
			tok.CreatedAt, tok.ExpiresAt, tok.UsedAt = decTime(created), decTime(expires), decTime(used)
			rec.Tokens = append(rec.Tokens, tok)
			return nil
		})
	}
	if err != nil {
		return nil, translate(err, op, "token")
	}
	rows, err = t.Query(ctx, `SELECT id, kind, issue_id, message_id, status, attempts, last_error,
            created_at, updated_at, sent_at
        FROM messages WHERE subscriber_id = $1 ORDER BY id`, id)
	if err == nil {
		var (
			m                      subscribers.Delivery
			issue                  pgtype.Int8
			created, updated, sent pgtype.Timestamptz
		)
		_, err = pgx.ForEachRow(rows, []any{&m.ID, &m.Kind, &issue, &m.MessageID, &m.Status, &m.Attempts, &m.LastError,
			&created, &updated, &sent}, func() error {
			m.IssueID = issue.Int64
			m.CreatedAt, m.UpdatedAt, m.SentAt = decTime(created), decTime(updated), decTime(sent)
			rec.Messages = append(rec.Messages, m)
			return nil
		})
	}
	if err != nil {
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

// otherRecords reads the subscriber's rows of every other table of the
// schema with a subscriber_id column, column by column.
func otherRecords(ctx context.Context, t pgx.Tx, id int64) (map[string][]map[string]any, error) {
	rows, err := t.Query(ctx, `SELECT c.table_name FROM information_schema.columns c
        JOIN information_schema.tables r ON r.table_schema = c.table_schema AND r.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND c.column_name = 'subscriber_id' AND r.table_type = 'BASE TABLE'
        ORDER BY c.table_name`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string][]map[string]any)
	for _, table := range names {
		if slices.Contains(knownTables(), table) {
			continue
		}
		rows, err := t.Query(ctx, `SELECT * FROM `+pgx.Identifier{table}.Sanitize()+` WHERE subscriber_id = $1 ORDER BY 1`, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table, err)
		}
		list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (map[string]any, error) {
			m, err := pgx.RowToMap(row)
			for k, v := range m {
				if tm, ok := v.(time.Time); ok {
					m[k] = tm.UTC()
				}
			}
			return m, err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table, err)
		}
		if list == nil {
			list = []map[string]any{}
		}
		out[table] = list
	}
	return out, nil
}

// consentColumns lists what scanConsent reads.
const consentColumns = `id, subscriber_id, created_at, ip, user_agent, source, text_version, newsletters, confirmed_at, confirm_ip`

// scanConsent reads consentColumns, and then extra destinations.
func scanConsent(row pgx.Row, extra ...any) (*subscribers.Consent, error) {
	var (
		c                  subscribers.Consent
		created, confirmed pgtype.Timestamptz
		newsletters        string
	)
	dest := append([]any{&c.ID, &c.SubscriberID, &created, &c.IP, &c.UserAgent, &c.Source,
		&c.TextVersion, &newsletters, &confirmed, &c.ConfirmIP}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	c.CreatedAt = decTime(created)
	c.ConfirmedAt = decTime(confirmed)
	c.Newsletters = splitList(newsletters)
	return &c, nil
}

// suppressionColumns lists what scanSuppression reads.
const suppressionColumns = `hash, reason, created_at`

func scanSuppression(row pgx.Row) (*subscribers.Suppression, error) {
	var (
		s       subscribers.Suppression
		created pgtype.Timestamptz
	)
	if err := row.Scan(&s.Hash, &s.Reason, &created); err != nil {
		return nil, err
	}
	s.CreatedAt = decTime(created)
	return &s, nil
}

// FindSuppression returns the suppression list entry with that hash, or
// ENOTFOUND.
func (db *DB) FindSuppression(ctx context.Context, hash []byte) (*subscribers.Suppression, error) {
	s, err := scanSuppression(db.pool.QueryRow(ctx, `SELECT `+suppressionColumns+` FROM suppressions WHERE hash = $1`, hash))
	if err != nil {
		return nil, translate(err, "find suppression", "suppression")
	}
	return s, nil
}

// FindSuppressions returns up to limit (default DefaultLimit, at most
// MaxLimit) suppression list entries whose hashes sort after after, in
// hash order (byte order, as bytea compares).
func (db *DB) FindSuppressions(ctx context.Context, after []byte, limit int) ([]subscribers.Suppression, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	if after == nil {
		// pgx sends a nil slice as NULL, and hash > NULL matches nothing.
		after = []byte{}
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+suppressionColumns+` FROM suppressions WHERE hash > $1 ORDER BY hash LIMIT $2`, after, limit)
	if err != nil {
		return nil, translate(err, "find suppressions", "suppression")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (subscribers.Suppression, error) {
		s, err := scanSuppression(row)
		if err != nil {
			return subscribers.Suppression{}, err
		}
		return *s, nil
	})
	if err != nil {
		return nil, translate(err, "find suppressions", "suppression")
	}
	return out, nil
}

// EachConsent streams every consent record with its subscriber's address,
// ordered by subscriber id then consent id, from one statement (one
// snapshot), in constant memory; the statement holds a pooled connection
// until the walk ends. It stops at the first error fn returns and returns
// it unwrapped.
func (db *DB) EachConsent(ctx context.Context, fn func(email string, c *subscribers.Consent) error) error {
	rows, err := db.pool.Query(ctx, `SELECT c.id, c.subscriber_id, c.created_at, c.ip, c.user_agent,
            c.source, c.text_version, c.newsletters, c.confirmed_at, c.confirm_ip, s.email
        FROM subscribers s JOIN consents c ON c.subscriber_id = s.id
        ORDER BY s.id, c.id`)
	if err != nil {
		return translate(err, "each consent", "consent")
	}
	defer rows.Close()
	var email string
	for rows.Next() {
		c, err := scanConsent(rows, &email)
		if err != nil {
			return translate(err, "each consent", "consent")
		}
		if err := fn(email, c); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "each consent", "consent")
}

// PurgePending deletes, with everything they hold, up to limit subscribers
// still pending whose last change is before before, oldest first, and
// returns their addresses (at most limit of them). Rows another
// transaction holds (a confirmation under way) are skipped, and a row that
// changed meanwhile is checked again, so that a reader who confirms at that
// moment is kept.
func (db *DB) PurgePending(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	var emails []string
	err := db.inTx(ctx, func(t pgx.Tx) error {
		emails = nil
		rows, err := t.Query(ctx, `SELECT id, email FROM subscribers
            WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT $2
            FOR UPDATE SKIP LOCKED`, before, limit)
		if err != nil {
			return err
		}
		var ids []int64
		var id int64
		var email string
		if _, err := pgx.ForEachRow(rows, []any{&id, &email}, func() error {
			ids = append(ids, id)
			emails = append(emails, email)
			return nil
		}); err != nil || len(ids) == 0 {
			return err
		}
		return eraseRows(ctx, t, ids)
	})
	if err != nil {
		return nil, translate(err, "purge pending subscribers", "subscriber")
	}
	return emails, nil
}

// aggregateSQL counts up to $2 settled messages last changed before $1
// into delivery_stats and deletes them, in one statement, walking the
// outbox in id order (ids grow with time, so the old rows come first).
// There is no index for it, as on SQLite: the walk reads the outbox once an
// hour, under MVCC, holding up no writer, while every outbox write would
// pay for an index. Rows another transaction holds are skipped.
const aggregateSQL = `WITH picked AS (
    SELECT id FROM messages
    WHERE status IN ` + settledStatuses + ` AND updated_at < $1
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED),
gone AS (
    DELETE FROM messages m USING picked p WHERE m.id = p.id
    RETURNING m.updated_at, m.kind, m.status),
counted AS (` + countGoneSQL + `)
SELECT count(*) FROM gone`

// AggregateMessages counts up to limit settled messages last changed before
// before into delivery_stats and deletes them; it returns how many it
// deleted.
func (db *DB) AggregateMessages(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int
	if err := db.pool.QueryRow(ctx, aggregateSQL, before, limit).Scan(&n); err != nil {
		return 0, translate(err, "aggregate messages", "message")
	}
	return n, nil
}

// DeleteExpiredTokens deletes up to limit stored tokens that expired before
// before, and returns how many.
func (db *DB) DeleteExpiredTokens(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM tokens WHERE hash IN
        (SELECT hash FROM tokens WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, limit)
	if err != nil {
		return 0, translate(err, "delete expired tokens", "token")
	}
	return int(tag.RowsAffected()), nil
}

// DeliveryStats returns the delivery statistics as day -> "kind/status" ->
// count, for tests and reports.
func (db *DB) DeliveryStats(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT day, kind, status, count FROM delivery_stats ORDER BY day, kind, status`)
	if err != nil {
		return nil, translate(err, "delivery stats", "statistic")
	}
	out := make(map[string]map[string]int)
	var (
		day, kind, status string
		n                 int
	)
	_, err = pgx.ForEachRow(rows, []any{&day, &kind, &status, &n}, func() error {
		if out[day] == nil {
			out[day] = make(map[string]int)
		}
		out[day][kind+"/"+status] += n
		return nil
	})
	if err != nil {
		return nil, translate(err, "delivery stats", "statistic")
	}
	return out, nil
}

// scrubSQL vacuums the tables that hold an address, a name or an IP.
const scrubSQL = `VACUUM (SKIP_LOCKED) subscribers, consents`

// Scrub prunes the dead row versions an erase leaves in the tables that
// hold addresses, names and IPs (subscribers, consents).
//
// A DELETE is enough to take a reader's rows out of every query. But
// PostgreSQL's MVCC does not remove a deleted row: its version stays in the
// table's pages (and in its indexes) as a dead tuple until VACUUM prunes it,
// and autovacuum only comes once a fraction of the table (20% by default)
// is dead, which on a list that rarely loses readers can be months. Scrub
// runs a plain VACUUM of those two tables, after each erase and on each
// retention pass: it takes no lock that holds up reads or writes, skips a
// table autovacuum is working on (SKIP_LOCKED; the next pass gets it), and
// costs little when nothing is dead (the visibility map lets it skip clean
// pages). Herald does not go further, by choice:
//
//   - VACUUM FULL would rewrite the tables without the dead bytes, but
//     holds an ACCESS EXCLUSIVE lock meanwhile: every signup and send
//     would wait.
//   - Even a pruned page keeps the old bytes in its free space until they
//     are overwritten, index entries go only when VACUUM decides the
//     indexes are worth a pass, and the WAL, its archive, replicas and
//     base backups keep the row for as long as the operator keeps them.
//   - messages is left to autovacuum: every send updates it, so autovacuum
//     visits it often, and a VACUUM of it each hour would cost the most.
//
// So on PostgreSQL an erase is final for Herald and its queries at once,
// and for the database files once VACUUM has run and the WAL and backups
// have aged out under the operator's retention. A transaction older than
// the erase (a long export, a replica's feedback) keeps the dead rows
// alive; the next retention pass prunes them. A failed VACUUM (a
// statement_timeout, say) is EUNAVAILABLE: calling Scrub again later is
// harmless.
func (db *DB) Scrub(ctx context.Context) error {
	// No arguments: one simple-protocol statement, outside any
	// transaction block, as VACUUM must be.
	if _, err := db.pool.Exec(ctx, scrubSQL); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("scrub: %w", ctx.Err())
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == codeQueryCanceled {
			return fmt.Errorf("scrub: %w (%w)", herald.Errorf(herald.EUNAVAILABLE, "The database could not be scrubbed now; it will be on the next retention pass."), err)
		}
		return translate(err, "scrub", "")
	}
	return nil
}

// Suppressed reports whether the hash is on the suppression list.
func (t *tx) Suppressed(hash []byte) (bool, error) {
	var found bool
	err := t.tx.QueryRow(t.ctx, `SELECT EXISTS (SELECT 1 FROM suppressions WHERE hash = $1)`, hash).Scan(&found)
	if err != nil {
		return false, translate(err, "suppressed", "suppression")
	}
	return found, nil
}

// SuppressionByHash returns the entry with that hash, or ENOTFOUND.
func (t *tx) SuppressionByHash(hash []byte) (*subscribers.Suppression, error) {
	s, err := scanSuppression(t.tx.QueryRow(t.ctx, `SELECT `+suppressionColumns+` FROM suppressions WHERE hash = $1`, hash))
	if err != nil {
		return nil, translate(err, "suppression by hash", "suppression")
	}
	return s, nil
}

// AddSuppression adds s unless its hash is listed already, and reports
// whether it did. A listed hash skips the insert rather than failing, so
// the transaction stays usable. EINVALID without a hash.
func (t *tx) AddSuppression(s subscribers.Suppression) (bool, error) {
	if len(s.Hash) == 0 {
		return false, herald.Errorf(herald.EINVALID, "A suppression needs a hash.")
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO suppressions (hash, reason, created_at) VALUES ($1, $2, $3)
        ON CONFLICT (hash) DO NOTHING`, s.Hash, s.Reason, s.CreatedAt)
	if err != nil {
		return false, translate(err, "add suppression", "suppression")
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteSuppression removes the entry with that hash, or returns ENOTFOUND.
func (t *tx) DeleteSuppression(hash []byte) error {
	tag, err := t.tx.Exec(t.ctx, `DELETE FROM suppressions WHERE hash = $1`, hash)
	if err != nil {
		return translate(err, "delete suppression", "suppression")
	}
	if tag.RowsAffected() == 0 {
		return notFound("delete suppression", "suppression")
	}
	return nil
}

// EraseSubscriber deletes the subscriber and every row that names them;
// settled messages are counted into delivery_stats first. ENOTFOUND for an
// unknown id. The subscriber's row is locked first, so that a concurrent
// change to it waits for the erase and then finds nothing.
func (t *tx) EraseSubscriber(id int64) error {
	op := fmt.Sprintf("erase subscriber %d", id)
	var one int
	if err := t.tx.QueryRow(t.ctx, `SELECT 1 FROM subscribers WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
		return translate(err, op, "subscriber")
	}
	return translate(eraseRows(t.ctx, t.tx, []int64{id}), op, "subscriber")
}

// LatestEvent returns the subscriber's newest event of that kind, or
// ENOTFOUND.
func (t *tx) LatestEvent(subscriberID int64, kind string) (*subscribers.Event, error) {
	var (
		e  subscribers.Event
		at pgtype.Timestamptz
	)
	// events_subscriber (subscriber_id, id) walks the reader's log from
	// the newest entry.
	err := t.tx.QueryRow(t.ctx, `SELECT id, subscriber_id, at, kind, detail FROM events
        WHERE subscriber_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1`, subscriberID, kind).
		Scan(&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("latest %s event of subscriber %d", kind, subscriberID), "event")
	}
	e.At = decTime(at)
	return &e, nil
}
