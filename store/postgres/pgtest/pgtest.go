// Package pgtest gives tests a real PostgreSQL to work in: a fresh schema per
// test, on the server HERALD_TEST_POSTGRES_DSN names (default DefaultDSN, the
// one .ci/run prepares). When the server does not answer, a test is skipped,
// or fails under CI=true, where the real dependency must be there.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the database .ci/run prepares: trust auth on 127.0.0.1.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the DSN of the test database: HERALD_TEST_POSTGRES_DSN, else
// DefaultDSN.
func DSN() string {
	if dsn := os.Getenv("HERALD_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// Admin connects to the test database for schema work; the caller closes
// the connection. When PostgreSQL is unreachable the test is skipped, or
// fails under CI=true.
func Admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN())
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at HERALD_TEST_POSTGRES_DSN (default %s): %v\n"+
			"Start one, e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start` (trust auth for 127.0.0.1, "+
			"a database named test), or run .ci/run, which sets it up.", DefaultDSN, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return conn
}

// Require skips (or, under CI=true, fails) t at once when the server is
// down, rather than once per subtest.
func Require(t testing.TB) {
	t.Helper()
	Admin(t).Close(context.Background())
}

// NewSchema creates an empty schema with a unique name and drops it, with
// everything in it, when the test ends (after the cleanups registered later,
// such as closing the pools that use it).
func NewSchema(t testing.TB) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	conn := Admin(t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, DSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// SchemaDSN returns the test DSN with search_path set to schema; pgx passes
// the parameter to the server on every connection of a pool.
func SchemaDSN(t testing.TB, schema string) string {
	t.Helper()
	dsn := DSN()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("HERALD_TEST_POSTGRES_DSN: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// NewSchemaDSN creates a fresh schema (NewSchema) and returns a DSN that
// works in it (SchemaDSN).
func NewSchemaDSN(t testing.TB) string {
	t.Helper()
	return SchemaDSN(t, NewSchema(t))
}
