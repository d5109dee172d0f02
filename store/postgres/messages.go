package postgres

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald"
	"herald/delivery"
	"herald/subscribers"
)

const (
	// maxLastError caps the error text kept on a message row.
	maxLastError = 1000
	// maxEventDetail caps the reason written into the activity log.
	maxEventDetail = 200
)

// claimSQL leases due messages and returns them with their recipients, in
// one statement, leaving less urgent mail its share of the batch (see
// ClaimMessages). Each arm walks a partial index in (priority, id) order,
// locks up to its LIMIT and stops: a claim costs the same with ten rows
// queued or a million. due and expired lock the first $4 due messages each;
// between them they hold the first $4 of the most urgent due priority, which
// urgent keeps, numbered in id order. rest_due and rest_expired walk the same
// indexes again from just past that priority and lock only as many rows as
// the others can get: the batch less the urgent rows it keeps for sure (up
// to $4 - $4/4, the cap). picked then takes, in this order, the urgent rows
// within the cap, the others in (priority, id) order and the urgent rows
// past the cap, and keeps the first $4: others fill what the urgent leave,
// and the urgent what the others leave. Below a limit of 4 the cap is the
// whole batch, as before the share.
//
// SKIP LOCKED passes over rows another instance is claiming right now, so
// concurrent claims never wait on each other and never return the same row;
// a row another claim changed after this statement began is re-checked
// against the WHERE clause before it is locked, so a message just leased
// elsewhere is left out. A row locked by two arms of this statement is
// picked through one of them only: urgent takes the most urgent priority,
// the rest arms only those past it.
//
// The arms are separate CTEs because PostgreSQL allows no FOR UPDATE inside
// a UNION; rows locked by an arm but cut by the final LIMIT stay locked
// (unclaimed) only until the statement ends. The UPDATE finds its rows by
// primary key (= ANY of an array) and the recipients are read one by one
// (LATERAL ... LIMIT 1): with the CTEs' row counts unknown to it, the
// planner would otherwise hash-join whole tables, scanning every message and
// subscriber on each claim. Besides the address, name and status the claim
// says whether the reader is paused and still takes the newsletter of the
// message's issue, so that the renderer of a digest needs no query of its
// own.
const claimSQL = `WITH due AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'queued' AND next_attempt_at <= $2
    ORDER BY priority, id LIMIT $4
    FOR UPDATE SKIP LOCKED),
expired AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'sending' AND lease_until < $2
    ORDER BY priority, id LIMIT $4
    FOR UPDATE SKIP LOCKED),
urgent AS MATERIALIZED (
    SELECT id, priority, row_number() OVER (ORDER BY id) AS n
    FROM (SELECT id, priority FROM due UNION ALL SELECT id, priority FROM expired) u
    WHERE priority = (SELECT min(priority) FROM (SELECT priority FROM due UNION ALL SELECT priority FROM expired) v)),
rest_due AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'queued' AND next_attempt_at <= $2 AND priority > (SELECT priority FROM urgent LIMIT 1)
    ORDER BY priority, id LIMIT $4 - least((SELECT count(*) FROM urgent), $4 - $4 / 4)
    FOR UPDATE SKIP LOCKED),
rest_expired AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'sending' AND lease_until < $2 AND priority > (SELECT priority FROM urgent LIMIT 1)
    ORDER BY priority, id LIMIT $4 - least((SELECT count(*) FROM urgent), $4 - $4 / 4)
    FOR UPDATE SKIP LOCKED),
picked AS (
    SELECT id FROM (
        SELECT id, priority, CASE WHEN n <= $4 - $4 / 4 THEN 0 ELSE 2 END AS grp FROM urgent
        UNION ALL SELECT id, priority, 1 FROM rest_due
        UNION ALL SELECT id, priority, 1 FROM rest_expired) p
    ORDER BY grp, priority, id LIMIT $4),
claimed AS (
    UPDATE messages m
    SET status = 'sending', lease_owner = $1, lease_until = $3, attempts = m.attempts + 1, updated_at = $2
    WHERE m.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING m.id, m.priority, m.kind, m.subscriber_id, m.issue_id, m.edition_id, m.message_id, m.attempts, m.created_at)
SELECT c.id, c.kind, c.subscriber_id, c.issue_id, c.edition_id, c.message_id, c.attempts, c.created_at,
    s.email, s.name, s.status, s.paused_until,
    EXISTS (SELECT 1 FROM issues i JOIN subscriber_newsletters sn ON sn.newsletter_id = i.newsletter_id
        WHERE i.id = c.issue_id AND sn.subscriber_id = c.subscriber_id)
FROM claimed c
LEFT JOIN LATERAL (
    SELECT email, name, status, paused_until FROM subscribers WHERE id = c.subscriber_id LIMIT 1) s ON true
ORDER BY c.priority, c.id`

// ClaimMessages leases up to limit due messages (queued with next_attempt_at
// <= now, or sending with a lease expired before now) to owner until
// now+lease, increments their attempts and returns them joined with their
// recipients, ordered by priority then id. Several instances may claim at
// once: no message is returned to two of them.
//
// Less urgent mail keeps a share of each batch, so that a flood of
// transactional mail cannot starve the digests: when due messages of more
// than one priority exist and limit >= 4, the most urgent priority among
// them takes at most limit - limit/4 rows, and the rest go to the other due
// messages in (priority, id) order; when fewer of those are due, the urgent
// ones fill the batch. Below a limit of 4 a claim takes the first limit due
// messages in (priority, id) order. Due means due and not being claimed by
// another instance at that moment.
func (db *DB) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]delivery.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, claimSQL, owner, now, now.Add(lease), limit)
	if err != nil {
		return nil, translate(err, "claim messages", "message")
	}
	jobs := make([]delivery.Job, 0, limit)
	var (
		j                   delivery.Job
		issue, edition      pgtype.Int8
		created             pgtype.Timestamptz
		email, name, status pgtype.Text // NULL if the reader was deleted meanwhile
		paused              pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&j.ID, &j.Kind, &j.SubscriberID, &issue, &edition, &j.MessageID, &j.Attempts,
		&created, &email, &name, &status, &paused, &j.InNewsletter}, func() error {
		j.IssueID, j.EditionID = issue.Int64, edition.Int64
		j.CreatedAt = decTime(created)
		j.Email, j.Name, j.SubscriberStatus = email.String, name.String, status.String
		j.PausedUntil = decTime(paused)
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		// The statement is atomic: on error nothing was leased.
		return nil, translate(err, "claim messages", "message")
	}
	return jobs, nil
}

// Settlement statements, one per kind of outcome, each applied to a whole
// batch through unnest. Each changes a row only while owner ($1) still holds
// its lease; a row whose lease expired and was claimed by another worker is
// left to that worker.
const (
	settleSentSQL = `UPDATE messages m
        SET status = 'sent', sent_at = r.at, updated_at = r.at, last_error = '', lease_owner = NULL, lease_until = NULL
        FROM unnest($2::bigint[], $3::timestamptz[]) AS r(id, at)
        WHERE m.id = r.id AND m.status = 'sending' AND m.lease_owner = $1`
	settleRetrySQL = `UPDATE messages m
        SET status = 'queued', next_attempt_at = r.next, last_error = r.reason, updated_at = r.at,
            lease_owner = NULL, lease_until = NULL
        FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::text[]) AS r(id, at, next, reason)
        WHERE m.id = r.id AND m.status = 'sending' AND m.lease_owner = $1`
	// A release hands back a claimed message that was never attempted: the
	// claim's attempt is given back and the last error is kept.
	settleReleaseSQL = `UPDATE messages m
        SET status = 'queued', next_attempt_at = r.next, attempts = greatest(m.attempts - 1, 0), updated_at = r.at,
            lease_owner = NULL, lease_until = NULL
        FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[]) AS r(id, at, next)
        WHERE m.id = r.id AND m.status = 'sending' AND m.lease_owner = $1`
	settleFinalSQL = `UPDATE messages m
        SET status = r.status, last_error = r.reason, updated_at = r.at, lease_owner = NULL, lease_until = NULL
        FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[]) AS r(id, at, status, reason)
        WHERE m.id = r.id AND m.status = 'sending' AND m.lease_owner = $1`
	// A bounce suppresses the reader and logs it, once per reader: the
	// first bounce of the batch (by position) gives the time and reason. A
	// complaint is the stronger signal; a bounce does not overwrite it.
	settleBouncedSQL = `WITH r AS (
    SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
        WITH ORDINALITY AS r(id, at, reason, detail, pos)),
b AS (
    UPDATE messages m
    SET status = 'bounced', last_error = r.reason, updated_at = r.at, lease_owner = NULL, lease_until = NULL
    FROM r WHERE m.id = r.id AND m.status = 'sending' AND m.lease_owner = $1
    RETURNING m.subscriber_id, r.at, r.detail, r.pos),
per_reader AS (
    SELECT DISTINCT ON (subscriber_id) subscriber_id, at, detail, pos FROM b ORDER BY subscriber_id, pos),
s AS (
    UPDATE subscribers su SET status = 'bounced', updated_at = f.at
    FROM per_reader f WHERE su.id = f.subscriber_id AND su.status NOT IN ('bounced', 'complained')
    RETURNING su.id, f.at, f.detail, f.pos)
INSERT INTO events (subscriber_id, at, kind, detail)
SELECT id, at, $6, detail FROM s ORDER BY pos`
)

// settleCols holds the results of one kind of outcome as columns, the
// arguments of unnest.
type settleCols struct {
	ids                    []int64
	at, next               []time.Time
	status, reason, detail []string
}

// SettleMessages records the results in one transaction, sending one
// statement per kind of outcome present in a single round trip. Only rows
// still leased by owner change; others are skipped silently. When a message
// appears more than once, its first result counts, as every outcome ends the
// lease the later ones would need. OutcomeBounced also sets the
// subscriber's status to bounced (unless they complained) and logs a
// status_change event. EINVALID for an unknown outcome, and then nothing is
// written.
func (db *DB) SettleMessages(ctx context.Context, owner string, results []delivery.Result) error {
	if len(results) == 0 {
		return nil
	}
	var sent, retry, release, final, bounced settleCols
	seen := make(map[int64]bool, len(results))
	for _, r := range results {
		switch r.Outcome {
		case delivery.OutcomeSent, delivery.OutcomeRetry, delivery.OutcomeRelease,
			delivery.OutcomeFailed, delivery.OutcomeCancelled, delivery.OutcomeBounced:
		default:
			return fmt.Errorf("settle messages: message %d: %w", r.ID,
				herald.Errorf(herald.EINVALID, "Unknown delivery outcome %q.", r.Outcome))
		}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		reason := truncate(r.Error, maxLastError)
		switch r.Outcome {
		case delivery.OutcomeSent:
			sent.ids = append(sent.ids, r.ID)
			sent.at = append(sent.at, r.At)
		case delivery.OutcomeRetry:
			retry.ids = append(retry.ids, r.ID)
			retry.at = append(retry.at, r.At)
			retry.next = append(retry.next, r.NextAttemptAt)
			retry.reason = append(retry.reason, reason)
		case delivery.OutcomeRelease:
			release.ids = append(release.ids, r.ID)
			release.at = append(release.at, r.At)
			release.next = append(release.next, r.NextAttemptAt)
		case delivery.OutcomeFailed, delivery.OutcomeCancelled:
			final.ids = append(final.ids, r.ID)
			final.at = append(final.at, r.At)
			final.status = append(final.status, string(r.Outcome))
			final.reason = append(final.reason, reason)
		case delivery.OutcomeBounced:
			bounced.ids = append(bounced.ids, r.ID)
			bounced.at = append(bounced.at, r.At)
			bounced.reason = append(bounced.reason, reason)
			bounced.detail = append(bounced.detail, "bounced: "+truncate(r.Error, maxEventDetail))
		}
	}

	b := &pgx.Batch{}
	if len(sent.ids) > 0 {
		b.Queue(settleSentSQL, owner, sent.ids, sent.at)
	}
	if len(retry.ids) > 0 {
		b.Queue(settleRetrySQL, owner, retry.ids, retry.at, retry.next, retry.reason)
	}
	if len(release.ids) > 0 {
		b.Queue(settleReleaseSQL, owner, release.ids, release.at, release.next)
	}
	if len(final.ids) > 0 {
		b.Queue(settleFinalSQL, owner, final.ids, final.at, final.status, final.reason)
	}
	if len(bounced.ids) > 0 {
		b.Queue(settleBouncedSQL, owner, bounced.ids, bounced.at, bounced.reason, bounced.detail,
			subscribers.EventStatusChange)
	}
	err := db.inTx(ctx, func(t pgx.Tx) error {
		return t.SendBatch(ctx, b).Close()
	})
	return translate(err, "settle messages", "message")
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// CountMessages returns how many outbox rows are in each status (statuses
// with no rows are absent).
func (db *DB) CountMessages(ctx context.Context) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT status, count(*) FROM messages GROUP BY status`)
	if err != nil {
		return nil, translate(err, "count messages", "message")
	}
	counts := make(map[string]int)
	var (
		status string
		n      int
	)
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		counts[status] = n
		return nil
	}); err != nil {
		return nil, translate(err, "count messages", "message")
	}
	return counts, nil
}

// SuppressedHashes returns those of hashes that are on the suppression
// list, in one query: the delivery path checks a whole claimed batch at
// once (subscribers.Service.SuppressedAmong) instead of one address per
// message.
func (db *DB) SuppressedHashes(ctx context.Context, hashes [][]byte) ([][]byte, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT hash FROM suppressions WHERE hash = ANY ($1::bytea[])`, hashes)
	if err != nil {
		return nil, translate(err, "find suppressed addresses", "suppression")
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, translate(err, "find suppressed addresses", "suppression")
	}
	return found, nil
}
