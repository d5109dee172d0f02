package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

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

// claimSQL leases due messages and returns them with their recipients,
// leaving less urgent mail its share of the batch (see ClaimMessages).
//
// due and expired each walk a partial index in (priority, id) order and stop
// after ?4 rows: between them they hold the first ?4 due messages of the
// most urgent due priority, which urgent keeps, numbered in id order.
// rest_due and rest_expired walk the same indexes again, from just past that
// priority, and stop after as many rows as the others can get: the batch
// less the urgent rows it keeps for sure (up to ?4 - ?4/4, its cap). picked
// then takes, in this order, the urgent rows within the cap, the others in
// (priority, id) order, and the urgent rows past the cap, and keeps the
// first ?4: others fill what the urgent leave, and the urgent what the
// others leave. Below a limit of 4 the cap is the whole batch, as before
// the share. So a claim reads at most about twice the batch, whether ten
// rows are queued or a million.
//
// The subqueries in RETURNING read the recipient in the same statement
// (SQLite's RETURNING cannot name a joined table), each one a primary-key
// lookup: address, name, status and pause, and whether the reader still
// takes the newsletter of the message's issue, so that the renderer of a
// digest needs no query of its own.
const claimSQL = `WITH due AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'queued' AND next_attempt_at <= ?2
    ORDER BY priority, id LIMIT ?4),
expired AS MATERIALIZED (
    SELECT id, priority FROM messages
    WHERE status = 'sending' AND lease_until < ?2
    ORDER BY priority, id LIMIT ?4),
urgent AS MATERIALIZED (
    SELECT id, priority, row_number() OVER (ORDER BY id) AS n FROM (
        SELECT id, priority FROM due UNION ALL SELECT id, priority FROM expired)
    WHERE priority = (SELECT min(priority) FROM (
        SELECT priority FROM due UNION ALL SELECT priority FROM expired))),
rest_due AS (
    SELECT id, priority FROM messages
    WHERE status = 'queued' AND next_attempt_at <= ?2 AND priority > (SELECT priority FROM urgent LIMIT 1)
    ORDER BY priority, id LIMIT ?4 - min((SELECT count(*) FROM urgent), ?4 - ?4 / 4)),
rest_expired AS (
    SELECT id, priority FROM messages
    WHERE status = 'sending' AND lease_until < ?2 AND priority > (SELECT priority FROM urgent LIMIT 1)
    ORDER BY priority, id LIMIT ?4 - min((SELECT count(*) FROM urgent), ?4 - ?4 / 4)),
picked AS (
    SELECT id FROM (
        SELECT id, priority, CASE WHEN n <= ?4 - ?4 / 4 THEN 0 ELSE 2 END AS grp FROM urgent
        UNION ALL SELECT id, priority, 1 FROM rest_due
        UNION ALL SELECT id, priority, 1 FROM rest_expired)
    ORDER BY grp, priority, id LIMIT ?4)
UPDATE messages
SET status = 'sending', lease_owner = ?1, lease_until = ?3, attempts = attempts + 1, updated_at = ?2
WHERE id IN (SELECT id FROM picked)
RETURNING id, priority, kind, subscriber_id, issue_id, edition_id, message_id, attempts, created_at,
    (SELECT s.email FROM subscribers s WHERE s.id = messages.subscriber_id),
    (SELECT s.name FROM subscribers s WHERE s.id = messages.subscriber_id),
    (SELECT s.status FROM subscribers s WHERE s.id = messages.subscriber_id),
    (SELECT s.paused_until FROM subscribers s WHERE s.id = messages.subscriber_id),
    EXISTS (SELECT 1 FROM subscriber_newsletters sn WHERE sn.subscriber_id = messages.subscriber_id
        AND sn.newsletter_id = (SELECT i.newsletter_id FROM issues i WHERE i.id = messages.issue_id))`

// ClaimMessages leases up to limit due messages (queued with next_attempt_at
// <= now, or sending with a lease expired before now) to owner until
// now+lease, increments their attempts and returns them joined with their
// recipients, ordered by priority then id.
//
// Less urgent mail keeps a share of each batch, so that a flood of
// transactional mail cannot starve the digests: when due messages of more
// than one priority exist and limit >= 4, the most urgent priority among
// them takes at most limit - limit/4 rows, and the rest go to the other due
// messages in (priority, id) order; when fewer of those are due, the urgent
// ones fill the batch. Below a limit of 4 a claim takes the first limit due
// messages in (priority, id) order.
func (db *DB) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]delivery.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	type claimed struct {
		job      delivery.Job
		priority int
	}
	var got []claimed
	prepared, err := db.writerStmt(ctx, claimSQL)
	if err != nil {
		return nil, translate(err, "claim messages", "message")
	}
	err = db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		st := t.StmtContext(ctx, prepared)
		defer st.Close()
		rows, err := st.QueryContext(ctx, owner, now.UnixMilli(), now.Add(lease).UnixMilli(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		got = make([]claimed, 0, limit)
		for rows.Next() {
			var (
				c                               claimed
				issue, edition, created, paused sql.NullInt64
				email, name, status             sql.NullString
			)
			if err := rows.Scan(&c.job.ID, &c.priority, &c.job.Kind, &c.job.SubscriberID, &issue, &edition,
				&c.job.MessageID, &c.job.Attempts, &created, &email, &name, &status, &paused, &c.job.InNewsletter); err != nil {
				return err
			}
			c.job.IssueID, c.job.EditionID = issue.Int64, edition.Int64
			c.job.CreatedAt = decTime(created)
			c.job.Email, c.job.Name, c.job.SubscriberStatus = email.String, name.String, status.String
			c.job.PausedUntil = decTime(paused)
			got = append(got, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, translate(err, "claim messages", "message")
	}
	// RETURNING gives rows in no promised order.
	slices.SortFunc(got, func(a, b claimed) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(a.job.ID, b.job.ID))
	})
	jobs := make([]delivery.Job, len(got))
	for i := range got {
		jobs[i] = got[i].job
	}
	return jobs, nil
}

// Settlement statements. Each changes a row only while owner still holds
// its lease; a row whose lease expired and was claimed by another worker is
// left to that worker.
const (
	// settleSentSQL settles a run of sent messages in one statement: ?2 is
	// a JSON array of their ids. Each row is still a primary-key lookup;
	// one statement for the run saves the per-row round through
	// database/sql, cgo and the statement's setup, which cost more than
	// the row's own update. NOT INDEXED keeps the planner on the primary
	// key: with statistics saying messages_leased is empty, it would
	// otherwise walk that index and scan the array for every row.
	settleSentSQL = `UPDATE messages NOT INDEXED
        SET status = 'sent', sent_at = ?1, updated_at = ?1, last_error = '', lease_owner = NULL, lease_until = NULL
        WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'sending' AND lease_owner = ?3`
	settleRetrySQL = `UPDATE messages
        SET status = 'queued', next_attempt_at = ?4, last_error = ?5, updated_at = ?1,
            lease_owner = NULL, lease_until = NULL
        WHERE id = ?2 AND status = 'sending' AND lease_owner = ?3`
	// A release hands back a claimed message that was never attempted: the
	// claim's attempt is given back and the last error is kept.
	settleReleaseSQL = `UPDATE messages
        SET status = 'queued', next_attempt_at = ?4, attempts = MAX(attempts - 1, 0), updated_at = ?1,
            lease_owner = NULL, lease_until = NULL
        WHERE id = ?2 AND status = 'sending' AND lease_owner = ?3`
	settleFinalSQL = `UPDATE messages
        SET status = ?4, last_error = ?5, updated_at = ?1, lease_owner = NULL, lease_until = NULL
        WHERE id = ?2 AND status = 'sending' AND lease_owner = ?3`
	settleBouncedSQL = `UPDATE messages
        SET status = 'bounced', last_error = ?4, updated_at = ?1, lease_owner = NULL, lease_until = NULL
        WHERE id = ?2 AND status = 'sending' AND lease_owner = ?3
        RETURNING subscriber_id`
	// A complaint is the stronger signal; a bounce does not overwrite it.
	suppressSQL = `UPDATE subscribers SET status = 'bounced', updated_at = ?1
        WHERE id = ?2 AND status NOT IN ('bounced', 'complained')`
	bounceEventSQL = `INSERT INTO events (subscriber_id, at, kind, detail) VALUES (?, ?, ?, ?)`
)

// writerStmt returns q prepared on the writer connection, preparing it
// the first time. The outbox's claims and settles run thousands of times a
// minute while an issue goes out, and preparing their statements anew in
// each transaction cost more than running them. It must be called outside
// a write transaction: the writer has one connection, which the
// transaction holds, so preparing there would wait for itself.
func (db *DB) writerStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := db.writerStmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.writer.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := db.writerStmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// settleStmts hands out the settlement statements for one transaction,
// bound to it from the writer's prepared statements (prepared beforehand).
type settleStmts struct {
	ctx      context.Context
	tx       *sql.Tx
	prepared map[string]*sql.Stmt // on the writer
	byQ      map[string]*sql.Stmt // bound to tx
}

func (s *settleStmts) get(q string) (*sql.Stmt, error) {
	if st, ok := s.byQ[q]; ok {
		return st, nil
	}
	prepared, ok := s.prepared[q]
	if !ok {
		return nil, fmt.Errorf("statement not prepared: %.40s", q)
	}
	st := s.tx.StmtContext(s.ctx, prepared)
	s.byQ[q] = st
	return st, nil
}

func (s *settleStmts) close() {
	for _, st := range s.byQ {
		st.Close()
	}
}

// settleQueries returns the statements settling results needs.
func settleQueries(results []delivery.Result) []string {
	var qs []string
	add := func(q ...string) {
		for _, q := range q {
			if !slices.Contains(qs, q) {
				qs = append(qs, q)
			}
		}
	}
	for _, r := range results {
		switch r.Outcome {
		case delivery.OutcomeSent:
			add(settleSentSQL)
		case delivery.OutcomeRetry:
			add(settleRetrySQL)
		case delivery.OutcomeRelease:
			add(settleReleaseSQL)
		case delivery.OutcomeFailed, delivery.OutcomeCancelled:
			add(settleFinalSQL)
		case delivery.OutcomeBounced:
			add(settleBouncedSQL, suppressSQL, bounceEventSQL)
		}
	}
	return qs
}

// SettleMessages records the results in one transaction. Only rows still
// leased by owner change; others are skipped silently. OutcomeBounced also
// sets the subscriber's status to bounced (unless they complained) and logs
// a status_change event. EINVALID for an unknown outcome, and then nothing
// is written. Sent messages whose results follow one another share one
// statement and one sent time, at most sentSpan later than their own.
func (db *DB) SettleMessages(ctx context.Context, owner string, results []delivery.Result) error {
	if len(results) == 0 {
		return nil
	}
	prepared := make(map[string]*sql.Stmt, 4)
	for _, q := range settleQueries(results) {
		st, err := db.writerStmt(ctx, q)
		if err != nil {
			return translate(err, "settle messages", "message")
		}
		prepared[q] = st
	}
	err := db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		stmts := &settleStmts{ctx: ctx, tx: t, prepared: prepared, byQ: make(map[string]*sql.Stmt, 4)}
		defer stmts.close()
		var run sentRun
		for _, r := range results {
			if r.Outcome == delivery.OutcomeSent && run.takes(r) {
				continue
			}
			if err := run.flush(stmts, owner); err != nil {
				return err
			}
			if r.Outcome == delivery.OutcomeSent {
				run.takes(r)
				continue
			}
			if err := settleOne(stmts, owner, r); err != nil {
				return fmt.Errorf("message %d: %w", r.ID, err)
			}
		}
		return run.flush(stmts, owner)
	})
	return translate(err, "settle messages", "message")
}

// sentSpan is how far apart the sent times of messages settled in one
// statement may be: they share one sent_at, the latest of the run's, so
// each is recorded at most sentSpan late.
const sentSpan = 10 * time.Millisecond

// sentRun gathers consecutive sent results for one settleSentSQL.
type sentRun struct {
	ids              []byte // a JSON array of the ids, not yet closed; empty for an empty run
	earliest, latest time.Time
}

// takes adds r to the run unless the run's sent times would then span
// more than sentSpan.
func (run *sentRun) takes(r delivery.Result) bool {
	if len(run.ids) == 0 {
		run.ids = append(run.ids, '[')
		run.earliest, run.latest = r.At, r.At
	} else {
		lo, hi := run.earliest, run.latest
		if r.At.Before(lo) {
			lo = r.At
		}
		if r.At.After(hi) {
			hi = r.At
		}
		if hi.Sub(lo) > sentSpan {
			return false
		}
		run.ids = append(run.ids, ',')
		run.earliest, run.latest = lo, hi
	}
	run.ids = strconv.AppendInt(run.ids, r.ID, 10)
	return true
}

// flush settles the run's messages as sent, and empties it.
func (run *sentRun) flush(stmts *settleStmts, owner string) error {
	if len(run.ids) == 0 {
		return nil
	}
	st, err := stmts.get(settleSentSQL)
	if err != nil {
		return err
	}
	run.ids = append(run.ids, ']')
	_, err = st.ExecContext(stmts.ctx, encTimeNN(run.latest), string(run.ids), owner)
	run.ids = run.ids[:0]
	if err != nil {
		return fmt.Errorf("sent messages: %w", err)
	}
	return nil
}

func settleOne(stmts *settleStmts, owner string, r delivery.Result) error {
	at := encTimeNN(r.At)
	reason := truncate(r.Error, maxLastError)
	var (
		st  *sql.Stmt
		err error
	)
	switch r.Outcome {
	case delivery.OutcomeRetry:
		if st, err = stmts.get(settleRetrySQL); err == nil {
			_, err = st.ExecContext(stmts.ctx, at, r.ID, owner, encTimeNN(r.NextAttemptAt), reason)
		}
	case delivery.OutcomeRelease:
		if st, err = stmts.get(settleReleaseSQL); err == nil {
			_, err = st.ExecContext(stmts.ctx, at, r.ID, owner, encTimeNN(r.NextAttemptAt))
		}
	case delivery.OutcomeFailed, delivery.OutcomeCancelled:
		if st, err = stmts.get(settleFinalSQL); err == nil {
			_, err = st.ExecContext(stmts.ctx, at, r.ID, owner, string(r.Outcome), reason)
		}
	case delivery.OutcomeBounced:
		err = settleBounced(stmts, owner, r, at, reason)
	default:
		return herald.Errorf(herald.EINVALID, "Unknown delivery outcome %q.", r.Outcome)
	}
	return err
}

func settleBounced(stmts *settleStmts, owner string, r delivery.Result, at int64, reason string) error {
	st, err := stmts.get(settleBouncedSQL)
	if err != nil {
		return err
	}
	var subscriberID int64
	err = st.QueryRowContext(stmts.ctx, at, r.ID, owner, reason).Scan(&subscriberID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // no longer ours
	} else if err != nil {
		return err
	}
	if st, err = stmts.get(suppressSQL); err != nil {
		return err
	}
	res, err := st.ExecContext(stmts.ctx, at, subscriberID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	if st, err = stmts.get(bounceEventSQL); err != nil {
		return err
	}
	_, err = st.ExecContext(stmts.ctx, subscriberID, at, subscribers.EventStatusChange,
		"bounced: "+truncate(r.Error, maxEventDetail))
	return err
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
	rows, err := db.reader.QueryContext(ctx, `SELECT status, count(*) FROM messages GROUP BY status`)
	if err != nil {
		return nil, translate(err, "count messages", "message")
	}
	defer rows.Close()
	counts := make(map[string]int)
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, translate(err, "count messages", "message")
		}
		counts[status] = n
	}
	if err := rows.Err(); err != nil {
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
	// A JSON array of hex strings: one parameter whatever the count.
	arg := make([]byte, 0, len(hashes)*(2*32+3)+2)
	arg = append(arg, '[')
	for i, h := range hashes {
		if i > 0 {
			arg = append(arg, ',')
		}
		arg = append(arg, '"')
		arg = hex.AppendEncode(arg, h)
		arg = append(arg, '"')
	}
	arg = append(arg, ']')
	rows, err := db.reader.QueryContext(ctx,
		`SELECT hash FROM suppressions WHERE hash IN (SELECT unhex(value) FROM json_each(?))`, string(arg))
	if err != nil {
		return nil, translate(err, "find suppressed addresses", "suppression")
	}
	defer rows.Close()
	var found [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, translate(err, "find suppressed addresses", "suppression")
		}
		found = append(found, h)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find suppressed addresses", "suppression")
	}
	return found, nil
}
