package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"herald/adminauth"
)

var _ adminauth.Store = (*DB)(nil)

// CreateAdminSession inserts s; ECONFLICT for a duplicate hash.
func (db *DB) CreateAdminSession(ctx context.Context, s *adminauth.Session) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO admin_sessions (id_hash, via, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		s.IDHash, s.Via, s.CreatedAt, s.ExpiresAt)
	return translate(err, "create admin session", "session")
}

// FindAdminSession returns the session with that hash, or ENOTFOUND.
func (db *DB) FindAdminSession(ctx context.Context, idHash []byte) (*adminauth.Session, error) {
	var (
		s                adminauth.Session
		created, expires pgtype.Timestamptz
	)
	err := db.pool.QueryRow(ctx, `SELECT id_hash, via, created_at, expires_at FROM admin_sessions WHERE id_hash = $1`, idHash).
		Scan(&s.IDHash, &s.Via, &created, &expires)
	if err != nil {
		return nil, translate(err, "find admin session", "session")
	}
	s.CreatedAt, s.ExpiresAt = decTime(created), decTime(expires)
	return &s, nil
}

// DeleteAdminSession deletes the session with that hash, if any.
func (db *DB) DeleteAdminSession(ctx context.Context, idHash []byte) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, idHash)
	return translate(err, "delete admin session", "session")
}

// DeleteExpiredAdminSessions deletes the sessions expired at now.
func (db *DB) DeleteExpiredAdminSessions(ctx context.Context, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM admin_sessions WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, translate(err, "delete expired admin sessions", "session")
	}
	return int(tag.RowsAffected()), nil
}

// Setting returns the named setting, or ENOTFOUND.
func (db *DB) Setting(ctx context.Context, name string) (string, error) {
	var v string
	if err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v); err != nil {
		return "", translate(err, "read setting", "setting")
	}
	return v, nil
}

// SetSetting creates or replaces the named setting.
func (db *DB) SetSetting(ctx context.Context, name, value string, at time.Time) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, name, value, at)
	return translate(err, "save setting", "setting")
}
