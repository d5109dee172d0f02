package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald/apitokens"
)

var _ apitokens.Store = (*DB)(nil)

// apiTokenColumns lists what scanAPIToken reads.
const apiTokenColumns = `id, name, hash, scope, created_at, last_used_at, revoked_at`

func scanAPIToken(row pgx.Row) (*apitokens.Token, error) {
	var (
		t                      apitokens.Token
		scope                  string
		created, used, revoked pgtype.Timestamptz
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Hash, &scope, &created, &used, &revoked); err != nil {
		return nil, err
	}
	t.Scope = apitokens.Scope(scope)
	t.CreatedAt = decTime(created)
	t.LastUsedAt = decTime(used)
	t.RevokedAt = decTime(revoked)
	return &t, nil
}

// CreateAPIToken inserts t and sets t.ID; ECONFLICT when a token of that
// name or hash exists.
func (db *DB) CreateAPIToken(ctx context.Context, t *apitokens.Token) error {
	err := db.pool.QueryRow(ctx, `INSERT INTO api_tokens (name, hash, scope, created_at, last_used_at, revoked_at)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id`,
		t.Name, t.Hash, string(t.Scope), t.CreatedAt, encTime(t.LastUsedAt), encTime(t.RevokedAt)).Scan(&t.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return conflict("create api token", "token")
	}
	return translate(err, "create api token", "token")
}

// FindAPITokenByHash returns the token with that hash, or ENOTFOUND.
func (db *DB) FindAPITokenByHash(ctx context.Context, hash []byte) (*apitokens.Token, error) {
	t, err := scanAPIToken(db.pool.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = $1`, hash))
	if err != nil {
		return nil, translate(err, "find api token", "token")
	}
	return t, nil
}

// FindAPITokenByID returns the token with that id, or ENOTFOUND.
func (db *DB) FindAPITokenByID(ctx context.Context, id int64) (*apitokens.Token, error) {
	t, err := scanAPIToken(db.pool.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return nil, translate(err, "find api token", "token")
	}
	return t, nil
}

// FindAPITokens returns every token, revoked ones included, by id.
func (db *DB) FindAPITokens(ctx context.Context) ([]*apitokens.Token, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, translate(err, "find api tokens", "token")
	}
	defer rows.Close()
	var out []*apitokens.Token
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, translate(err, "find api tokens", "token")
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "find api tokens", "token")
	}
	return out, nil
}

// RevokeAPIToken sets the revocation time of the named token unless it is
// revoked already, and returns the token; ENOTFOUND for an unknown name.
func (db *DB) RevokeAPIToken(ctx context.Context, name string, at time.Time) (*apitokens.Token, error) {
	// The statement's snapshot would show the row as it was before the
	// update: the UPDATE's own RETURNING, else the unchanged row.
	t, err := scanAPIToken(db.pool.QueryRow(ctx, `WITH u AS (
            UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL
            RETURNING `+apiTokenColumns+`)
        SELECT `+apiTokenColumns+` FROM u
        UNION ALL
        SELECT `+apiTokenColumns+` FROM api_tokens WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM u)`, name, encTime(at)))
	if err != nil {
		return nil, translate(err, "revoke api token", "token")
	}
	return t, nil
}

// TouchAPIToken sets a token's LastUsedAt; ENOTFOUND for an unknown id.
func (db *DB) TouchAPIToken(ctx context.Context, id int64, at time.Time) error {
	op := fmt.Sprintf("touch api token %d", id)
	tag, err := db.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = $2 WHERE id = $1`, id, encTime(at))
	if err != nil {
		return translate(err, op, "token")
	}
	if tag.RowsAffected() == 0 {
		return notFound(op, "token")
	}
	return nil
}
