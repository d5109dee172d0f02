package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"herald/store/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// shipped returns the embedded migrations in version order.
func shipped() ([]migrations.Migration, error) {
	return migrations.Load(migrationFS, "migrations/*.sql")
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)`

// applied returns the checksums of the applied migrations by version.
func applied(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (map[int]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	done := make(map[int]string)
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		done[v] = sum
	}
	return done, rows.Err()
}

// Migrate applies the embedded migrations the database lacks, in order, each
// in its own transaction, recording each in schema_migrations. It is safe to
// run at every start and from several processes at once.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := shipped()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := db.writer.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			// Read inside the IMMEDIATE transaction, so that another
			// process migrating at the same time cannot apply m twice.
			done, err := applied(ctx, tx)
			if err != nil {
				return err
			}
			if err := migrations.Check(ms, done); err != nil {
				return err
			}
			if _, ok := done[m.Version]; ok {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
				m.Version, m.Name, m.Sum, db.now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}

// MigrationsPending returns how many embedded migrations the database has not
// applied yet. It fails when an applied migration was edited or is unknown.
func (db *DB) MigrationsPending(ctx context.Context) (int, error) {
	ms, err := shipped()
	if err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	var n int
	err = db.reader.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	if n == 0 {
		return len(ms), nil
	}
	done, err := applied(ctx, db.reader)
	if err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	if err := migrations.Check(ms, done); err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	pending := 0
	for _, m := range ms {
		if _, ok := done[m.Version]; !ok {
			pending++
		}
	}
	return pending, nil
}
