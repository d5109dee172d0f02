package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"herald/apitokens"
)

var _ apitokens.Store = (*DB)(nil)

const apiTokenColumns = `id, name, hash, scope, created_at, last_used_at, revoked_at`

func scanAPIToken(row scanner) (*apitokens.Token, error) {
	var (
		t                      apitokens.Token
		scope                  string
		created, used, revoked sql.NullInt64
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
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, hash, scope, created_at, last_used_at, revoked_at)
            VALUES (?, ?, ?, ?, ?, ?)`,
			t.Name, t.Hash, string(t.Scope), encTimeNN(t.CreatedAt), encTime(t.LastUsedAt), encTime(t.RevokedAt))
		if err != nil {
			return translate(err, "create api token", "token")
		}
		if t.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("create api token: %w", err)
		}
		return nil
	})
}

// FindAPITokenByHash returns the token with that hash, or ENOTFOUND.
func (db *DB) FindAPITokenByHash(ctx context.Context, hash []byte) (*apitokens.Token, error) {
	t, err := scanAPIToken(db.reader.QueryRowContext(ctx,
		`SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = ?`, hash))
	if err != nil {
		return nil, translate(err, "find api token", "token")
	}
	return t, nil
}

// FindAPITokenByID returns the token with that id, or ENOTFOUND.
func (db *DB) FindAPITokenByID(ctx context.Context, id int64) (*apitokens.Token, error) {
	t, err := scanAPIToken(db.reader.QueryRowContext(ctx,
		`SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = ?`, id))
	if err != nil {
		return nil, translate(err, "find api token", "token")
	}
	return t, nil
}

// FindAPITokens returns every token, revoked ones included, by id.
func (db *DB) FindAPITokens(ctx context.Context) ([]*apitokens.Token, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY id`)
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
	var t *apitokens.Token
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`, encTime(at), name); err != nil {
			return err
		}
		var err error
		t, err = scanAPIToken(tx.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE name = ?`, name))
		return err
	})
	if err != nil {
		return nil, translate(err, "revoke api token", "token")
	}
	return t, nil
}

// TouchAPIToken sets a token's LastUsedAt; ENOTFOUND for an unknown id.
func (db *DB) TouchAPIToken(ctx context.Context, id int64, at time.Time) error {
	op := fmt.Sprintf("touch api token %d", id)
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, encTime(at), id)
		if err != nil {
			return translate(err, op, "token")
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		} else if n == 0 {
			return notFound(op, "token")
		}
		return nil
	})
}
