package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"herald"
	"herald/subscribers"
)

const (
	// DefaultLimit is the page size of FindSubscribers when the filter sets none.
	DefaultLimit = 50
	// MaxLimit caps the page size of a store read. It is above the admin
	// API's largest page (500) because the API asks for one row more than
	// it shows, to know whether another page follows.
	MaxLimit = 1000
)

// subscriberColumns lists what scanSubscriber reads, newsletters folded into
// one space-separated, sorted column (newsletter ids contain no spaces).
const subscriberColumns = `s.id, s.email, s.name, s.status, s.created_at, s.updated_at,
    s.confirmed_at, s.confirm_sent_at, s.paused_until,
    (SELECT group_concat(n.newsletter_id, ' ' ORDER BY n.newsletter_id)
       FROM subscriber_newsletters n WHERE n.subscriber_id = s.id)`

type scanner interface {
	Scan(dest ...any) error
}

func scanSubscriber(row scanner) (*subscribers.Subscriber, error) {
	var (
		s                                                subscribers.Subscriber
		status                                           string
		created, updated, confirmed, confirmSent, paused sql.NullInt64
		newsletters                                      sql.NullString
	)
	if err := row.Scan(&s.ID, &s.Email, &s.Name, &status, &created, &updated,
		&confirmed, &confirmSent, &paused, &newsletters); err != nil {
		return nil, err
	}
	s.Status = subscribers.Status(status)
	s.CreatedAt = decTime(created)
	s.UpdatedAt = decTime(updated)
	s.ConfirmedAt = decTime(confirmed)
	s.ConfirmSentAt = decTime(confirmSent)
	s.PausedUntil = decTime(paused)
	s.Newsletters = splitList(newsletters.String)
	return &s, nil
}

// splitList splits a space-separated list; nil when empty.
func splitList(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	return f
}

// Update runs fn in one write transaction, committed when fn returns nil and
// rolled back otherwise; fn's error is returned as is. fn may read through
// db but must not call db's write methods: there is one writer connection,
// and fn holds it.
func (db *DB) Update(ctx context.Context, fn func(subscribers.Tx) error) error {
	return db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		return fn(&tx{ctx: ctx, tx: t})
	})
}

// FindSubscriberByID returns one subscriber, or ENOTFOUND.
func (db *DB) FindSubscriberByID(ctx context.Context, id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(db.reader.QueryRowContext(ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = ?`, id))
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

// FindSubscribers returns up to f.Limit (default DefaultLimit, at most
// MaxLimit) subscribers matching f, ordered by id. Query matches a prefix of
// the address or the name, ignoring ASCII case. EINVALID for an unknown
// status.
func (db *DB) FindSubscribers(ctx context.Context, f subscribers.Filter) ([]*subscribers.Subscriber, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, herald.Errorf(herald.EINVALID, "Unknown status %q.", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	var q strings.Builder
	q.WriteString(`SELECT ` + subscriberColumns + ` FROM subscribers s WHERE s.id > ?`)
	args := []any{f.AfterID}
	if f.Query != "" {
		// Both columns are COLLATE NOCASE and indexed, so SQLite turns each
		// LIKE prefix into an index range.
		q.WriteString(` AND (s.email LIKE ? ESCAPE '\' OR s.name LIKE ? ESCAPE '\')`)
		p := likePrefix(f.Query)
		args = append(args, p, p)
	}
	if f.Status != "" {
		q.WriteString(` AND s.status = ?`)
		args = append(args, string(f.Status))
	}
	if f.Newsletter != "" {
		q.WriteString(` AND EXISTS (SELECT 1 FROM subscriber_newsletters n
            WHERE n.subscriber_id = s.id AND n.newsletter_id = ?)`)
		args = append(args, f.Newsletter)
	}
	q.WriteString(` ORDER BY s.id LIMIT ?`)
	args = append(args, limit)

	rows, err := db.reader.QueryContext(ctx, q.String(), args...)
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
// returns it unwrapped. The rows come from one read snapshot.
func (db *DB) EachSubscriber(ctx context.Context, fn func(*subscribers.Subscriber) error) error {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+subscriberColumns+` FROM subscribers s ORDER BY s.id`)
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
	rows, err := db.reader.QueryContext(ctx,
		`SELECT id, subscriber_id, at, kind, detail FROM events WHERE subscriber_id = ? ORDER BY id`, subscriberID)
	if err != nil {
		return nil, translate(err, "subscriber events", "event")
	}
	defer rows.Close()
	var out []subscribers.Event
	for rows.Next() {
		var e subscribers.Event
		var at sql.NullInt64
		if err := rows.Scan(&e.ID, &e.SubscriberID, &at, &e.Kind, &e.Detail); err != nil {
			return nil, translate(err, "subscriber events", "event")
		}
		e.At = decTime(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "subscriber events", "event")
	}
	return out, nil
}

// Secret returns the named secret, creating it with gen on first use. Two
// callers racing on the first use get the same value.
func (db *DB) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var v []byte
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, translate(err, "read secret", "secret")
	}
	err = db.write(ctx, func(ctx context.Context, t *sql.Tx) error {
		err := t.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if v, err = gen(); err != nil {
			return fmt.Errorf("generate secret %s: %w", name, err)
		}
		_, err = t.ExecContext(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?)`, name, v)
		return err
	})
	if err != nil {
		return nil, translate(err, "secret", "secret")
	}
	return v, nil
}

// tx implements subscribers.Tx on a write transaction.
type tx struct {
	ctx context.Context
	tx  *sql.Tx
}

// SubscriberByEmail returns the subscriber with that address, or ENOTFOUND.
func (t *tx) SubscriberByEmail(email string) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRowContext(t.ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.email = ?`, email))
	if err != nil {
		return nil, translate(err, "subscriber by email", "subscriber")
	}
	return s, nil
}

// SubscriberByID returns the subscriber with that id, or ENOTFOUND.
func (t *tx) SubscriberByID(id int64) (*subscribers.Subscriber, error) {
	s, err := scanSubscriber(t.tx.QueryRowContext(t.ctx,
		`SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = ?`, id))
	if err != nil {
		return nil, translate(err, fmt.Sprintf("subscriber %d", id), "subscriber")
	}
	return s, nil
}

// CreateSubscriber inserts s with its newsletters and sets s.ID. ECONFLICT
// when the address exists; EINVALID for an unknown status.
func (t *tx) CreateSubscriber(s *subscribers.Subscriber) error {
	if !s.Status.Valid() {
		return herald.Errorf(herald.EINVALID, "Unknown status %q.", s.Status)
	}
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO subscribers
        (email, name, status, created_at, updated_at, confirmed_at, confirm_sent_at, paused_until)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		s.Email, s.Name, string(s.Status), encTimeNN(s.CreatedAt), encTimeNN(s.UpdatedAt),
		encTime(s.ConfirmedAt), encTime(s.ConfirmSentAt), encTime(s.PausedUntil))
	if err != nil {
		return translate(err, "create subscriber", "subscriber")
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create subscriber: %w", err)
	}
	if err := t.addNewsletters(id, s.Newsletters); err != nil {
		return fmt.Errorf("create subscriber: %w", err)
	}
	s.ID = id
	return nil
}

func (t *tx) addNewsletters(id int64, newsletters []string) error {
	for _, n := range newsletters {
		if n == "" {
			continue
		}
		if _, err := t.tx.ExecContext(t.ctx,
			`INSERT OR IGNORE INTO subscriber_newsletters (subscriber_id, newsletter_id) VALUES (?, ?)`,
			id, n); err != nil {
			return translate(err, "add newsletter", "newsletter choice")
		}
	}
	return nil
}

// UpdateSubscriber writes s's name, status, newsletters, ConfirmedAt,
// ConfirmSentAt, PausedUntil and UpdatedAt. ENOTFOUND when s.ID does not
// exist.
func (t *tx) UpdateSubscriber(s *subscribers.Subscriber) error {
	if !s.Status.Valid() {
		return herald.Errorf(herald.EINVALID, "Unknown status %q.", s.Status)
	}
	op := fmt.Sprintf("update subscriber %d", s.ID)
	res, err := t.tx.ExecContext(t.ctx, `UPDATE subscribers
        SET name = ?, status = ?, updated_at = ?, confirmed_at = ?, confirm_sent_at = ?, paused_until = ?
        WHERE id = ?`,
		s.Name, string(s.Status), encTimeNN(s.UpdatedAt), encTime(s.ConfirmedAt), encTime(s.ConfirmSentAt),
		encTime(s.PausedUntil), s.ID)
	if err != nil {
		return translate(err, op, "subscriber")
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return notFound(op, "subscriber")
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM subscriber_newsletters WHERE subscriber_id = ?`, s.ID); err != nil {
		return translate(err, op, "subscriber")
	}
	if err := t.addNewsletters(s.ID, s.Newsletters); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// AddConsent inserts c and sets c.ID.
func (t *tx) AddConsent(c *subscribers.Consent) error {
	res, err := t.tx.ExecContext(t.ctx, `INSERT INTO consents
        (subscriber_id, created_at, ip, user_agent, source, text_version, newsletters, confirmed_at, confirm_ip)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.SubscriberID, encTimeNN(c.CreatedAt), c.IP, c.UserAgent, c.Source, c.TextVersion,
		strings.Join(c.Newsletters, " "), encTime(c.ConfirmedAt), c.ConfirmIP)
	if err != nil {
		return translate(err, "add consent", "consent")
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("add consent: %w", err)
	}
	c.ID = id
	return nil
}

// LatestConsent returns the newest consent of a subscriber, or ENOTFOUND.
func (t *tx) LatestConsent(subscriberID int64) (*subscribers.Consent, error) {
	var (
		c                  subscribers.Consent
		created, confirmed sql.NullInt64
		newsletters        string
	)
	err := t.tx.QueryRowContext(t.ctx, `SELECT id, subscriber_id, created_at, ip, user_agent, source,
            text_version, newsletters, confirmed_at, confirm_ip
        FROM consents WHERE subscriber_id = ? ORDER BY id DESC LIMIT 1`, subscriberID).
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
	res, err := t.tx.ExecContext(t.ctx,
		`UPDATE consents SET confirmed_at = ?, confirm_ip = ? WHERE id = ?`, encTime(at), ip, consentID)
	if err != nil {
		return translate(err, op, "consent")
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return notFound(op, "consent")
	}
	return nil
}

// AddEvent appends to the subscriber's activity log.
func (t *tx) AddEvent(e subscribers.Event) error {
	_, err := t.tx.ExecContext(t.ctx,
		`INSERT INTO events (subscriber_id, at, kind, detail) VALUES (?, ?, ?, ?)`,
		e.SubscriberID, encTimeNN(e.At), e.Kind, e.Detail)
	return translate(err, "add event", "event")
}

// CreateToken stores a token by its hash. ECONFLICT when the hash exists.
func (t *tx) CreateToken(tok subscribers.Token) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO tokens
        (hash, subscriber_id, purpose, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?)`,
		tok.Hash, tok.SubscriberID, string(tok.Purpose), encTimeNN(tok.CreatedAt),
		encTimeNN(tok.ExpiresAt), encTime(tok.UsedAt))
	return translate(err, "create token", "token")
}

// TokenByHash returns the token with that hash, or ENOTFOUND.
func (t *tx) TokenByHash(hash []byte) (*subscribers.Token, error) {
	tok, err := scanToken(t.tx.QueryRowContext(t.ctx, tokenByHash, hash))
	if err != nil {
		return nil, translate(err, "token by hash", "token")
	}
	return tok, nil
}

// FindToken returns the token with that hash, or ENOTFOUND, read on a read
// connection: checking a link (the GET of a confirmation link, which mail
// scanners fetch ahead of the reader) never waits for the writer.
func (db *DB) FindToken(ctx context.Context, hash []byte) (*subscribers.Token, error) {
	tok, err := scanToken(db.reader.QueryRowContext(ctx, tokenByHash, hash))
	if err != nil {
		return nil, translate(err, "find token", "token")
	}
	return tok, nil
}

const tokenByHash = `SELECT hash, subscriber_id, purpose, created_at, expires_at, used_at
    FROM tokens WHERE hash = ?`

func scanToken(row scanner) (*subscribers.Token, error) {
	var (
		tok                    subscribers.Token
		purpose                string
		created, expires, used sql.NullInt64
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
	res, err := t.tx.ExecContext(t.ctx, `UPDATE tokens SET used_at = ? WHERE hash = ?`, encTime(at), hash)
	if err != nil {
		return translate(err, "use token", "token")
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("use token: %w", err)
	} else if n == 0 {
		return notFound("use token", "token")
	}
	return nil
}

// Enqueue writes an outbox row, due at its CreatedAt. ECONFLICT when its
// MessageID exists.
func (t *tx) Enqueue(m subscribers.OutboxMessage) error {
	created := encTimeNN(m.CreatedAt)
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO messages
        (kind, subscriber_id, message_id, priority, status, attempts, next_attempt_at, created_at, updated_at)
        VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)`,
		m.Kind, m.SubscriberID, m.MessageID, m.Priority, created, created, created)
	return translate(err, "enqueue message", "message")
}
