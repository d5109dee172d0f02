package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"herald/adminauth"
)

var _ adminauth.Store = (*DB)(nil)

// CreateAdminSession inserts s; ECONFLICT for a duplicate hash.
func (db *DB) CreateAdminSession(ctx context.Context, s *adminauth.Session) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, via, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			s.IDHash, s.Via, encTimeNN(s.CreatedAt), encTimeNN(s.ExpiresAt))
		return translate(err, "create admin session", "session")
	})
}

// FindAdminSession returns the session with that hash, or ENOTFOUND.
func (db *DB) FindAdminSession(ctx context.Context, idHash []byte) (*adminauth.Session, error) {
	var (
		s                adminauth.Session
		created, expires sql.NullInt64
	)
	err := db.reader.QueryRowContext(ctx, `SELECT id_hash, via, created_at, expires_at FROM admin_sessions WHERE id_hash = ?`, idHash).
		Scan(&s.IDHash, &s.Via, &created, &expires)
	if err != nil {
		return nil, translate(err, "find admin session", "session")
	}
	s.CreatedAt, s.ExpiresAt = decTime(created), decTime(expires)
	return &s, nil
}

// DeleteAdminSession deletes the session with that hash, if any.
func (db *DB) DeleteAdminSession(ctx context.Context, idHash []byte) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = ?`, idHash)
		return translate(err, "delete admin session", "session")
	})
}

// DeleteExpiredAdminSessions deletes the sessions expired at now.
func (db *DB) DeleteExpiredAdminSessions(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE expires_at <= ?`, encTimeNN(now))
		if err != nil {
			return translate(err, "delete expired admin sessions", "session")
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("delete expired admin sessions: %w", err)
		}
		return nil
	})
	return int(n), err
}

// Setting returns the named setting, or ENOTFOUND.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if err != nil {
		return "", translate(err, "read setting", "setting")
	}
	return v, nil
}

// SetSetting creates or replaces the named setting.
func (db *DB) SetSetting(ctx context.Context, name, value string, at time.Time) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			name, value, encTimeNN(at))
		return translate(err, "save setting", "setting")
	})
}
