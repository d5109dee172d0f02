package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered .sql file.
type migration struct {
	version int
	name    string
	sql     string
	sum     string // sha256 of the file, to catch a shipped migration edited later
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		// Hash without carriage returns, so a checkout that converts line
		// endings does not look like an edited migration.
		sum := sha256.Sum256([]byte(strings.ReplaceAll(string(b), "\r\n", "\n")))
		ms = append(ms, migration{version: v, name: base, sql: string(b), sum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
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

// check compares what the database applied with what this binary ships.
func check(ms []migration, done map[int]string) error {
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.version] = true
		if sum, ok := done[m.version]; ok && sum != m.sum {
			return fmt.Errorf("migration %s was edited after it was applied; add a new migration instead", m.name)
		}
	}
	for v := range done {
		if !known[v] {
			return fmt.Errorf("the database has migration %04d, unknown to this version of Herald (downgrade?)", v)
		}
	}
	return nil
}

// Migrate applies the embedded migrations the database lacks, in order, each
// in its own transaction, recording each in schema_migrations. It is safe to
// run at every start and from several processes at once.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := migrations()
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
			if err := check(ms, done); err != nil {
				return err
			}
			if _, ok := done[m.version]; ok {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`,
				m.version, m.name, m.sum, db.now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return nil
}

// MigrationsPending returns how many embedded migrations the database has not
// applied yet. It fails when an applied migration was edited or is unknown.
func (db *DB) MigrationsPending(ctx context.Context) (int, error) {
	ms, err := migrations()
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
	if err := check(ms, done); err != nil {
		return 0, fmt.Errorf("migrations pending: %w", err)
	}
	pending := 0
	for _, m := range ms {
		if _, ok := done[m.version]; !ok {
			pending++
		}
	}
	return pending, nil
}
