package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"herald/store/dbcopy"
	"herald/store/postgres"
	"herald/store/sqlite"
)

// dbCopyUsage documents "herald db copy".
func dbCopyUsage() usage {
	return usage{
		synopsis: "herald db copy --from sqlite:PATH --to postgres:DSN [--force] [--batch-size N] [--config FILE]",
		description: `Copies a Herald database from SQLite to PostgreSQL, to move a site to
several instances (see docs/scale-out.md). Stop Herald first.

Both databases are first brought to this version's schema (the migrations
run on both). Then every row of every table is copied, in dependency order,
in batches: each batch lands in one transaction on the target together with
the table's progress (in a copy_progress table), so an interrupted copy
(Ctrl-C, a lost connection) resumes where it stopped when the same command
is run again. Ids are kept and the target's id sequences moved past them.
Finally every table is verified: its row count and a SHA-256 checksum over
its rows, ordered by primary key, computed on both sides.

A target whose tables already hold rows that no copy put there (a Herald
that has run on it) is refused, unless --force, which empties the target's
tables first. A progress bar per table goes to stderr; the verification,
one line per table, to stdout. Exit 1 when a table does not match.`,
		example: `  herald db copy --from sqlite:data/herald.db --to postgres:postgres://herald@db.internal/herald
  HERALD_DATABASE_DRIVER=postgres HERALD_DATABASE_DSN=postgres://herald@db/herald herald db copy --from sqlite:data/herald.db`,
	}
}

// dbCopy runs "herald db copy".
func (a *app) dbCopy(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("db copy")
	from := fs.String("from", "", "the source database, `sqlite:PATH`")
	to := fs.String("to", "", "the target database, `postgres:DSN` (default: database.dsn of the configuration, when database.driver is postgres)")
	force := fs.Bool("force", false, "empty the target's tables first when they hold rows that no copy put there")
	batch := fs.Int("batch-size", dbcopy.DefaultBatchSize, "rows copied per target transaction")
	pos, code, done := a.parseArgs(fs, dbCopyUsage(), args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	path, ok := strings.CutPrefix(*from, "sqlite:")
	if !ok || path == "" {
		return a.usageError(fs, "--from must be sqlite:PATH, got %q", *from)
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		return a.usageError(fs, "--from: no SQLite database file at %s", path)
	}
	if *batch < 1 {
		return a.usageError(fs, "--batch-size must be at least 1, got %d", *batch)
	}
	dsn, ok := strings.CutPrefix(*to, "postgres:")
	switch {
	case *to == "":
		cfg, ok := a.config(fs, *configPath)
		if !ok {
			return exitUsage
		}
		if cfg.Database.Driver != "postgres" {
			return a.usageError(fs, "--to is required (postgres:DSN) unless database.driver is postgres")
		}
		dsn = cfg.Database.DSN
	case !ok || dsn == "":
		return a.usageError(fs, "--to must be postgres:DSN, got %q", redactDSN(*to))
	}
	reports, err := copyDatabase(ctx, path, dsn, dbcopy.Options{BatchSize: *batch, Force: *force}, a.stderr)
	for _, r := range reports {
		status := "ok"
		if !r.OK() {
			status = fmt.Sprintf("MISMATCH: target %d rows, sha256 %s", r.TargetRows, r.TargetSum)
		}
		note := ""
		if r.Resumed {
			note = " (resumed)"
		}
		fmt.Fprintf(a.stdout, "%-24s %10d rows  sha256 %s  %s%s\n", r.Table, r.SourceRows, r.SourceSum, status, note)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w; run the same command again to resume", err)
		}
		return a.fail(fs, err)
	}
	var rows int64
	for _, r := range reports {
		rows += r.SourceRows
	}
	fmt.Fprintf(a.stdout, "copied and verified %d tables, %d rows\n", len(reports), rows)
	return exitOK
}

// copyDatabase migrates both databases, then copies the SQLite file at
// path into the PostgreSQL database dsn names, showing progress on stderr.
func copyDatabase(ctx context.Context, path, dsn string, opts dbcopy.Options, stderr io.Writer) ([]dbcopy.TableReport, error) {
	logger := slog.New(slog.DiscardHandler)
	src, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	_, err = migrateDatabase(ctx, src, logger)
	src.Close()
	if err != nil {
		return nil, fmt.Errorf("migrate the source: %w", err)
	}
	dst, err := postgres.Open(ctx, dsn, postgres.WithMaxConns(2))
	if err != nil {
		return nil, err
	}
	_, err = migrateDatabase(ctx, dst, logger)
	if err == nil {
		postgresWarnings(ctx, dst, slog.New(slog.NewTextHandler(stderr, nil)))
	}
	dst.Close()
	if err != nil {
		return nil, fmt.Errorf("migrate the target: %w", err)
	}

	// The copy reads and writes the tables as they are, below the stores.
	sdb, err := sql.Open("sqlite3", path+"?"+url.Values{"_query_only": {"1"}, "_busy_timeout": {"5000"}}.Encode())
	if err != nil {
		return nil, err
	}
	defer sdb.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, errors.New("connect to the target: " + redactDSN(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	show := newCopyProgress(stderr)
	defer show.finish()
	if then := opts.Progress; then != nil {
		opts.Progress = func(p dbcopy.Progress) { show.update(p); then(p) }
	} else {
		opts.Progress = show.update
	}
	return dbcopy.Copy(ctx, sdb, conn, opts)
}

// copyProgress shows a bar per table on a terminal, else a line per table
// when it starts and ends and at most one a second in between.
type copyProgress struct {
	w        io.Writer
	terminal bool
	bar      *progressbar.ProgressBar
	table    string
	lastLine time.Time
}

func newCopyProgress(w io.Writer) *copyProgress {
	f, ok := w.(*os.File)
	return &copyProgress{w: w, terminal: ok && term.IsTerminal(int(f.Fd()))}
}

// update shows p.
func (c *copyProgress) update(p dbcopy.Progress) {
	if p.Table != c.table {
		c.finish()
		c.table = p.Table
		if c.terminal {
			c.bar = progressbar.NewOptions64(max(p.Total, 1),
				progressbar.OptionSetWriter(c.w),
				progressbar.OptionSetDescription(fmt.Sprintf("%-24s", p.Table)),
				progressbar.OptionSetWidth(30),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("rows"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.w) }),
			)
		}
	}
	if c.terminal {
		c.bar.Set64(min(p.Copied, max(p.Total, 1)))
		if p.Done {
			c.bar.Finish()
		}
		return
	}
	if now := time.Now(); p.Done || now.Sub(c.lastLine) >= time.Second {
		c.lastLine = now
		state := "copying"
		if p.Done {
			state = "copied"
		}
		fmt.Fprintf(c.w, "%s: %s %d/%d rows\n", p.Table, state, p.Copied, p.Total)
	}
}

// finish ends the current bar.
func (c *copyProgress) finish() {
	if c.bar != nil {
		c.bar.Exit()
		c.bar = nil
	}
}

// redactDSN hides the password of a postgres:// URL in s.
func redactDSN(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	at := strings.IndexByte(rest, '@')
	colon := strings.IndexByte(rest, ':')
	if at < 0 || colon < 0 || colon > at {
		return s
	}
	return s[:i+3] + rest[:colon] + ":xxxxx" + rest[at:]
}
