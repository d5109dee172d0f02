package main

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/store/dbcopy"
	"herald/store/postgres"
	"herald/store/postgres/pgtest"
	"herald/store/sqlite"
	"herald/subscribers"
)

// copyReaders is how many subscribers the copy tests' source holds: enough
// for many batches of copyBatch.
const (
	copyReaders = 2500
	copyBatch   = 200
)

// sourceDatabase writes a migrated SQLite file with rows in every table
// (through raw SQL: the copy works below the stores) and returns its path.
func sourceDatabase(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "herald.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Secret(ctx, "token-key", func() ([]byte, error) { return []byte{0, 1, 2, 0xff}, nil }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	raw, err := sql.Open("sqlite3", path+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const ms = 1772366400000 // 2026-03-01 12:00 UTC
	for _, q := range []string{
		`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ` + decimal(copyReaders) + `)
         INSERT INTO subscribers (email, name, status, created_at, updated_at, confirmed_at, confirm_sent_at, paused_until)
         SELECT 'reader' || n || '@example.org', 'Reader ' || n || ' «ü»', CASE WHEN n % 7 = 0 THEN 'pending' ELSE 'active' END,
                ` + decimal(ms) + ` + n, ` + decimal(ms) + ` + n, CASE WHEN n % 7 = 0 THEN NULL ELSE ` + decimal(ms) + ` + 2 * n END,
                CASE WHEN n % 5 = 0 THEN 0 ELSE NULL END, CASE WHEN n % 11 = 0 THEN ` + decimal(ms) + ` + 86400000 ELSE NULL END
         FROM g`,
		// A gap in the ids: the copy keeps them, it does not renumber.
		`DELETE FROM subscribers WHERE id BETWEEN 100 AND 120`,
		`INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'daily' FROM subscribers`,
		`INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'weekly' FROM subscribers WHERE id % 3 = 0`,
		`INSERT INTO consents (subscriber_id, created_at, ip, user_agent, source, text_version, newsletters, confirmed_at, confirm_ip)
         SELECT id, created_at, '192.0.2.1', 'Mozilla/5.0', 'form', '1', 'daily weekly', confirmed_at, '' FROM subscribers`,
		`INSERT INTO events (subscriber_id, at, kind, detail) SELECT id, created_at, 'signup', 'form' FROM subscribers`,
		`INSERT INTO tokens (hash, subscriber_id, purpose, created_at, expires_at, used_at)
         SELECT randomblob(32), id, 'confirm', created_at, created_at + 86400000, NULL FROM subscribers WHERE id % 4 = 0`,
		`INSERT INTO articles (url, guid, source, title, hash, published_at, updated_at, created_at)
         VALUES ('https://passblue.example/a/', '', '', 'A', 'h1', ` + decimal(ms) + `, ` + decimal(ms) + `, ` + decimal(ms) + `),
                ('https://passblue.example/b/', 'g-b', 'https://passblue.example/feed', 'B', 'h2', ` + decimal(ms) + `, ` + decimal(ms) + `, ` + decimal(ms) + `)`,
		`INSERT INTO article_tags (article_id, tag) VALUES (1, 'climate'), (1, 'un'), (2, 'weekly')`,
		`INSERT INTO feeds (url, etag, last_fetched_at, consecutive_failures, articles_seen)
         VALUES ('https://passblue.example/feed', '"abc"', ` + decimal(ms) + `, 0, 2)`,
		`INSERT INTO newsletters (id, first_seen_at) VALUES ('daily', ` + decimal(ms) + `), ('weekly', ` + decimal(ms) + `)`,
		// issues and editions refer to each other.
		`INSERT INTO issues (newsletter_id, slot_at, manual, status, subject, created_at, completed_at, readers)
         VALUES ('daily', ` + decimal(ms) + `, 1, 'sent', 'The Daily Brief — 1 March', ` + decimal(ms) + `, ` + decimal(ms) + `, 2)`,
		`INSERT INTO editions (issue_id, article_ids, readers) VALUES (1, '2,1', 2), (1, '1', 0)`,
		`UPDATE issues SET main_edition_id = 1`,
		`INSERT INTO messages (kind, subscriber_id, issue_id, edition_id, message_id, priority, status, attempts,
                               next_attempt_at, created_at, updated_at, sent_at)
         SELECT 'digest', id, 1, 1, 'herald.digest.1.' || id || '@passblue.example', 10,
                CASE WHEN id % 9 = 0 THEN 'failed' ELSE 'sent' END, 1, ` + decimal(ms) + `, ` + decimal(ms) + `, ` + decimal(ms) + `, ` + decimal(ms) + `
         FROM subscribers WHERE status = 'active'`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	return path
}

// decimal formats n in base 10.
func decimal(n int64) string { return strconv.FormatInt(n, 10) }

// TestDBCopy copies a SQLite database into a fresh PostgreSQL schema,
// interrupted mid-table and resumed, and checks that the target is the
// source: counts, checksums, ids, a reader read through the store, and
// sequences that go on after the copied ids.
func TestDBCopy(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	path := sourceDatabase(t)
	dsn := pgtest.NewSchemaDSN(t)

	// Interrupted: the context ends once 600 subscribers are in.
	cctx, cancel := context.WithCancel(ctx)
	_, err := copyDatabase(cctx, path, dsn, dbcopy.Options{BatchSize: copyBatch, Progress: func(p dbcopy.Progress) {
		if p.Table == "subscribers" && p.Copied >= 600 {
			cancel()
		}
	}}, &lockedBuffer{})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v, want context.Canceled", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var copied int64
	var done bool
	if err := conn.QueryRow(ctx, `SELECT rows, done FROM copy_progress WHERE table_name = 'subscribers'`).Scan(&copied, &done); err != nil {
		t.Fatal(err)
	}
	if copied < 600 || copied%copyBatch != 0 || done {
		t.Fatalf("after the interruption: %d subscribers copied, done %v; want a whole number of batches past 600, not done", copied, done)
	}

	// Resumed through the command.
	r := runHerald(t, "", "db", "copy", "--from", "sqlite:"+path, "--to", "postgres:"+dsn, "--batch-size", decimal(copyBatch), "--config", testConfig(t, ""))
	if r.code != exitOK {
		t.Fatalf("db copy: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^subscribers +\d+ rows +sha256 [0-9a-f]{64} +ok \(resumed\)$`).MatchString(r.stdout) {
		t.Errorf("the report does not show subscribers resumed and verified:\n%s", r.stdout)
	}
	for _, table := range []string{"subscriber_newsletters", "consents", "events", "tokens", "secrets", "articles", "article_tags",
		"feeds", "newsletters", "issues", "editions", "messages"} {
		if !regexp.MustCompile(`(?m)^` + table + ` +[1-9]\d* rows +sha256 [0-9a-f]{64} +ok( \(resumed\))?$`).MatchString(r.stdout) {
			t.Errorf("the report lacks a verified, non-empty %s:\n%s", table, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "subscribers: copied") {
		t.Errorf("no progress on stderr:\n%s", r.stderr)
	}

	// The target, through the PostgreSQL store, reads as the source does
	// through the SQLite store.
	src, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, id := range []int64{1, 99, 121, 1155, copyReaders} {
		want, err1 := src.FindSubscriberByID(ctx, id)
		got, err2 := dst.FindSubscriberByID(ctx, id)
		if err1 != nil || err2 != nil {
			t.Fatalf("subscriber %d: %v / %v", id, err1, err2)
		}
		if got.Email != want.Email || got.Name != want.Name || got.Status != want.Status || !got.CreatedAt.Equal(want.CreatedAt) ||
			!got.ConfirmedAt.Equal(want.ConfirmedAt) || !got.ConfirmSentAt.Equal(want.ConfirmSentAt) ||
			!got.PausedUntil.Equal(want.PausedUntil) || strings.Join(got.Newsletters, " ") != strings.Join(want.Newsletters, " ") {
			t.Errorf("subscriber %d\n got %+v\nwant %+v", id, got, want)
		}
	}
	if _, err := dst.FindSubscriberByID(ctx, 110); err == nil {
		t.Error("subscriber 110, deleted in the source, exists in the target")
	}
	secret, err := dst.Secret(ctx, "token-key", func() ([]byte, error) { return []byte("new"), nil })
	if err != nil || string(secret) != "\x00\x01\x02\xff" {
		t.Errorf("secret = %q, %v; want the source's", secret, err)
	}
	// The sequences go on after the copied ids.
	fresh := &subscribers.Subscriber{Email: "fresh@example.org", Status: subscribers.StatusActive}
	if err := dst.Update(ctx, func(tx subscribers.Tx) error { return tx.CreateSubscriber(fresh) }); err != nil {
		t.Fatal(err)
	}
	if fresh.ID != copyReaders+1 {
		t.Errorf("a new subscriber got id %d, want %d", fresh.ID, copyReaders+1)
	}
	var mainEdition int64
	if err := conn.QueryRow(ctx, `SELECT main_edition_id FROM issues WHERE id = 1`).Scan(&mainEdition); err != nil || mainEdition != 1 {
		t.Errorf("issues.main_edition_id = %d, %v; want 1", mainEdition, err)
	}

	// The target has changed since (the new subscriber): a copy again
	// says so.
	r = runHerald(t, "", "db", "copy", "--from", "sqlite:"+path, "--to", "postgres:"+dsn, "--config", testConfig(t, ""))
	if r.code != exitFailure || !strings.Contains(r.stdout, "MISMATCH") {
		t.Errorf("copy onto a changed target: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestDBCopyRefusesNonCopyData: a target where Herald has run is refused,
// naming the tables, and --force empties it and copies.
func TestDBCopyRefusesNonCopyData(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	path := sourceDatabase(t)
	dsn := pgtest.NewSchemaDSN(t)
	dst, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Secret(ctx, "token-key", func() ([]byte, error) { return []byte("other"), nil }); err != nil {
		t.Fatal(err)
	}
	dst.Close()

	args := []string{"db", "copy", "--from", "sqlite:" + path, "--to", "postgres:" + dsn, "--config", testConfig(t, "")}
	r := runHerald(t, "", args...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "secrets") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("copy onto a used target: exit %d, stderr %q; want 1 naming secrets and --force", r.code, r.stderr)
	}
	r = runHerald(t, "", append(args, "--force")...)
	if r.code != exitOK {
		t.Fatalf("copy --force: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestDBCopyUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--to", "postgres:x"}, "--from must be sqlite:PATH"},
		{[]string{"--from", "data.db", "--to", "postgres:x"}, "--from must be sqlite:PATH"},
		{[]string{"--from", "sqlite:/nonexistent/herald.db", "--to", "postgres:x"}, "no SQLite database file"},
	}
	for _, tt := range tests {
		r := runHerald(t, "", append([]string{"db", "copy"}, tt.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("db copy %v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	path := filepath.Join(t.TempDir(), "x.db")
	if db, err := sqlite.Open(t.Context(), path); err == nil {
		db.Close()
	}
	r := runHerald(t, "", "db", "copy", "--from", "sqlite:"+path, "--to", "mysql://u:secret@h/db")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--to must be postgres:DSN") || strings.Contains(r.stderr, "secret") {
		t.Errorf("db copy --to mysql: exit %d, stderr %q", r.code, r.stderr)
	}
}
