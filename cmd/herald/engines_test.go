package main

import (
	"testing"

	"herald/store/postgres/pgtest"
)

// eachEngine runs fn twice, as the subtests sqlite and postgres: once on the
// SQLite file testConfig names, once on a fresh PostgreSQL schema (skipped
// when PostgreSQL does not answer, a failure under CI=true).
func eachEngine(t *testing.T, fn func(t *testing.T)) {
	t.Run("sqlite", fn)
	t.Run("postgres", func(t *testing.T) {
		usePostgres(t)
		fn(t)
	})
}

// usePostgres points every herald command the test runs, and every serve it
// starts, at a fresh PostgreSQL schema, through the environment (which
// overrides the configuration file), and returns the schema's DSN. The
// schema is dropped when the test ends, after the servers have stopped.
func usePostgres(t *testing.T) string {
	t.Helper()
	dsn := pgtest.NewSchemaDSN(t)
	t.Setenv("HERALD_DATABASE_DRIVER", "postgres")
	t.Setenv("HERALD_DATABASE_DSN", dsn)
	t.Setenv("HERALD_DATABASE_MAX_CONNS", "8")
	return dsn
}
