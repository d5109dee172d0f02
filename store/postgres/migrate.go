package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/store/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// shipped returns the embedded migrations in version order.
func shipped() ([]migrations.Migration, error) {
	return migrations.Load(migrationFS, "migrations/*.sql")
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL
)`

// migrateLockName names the advisory lock every migrating instance takes
// for the length of one migration's transaction.
const migrateLockName = "migrate"

// applied returns the checksums of the applied migrations by version.
func applied(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[int]string, error) {
	rows, err := q.Query(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	done := make(map[int]string)
	var v int
	var sum string
	_, err = pgx.ForEachRow(rows, []any{&v, &sum}, func() error {
		done[v] = sum
		return nil
	})
	return done, err
}

// Migrate applies the embedded migrations the database lacks, in order, each
// in its own transaction, recording each in schema_migrations (in the first
// schema of the search_path). It is safe to run at every start and from
// several instances at once: each transaction first takes a transaction-
// level advisory lock, so one instance applies a migration while the others
// wait, then find it applied.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := shipped()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Under the lock too: concurrent CREATE TABLE IF NOT EXISTS can fail
	// on PostgreSQL's catalog unique indexes.
	err = db.inTx(ctx, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(migrateLockName)); err != nil {
			return err
		}
		_, err := t.Exec(ctx, createMigrationsTable)
		return err
	})
	if err != nil {
		return translate(err, "migrate", "migration")
	}
	for _, m := range ms {
		err := db.inTx(ctx, func(t pgx.Tx) error {
			if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(migrateLockName)); err != nil {
				return err
			}
			done, err := applied(ctx, t)
			if err != nil {
				return err
			}
			if err := migrations.Check(ms, done); err != nil {
				return err
			}
			if _, ok := done[m.Version]; ok {
				return nil
			}
			// No arguments: pgx sends the file in the simple protocol,
			// which runs several statements.
			if _, err := t.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err = t.Exec(ctx,
				`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)`,
				m.Version, m.Name, m.Sum, db.now())
			return err
		})
		if err != nil {
			return translate(err, "migrate "+m.Name, "migration")
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
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, translate(err, "migrations pending", "migration")
	}
	if !exists {
		return len(ms), nil
	}
	done, err := applied(ctx, db.pool)
	if err != nil {
		return 0, translate(err, "migrations pending", "migration")
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
