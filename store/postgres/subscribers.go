package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald"
	"herald/subscribers"
)

const (
	// DefaultLimit is the page size of FindSubscribers and FindArticles
	// when the filter sets none.
	DefaultLimit = 50
	// MaxLimit caps the page size of FindSubscribers and FindArticles.
	MaxLimit = 500
)

// subscriberColumns lists what scanSubscriber reads, newsletters folded into
// one sorted array (newsletter_id is COLLATE "C": byte order).
const subscriberColumns = `s.id, s.email, s.name, s.status, s.created_at, s.updated_at,
    s.confirmed_at, s.confirm_sent_at, s.paused_until,
    (SELECT array_agg(n.newsletter_id ORDER BY n.newsletter_id)
       FROM subscriber_newsletters n WHERE n.subscriber_id = s.id)`

func scanSubscriber(row pgx.Row) (*subscribers.Subscriber, error) {
	var (
		s                                                subscribers.Subscriber
		status                                           string
		created, updated, confirmed, confirmSent, paused pgtype.Timestamptz
	)
	if err := row.Scan(&s.ID, &s.Email, &s.Name, &status, &created, &updated,
		&confirmed, &confirmSent, &paused, &s.Newsletters); err != nil {
		return nil, err
	}
	s.Status = subscribers.Status(status)
	s.CreatedAt = decTime(created)
	s.UpdatedAt = decTime(updated)
	s.ConfirmedAt = decTime(confirmed)
	s.ConfirmSentAt = decTime(confirmSent)
	s.PausedUntil = decTime(paused)
	if len(s.Newsletters) == 0 {
		s.Newsletters = nil
	}
	return &s, nil
}

// uniqueIDs returns the non-empty strings of list without repeats, in order.
// It never returns nil: pgx sends a nil slice as NULL, and NOT x = ANY (NULL)
// is NULL, which would keep every dropped choice.
func uniqueIDs(list []string) []string {
	out := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, v := range list {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// splitList splits a space-separated list; nil when empty.
func splitList(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	return f
}

// Update runs fn in one read-write transaction (READ COMMITTED), committed
// when fn returns nil and rolled back otherwise; fn's error is returned as
// is. Once a Tx method has failed with anything but ENOTFOUND or ECONFLICT,
// PostgreSQL refuses further statements in the transaction: fn should
// return the error.
func (db *DB) Update(ctx context.Context, fn func(subscribers.Tx) error) error {
	return db.inTx(ctx, func(t pgx.Tx) error {
		return fn(&tx{ctx: ctx, tx: t})
	})
}

// FindSubscriberByID returns one subscriber, or ENOTFOUND.
func (db *DB) FindSubscriberByID(ctx context.Context, id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(db.pool.QueryRow(ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = $1`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("find subscriber %d", id), "subscriber")
	}
	return s, nil
}

// likePrefix returns a LIKE pattern (with ESCAPE '\') matching strings that
// start with p literally.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// args collects positional query arguments.
type args []any

// add appends v and returns its placeholder ($n).
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// FindSubscribers returns up to f.Limit (default DefaultLimit, at most
// MaxLimit) subscribers matching f, ordered by id. Query matches a prefix of
// the address or the name, ignoring case. EINVALID for an unknown status.
func (db *DB) FindSubscribers(ctx context.Context, f subscribers.Filter) ([]*subscribers.Subscriber, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, herald.Errorf(herald.EINVALID, "Unknown status %q.", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	var a args
	var q strings.Builder
	q.WriteString(`SELECT ` + subscriberColumns + ` FROM subscribers s WHERE s.id > ` + a.add(f.AfterID))
	if f.Query != "" {
		// Both sides go through the server's lower(), which the
		// text_pattern_ops indexes on lower(email) and lower(name) serve.
		p := a.add(likePrefix(f.Query))
		q.WriteString(` AND (lower(s.email) LIKE lower(` + p + `) OR lower(s.name) LIKE lower(` + p + `))`)
	}
	if f.Status != "" {
		q.WriteString(` AND s.status = ` + a.add(string(f.Status)))
	}
	if f.Newsletter != "" {
		q.WriteString(` AND EXISTS (SELECT 1 FROM subscriber_newsletters n
            WHERE n.subscriber_id = s.id AND n.newsletter_id = ` + a.add(f.Newsletter) + `)`)
	}
	q.WriteString(` ORDER BY s.id LIMIT ` + a.add(limit))

	rows, err := db.pool.Query(ctx, q.String(), a...)
	if err != nil {
		return nil, translate(err, "find subscribers", "subscriber")
	}
	defer rows.Close()
	var out []*subscribers.Subscriber
	for rows.Next() {
		s, err := scanSubscriber(rows)
		if err != nil {
			return nil, translate(err, "find subscribers", "subscriber")
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find subscribers", "subscriber")
	}
	return out, nil
}

// EachSubscriber streams every subscriber, ordered by id, calling fn for
// each, in constant memory. It stops at the first error fn returns and
// returns it unwrapped. The rows come from one statement, so one snapshot;
// the statement holds a pooled connection until the walk ends.
func (db *DB) EachSubscriber(ctx context.Context, fn func(*subscribers.Subscriber) error) error {
	rows, err := db.pool.Query(ctx, `SELECT `+subscriberColumns+` FROM subscribers s ORDER BY s.id`)
	if err != nil {
		return translate(err, "each subscriber", "subscriber")
	}
	defer rows.Close()
	for rows.Next() {
		s, err := scanSubscriber(rows)
		if err != nil {
			return translate(err, "each subscriber", "subscriber")
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err, "each subscriber", "subscriber")
	}
	return nil
}

// SubscriberEvents returns a subscriber's activity log, oldest first (empty
// for an unknown id).
func (db *DB) SubscriberEvents(ctx context.Context, subscriberID int64) ([]subscribers.Event, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT id, subscriber_id, at, kind, detail FROM events WHERE subscriber_id = $1 ORDER BY id`, subscriberID)
	if err != nil {
		return nil, translate(err, "subscriber events", "event")
	}
	var (
		out []subscribers.Event
		e   subscribers.Event
		at  pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail}, func() error {
		e.At = decTime(at)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, translate(err, "subscriber events", "event")
	}
	return out, nil
}

// Secret returns the named secret, creating it with gen on first use. Two
// callers racing on the first use get the same value: the loser's insert is
// skipped and it reads the winner's.
func (db *DB) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	const read = `SELECT value FROM secrets WHERE name = $1`
	var v []byte
	err := db.pool.QueryRow(ctx, read, name).Scan(&v)
	if err == nil {
		return v, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return nil, translate(err, "read secret", "secret")
	}
	fresh, err := gen()
	if err != nil {
		return nil, fmt.Errorf("generate secret %s: %w", name, err)
	}
	err = db.pool.QueryRow(ctx, `WITH ins AS (
            INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value)
        SELECT value FROM ins UNION ALL SELECT value FROM secrets WHERE name = $1 LIMIT 1`, name, fresh).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		// Both arms see the statement's snapshot: when a concurrent
		// insert committed after it began, only a new statement sees it.
		err = db.pool.QueryRow(ctx, read, name).Scan(&v)
	}
	if err != nil {
		return nil, translate(err, "secret", "secret")
	}
	return v, nil
}

// tx implements subscribers.Tx on a transaction.
type tx struct {
	ctx context.Context
	tx  pgx.Tx
}

// SubscriberByEmail returns the subscriber with that address, ignoring
// case, or ENOTFOUND.
func (t *tx) SubscriberByEmail(email string) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRow(t.ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE lower(s.email) = lower($1)`, email))
	if err != nil {
		return nil, translate(err, "subscriber by email", "subscriber")
	}
	return s, nil
}

// SubscriberByID returns the subscriber with that id, or ENOTFOUND.
func (t *tx) SubscriberByID(id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRow(t.ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = $1`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("subscriber %d", id), "subscriber")
	}
	return s, nil
}

// createSubscriberSQL inserts a subscriber and its newsletters in one
// statement. A taken address skips the insert (no row comes back) instead
// of failing, so the transaction stays usable.
const createSubscriberSQL = `WITH s AS (
    INSERT INTO subscribers (email, name, status, created_at, updated_at, confirmed_at, confirm_sent_at, paused_until)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT DO NOTHING
    RETURNING id),
n AS (
    INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id)
    SELECT s.id, x FROM s, unnest($9::text[]) AS x)
SELECT id FROM s`

// CreateSubscriber inserts s with its newsletters and sets s.ID. ECONFLICT
// when the address exists (ignoring case); EINVALID for an unknown status.
func (t *tx) CreateSubscriber(s *subscribers.Subscriber) error {
	if !s.Status.Valid() {
		return herald.Errorf(herald.EINVALID, "Unknown status %q.", s.Status)
	}
	var id int64
	err := t.tx.QueryRow(t.ctx, createSubscriberSQL,
		s.Email, s.Name, string(s.Status), s.CreatedAt, s.UpdatedAt,
		encTime(s.ConfirmedAt), encTime(s.ConfirmSentAt), encTime(s.PausedUntil), uniqueIDs(s.Newsletters)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return conflict("create subscriber", "subscriber")
	} else if err != nil {
		return translate(err, "create subscriber", "subscriber")
	}
	s.ID = id
	return nil
}

// updateSubscriberSQL updates a subscriber and replaces its newsletters in
// one statement: the choices dropped are deleted, the new ones inserted, the
// kept ones left alone.
const updateSubscriberSQL = `WITH s AS (
    UPDATE subscribers
    SET name = $2, status = $3, updated_at = $4, confirmed_at = $5, confirm_sent_at = $6, paused_until = $7
    WHERE id = $1
    RETURNING id),
d AS (
    DELETE FROM subscriber_newsletters n USING s
    WHERE n.subscriber_id = s.id AND NOT n.newsletter_id = ANY ($8::text[])),
i AS (
    INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id)
    SELECT s.id, x FROM s, unnest($8::text[]) AS x
    ON CONFLICT DO NOTHING)
SELECT count(*) FROM s`

// UpdateSubscriber writes s's name, status, newsletters, ConfirmedAt,
// ConfirmSentAt, PausedUntil and UpdatedAt. ENOTFOUND when s.ID does not
// exist.
func (t *tx) UpdateSubscriber(s *subscribers.Subscriber) error {
	if !s.Status.Valid() {
		return herald.Errorf(herald.EINVALID, "Unknown status %q.", s.Status)
	}
	op := fmt.Sprintf("update subscriber %d", s.ID)
	var n int
	err := t.tx.QueryRow(t.ctx, updateSubscriberSQL,
		s.ID, s.Name, string(s.Status), s.UpdatedAt, encTime(s.ConfirmedAt), encTime(s.ConfirmSentAt),
		encTime(s.PausedUntil), uniqueIDs(s.Newsletters)).Scan(&n)
	if err != nil {
		return translate(err, op, "subscriber")
	}
	if n == 0 {
		return notFound(op, "subscriber")
	}
	return nil
}

// AddConsent inserts c and sets c.ID.
func (t *tx) AddConsent(c *subscribers.Consent) error {
	err := t.tx.QueryRow(t.ctx, `INSERT INTO consents
        (subscriber_id, created_at, ip, user_agent, source, text_version, newsletters, confirmed_at, confirm_ip)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		c.SubscriberID, c.CreatedAt, c.IP, c.UserAgent, c.Source, c.TextVersion,
		strings.Join(c.Newsletters, " "), encTime(c.ConfirmedAt), c.ConfirmIP).Scan(&c.ID)
	return translate(err, "add consent", "consent")
}

// LatestConsent returns the newest consent of a subscriber, or ENOTFOUND.
func (t *tx) LatestConsent(subscriberID int64) (*subscribers.Consent, error) {
	var (
		c                  subscribers.Consent
		created, confirmed pgtype.Timestamptz
		newsletters        string
	)
	err := t.tx.QueryRow(t.ctx, `SELECT id, subscriber_id, created_at, ip, user_agent, source,
            text_version, newsletters, confirmed_at, confirm_ip
        FROM consents WHERE subscriber_id = $1 ORDER BY id DESC LIMIT 1`, subscriberID).
		Scan(&c.ID, &c.SubscriberID, &created, &c.IP, &c.UserAgent, &c.Source,
			&c.TextVersion, &newsletters, &confirmed, &c.ConfirmIP)
	if err != nil {
		return nil, translate(err, fmt.Sprintf("latest consent of subscriber %d", subscriberID), "consent")
	}
	c.CreatedAt = decTime(created)
	c.ConfirmedAt = decTime(confirmed)
	c.Newsletters = splitList(newsletters)
	return &c, nil
}

// ConfirmConsent records the confirmation time and IP on a consent, or
// returns ENOTFOUND.
func (t *tx) ConfirmConsent(consentID int64, at time.Time, ip string) error {
	op := fmt.Sprintf("confirm consent %d", consentID)
	tag, err := t.tx.Exec(t.ctx,
		`UPDATE consents SET confirmed_at = $1, confirm_ip = $2 WHERE id = $3`, encTime(at), ip, consentID)
	if err != nil {
		return translate(err, op, "consent")
	}
	if tag.RowsAffected() == 0 {
		return notFound(op, "consent")
	}
	return nil
}

// AddEvent appends to the subscriber's activity log.
func (t *tx) AddEvent(e subscribers.Event) error {
	_, err := t.tx.Exec(t.ctx,
		`INSERT INTO events (subscriber_id, at, kind, detail) VALUES ($1, $2, $3, $4)`,
		e.SubscriberID, e.At, e.Kind, e.Detail)
	return translate(err, "add event", "event")
}

// CreateToken stores a token by its hash. ECONFLICT when the hash exists.
func (t *tx) CreateToken(tok subscribers.Token) error {
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO tokens
        (hash, subscriber_id, purpose, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (hash) DO NOTHING`,
		tok.Hash, tok.SubscriberID, string(tok.Purpose), tok.CreatedAt, tok.ExpiresAt, encTime(tok.UsedAt))
	if err != nil {
		return translate(err, "create token", "token")
	}
	if tag.RowsAffected() == 0 {
		return conflict("create token", "token")
	}
	return nil
}

// TokenByHash returns the token with that hash, or ENOTFOUND.
func (t *tx) TokenByHash(hash []byte) (*subscribers.Token, error) {
	tok, err := scanToken(t.tx.QueryRow(t.ctx, tokenByHash, hash))
	if err != nil {
		return nil, translate(err, "token by hash", "token")
	}
	return tok, nil
}

// FindToken returns the token with that hash, or ENOTFOUND, outside any
// transaction: checking a link (the GET of a confirmation link, which mail
// scanners fetch ahead of the reader) takes no write transaction.
func (db *DB) FindToken(ctx context.Context, hash []byte) (*subscribers.Token, error) {
	tok, err := scanToken(db.pool.QueryRow(ctx, tokenByHash, hash))
	if err != nil {
		return nil, translate(err, "find token", "token")
	}
	return tok, nil
}

const tokenByHash = `SELECT hash, subscriber_id, purpose, created_at, expires_at, used_at
    FROM tokens WHERE hash = $1`

func scanToken(row pgx.Row) (*subscribers.Token, error) {
	var (
		tok                    subscribers.Token
		purpose                string
		created, expires, used pgtype.Timestamptz
	)
	if err := row.Scan(&tok.Hash, &tok.SubscriberID, &purpose, &created, &expires, &used); err != nil {
		return nil, err
	}
	tok.Purpose = subscribers.Purpose(purpose)
	tok.CreatedAt = decTime(created)
	tok.ExpiresAt = decTime(expires)
	tok.UsedAt = decTime(used)
	return &tok, nil
}

// UseToken marks the token used at the given time, or returns ENOTFOUND.
func (t *tx) UseToken(hash []byte, at time.Time) error {
	tag, err := t.tx.Exec(t.ctx, `UPDATE tokens SET used_at = $1 WHERE hash = $2`, encTime(at), hash)
	if err != nil {
		return translate(err, "use token", "token")
	}
	if tag.RowsAffected() == 0 {
		return notFound("use token", "token")
	}
	return nil
}

// Enqueue writes an outbox row, due at its CreatedAt. ECONFLICT when its
// MessageID exists; ENOTFOUND when its subscriber does not.
func (t *tx) Enqueue(m subscribers.OutboxMessage) error {
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO messages
        (kind, subscriber_id, message_id, priority, status, attempts, next_attempt_at, created_at, updated_at)
        VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5, $5)
        ON CONFLICT DO NOTHING`,
		m.Kind, m.SubscriberID, m.MessageID, m.Priority, m.CreatedAt)
	if err != nil {
		return translate(err, "enqueue message", "message")
	}
	if tag.RowsAffected() == 0 {
		return conflict("enqueue message", "message")
	}
	return nil
}

var _ subscribers.Analyzer = (*DB)(nil)

// AnalyzeSubscribers refreshes the planner's statistics of the tables a
// bulk import fills (subscribers.Analyzer), so that the next issue's reader
// pages are planned for the rows that are there now.
func (db *DB) AnalyzeSubscribers(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `ANALYZE subscribers, subscriber_newsletters`); err != nil {
		return translate(err, "analyze subscribers", "subscriber")
	}
	return nil
}
