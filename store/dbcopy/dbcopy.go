// Package dbcopy copies a Herald database from SQLite to PostgreSQL: every
// row of every table, in dependency order, in batches that each land in one
// transaction together with a record of how far the copy got, so that an
// interrupted copy resumes where it stopped. Ids are kept, identity
// sequences moved past them, and each table is verified at the end by its
// row count and a SHA-256 checksum computed on both sides.
//
// Both databases must already have this version of Herald's schema (run
// the migrations on both first). The source is only read; Herald should not
// be running on either side during the copy.
package dbcopy

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBatchSize is how many rows one batch copies when Options sets none.
const DefaultBatchSize = 5000

// ProgressTable is the table on the target that records how far the copy of
// each table got. Its presence marks the target's rows as copied ones.
const ProgressTable = "copy_progress"

// Options tunes Copy.
type Options struct {
	// BatchSize is how many rows one batch (one target transaction) copies
	// (default DefaultBatchSize).
	BatchSize int
	// Force empties the target's tables first when they hold rows that did
	// not come from a copy (or from an earlier copy), and starts over.
	// Without it such a target is refused.
	Force bool
	// Progress, if set, is called before each table and after each batch.
	Progress func(Progress)
}

// Progress is where the copy of one table stands.
type Progress struct {
	Table  string
	Copied int64 // rows on the target so far
	Total  int64 // rows in the source
	Done   bool  // the table is copied (not yet verified)
}

// TableReport is the verified result of one table.
type TableReport struct {
	Table string
	// Rows is the row count; SourceRows and TargetRows differ only when
	// the verification failed.
	SourceRows, TargetRows int64
	// SourceSum and TargetSum are hex SHA-256 checksums over the rows in
	// canonical text, ordered by primary key.
	SourceSum, TargetSum string
	// Resumed is set when part of the table had been copied by an earlier
	// run.
	Resumed bool
}

// OK reports whether the target matches the source.
func (r TableReport) OK() bool {
	return r.SourceRows == r.TargetRows && r.SourceSum == r.TargetSum
}

// ErrMismatch is returned (wrapped) when a table's counts or checksums
// differ after the copy.
var ErrMismatch = errors.New("the target does not match the source")

// TargetNotEmptyError is returned when the target holds rows that no copy
// put there, and Options.Force is not set.
type TargetNotEmptyError struct {
	Tables []string
}

func (e *TargetNotEmptyError) Error() string {
	return fmt.Sprintf("the target already has rows that did not come from a copy, in %s; "+
		"copy into a freshly migrated database, or pass --force to empty these tables first", strings.Join(e.Tables, ", "))
}

// column is one column of a target table.
type column struct {
	name     string
	typ      string // PostgreSQL udt_name: int8, text, timestamptz, bool, bytea, _int8, ...
	nullable bool
	identity bool
}

// table is one target table and how to copy it.
type table struct {
	name     string
	cols     []column
	pk       []int        // indexes into cols, in key order
	deferred map[int]bool // nullable foreign-key columns written NULL first, set once every table is in
}

// colNames returns the names of t's columns, quoted.
func (t *table) colNames() []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		out[i] = pgx.Identifier{c.name}.Sanitize()
	}
	return out
}

// copier is one run of Copy.
type copier struct {
	src  *sql.Tx
	dst  *pgx.Conn
	opts Options
}

// Copy copies every table of src (a SQLite database) into dst (a PostgreSQL
// connection whose search_path selects the target schema), resuming an
// earlier interrupted copy, then verifies every table. It returns the
// verification of every table; the error wraps ErrMismatch when one does
// not match, and is a *TargetNotEmptyError when the target holds other
// data and opts.Force is not set. Cancelling ctx stops the copy after the
// batch under way rolls back; a later Copy resumes from there.
func Copy(ctx context.Context, src *sql.DB, dst *pgx.Conn, opts Options) ([]TableReport, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	// One read transaction: every batch and the verification read the same
	// snapshot of the source.
	stx, err := src.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read the source: %w", err)
	}
	defer stx.Rollback()
	c := &copier{src: stx, dst: dst, opts: opts}

	if _, err := dst.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ProgressTable+` (
        table_name text        PRIMARY KEY,
        last_key   text        NOT NULL DEFAULT '',
        rows       bigint      NOT NULL DEFAULT 0,
        done       boolean     NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("create %s on the target: %w", ProgressTable, err)
	}
	tables, err := c.targetTables(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.checkSource(ctx, tables); err != nil {
		return nil, err
	}
	if err := c.prepareTarget(ctx, tables); err != nil {
		return nil, err
	}
	resumed := map[string]bool{}
	for _, t := range tables {
		r, err := c.copyTable(ctx, t)
		if err != nil {
			return nil, err
		}
		resumed[t.name] = r
	}
	for _, t := range tables {
		if err := c.fixDeferred(ctx, t); err != nil {
			return nil, err
		}
		if err := c.resetIdentity(ctx, t); err != nil {
			return nil, err
		}
	}
	var reports []TableReport
	var bad []string
	for _, t := range tables {
		r, err := c.verify(ctx, t)
		if err != nil {
			return reports, err
		}
		r.Resumed = resumed[t.name]
		reports = append(reports, r)
		if !r.OK() {
			bad = append(bad, t.name)
		}
	}
	if len(bad) > 0 {
		return reports, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(bad, ", "))
	}
	return reports, nil
}

// targetTables reads the target schema: its tables (but the bookkeeping
// ones), columns, primary keys and foreign keys, and orders the tables so
// that every table comes after those it refers to. A cycle of references
// is broken at a nullable column, which is copied NULL and set afterwards.
func (c *copier) targetTables(ctx context.Context) ([]*table, error) {
	byName := map[string]*table{}
	rows, err := c.dst.Query(ctx, `SELECT table_name, column_name, udt_name, is_nullable = 'YES', is_identity = 'YES'
        FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name NOT IN ('schema_migrations', '`+ProgressTable+`')
        ORDER BY table_name, ordinal_position`)
	if err != nil {
		return nil, fmt.Errorf("read the target schema: %w", err)
	}
	var tname string
	var col column
	_, err = pgx.ForEachRow(rows, []any{&tname, &col.name, &col.typ, &col.nullable, &col.identity}, func() error {
		t := byName[tname]
		if t == nil {
			t = &table{name: tname, deferred: map[int]bool{}}
			byName[tname] = t
		}
		t.cols = append(t.cols, col)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the target schema: %w", err)
	}
	if len(byName) == 0 {
		return nil, errors.New("the target has no Herald tables: run the migrations on it first")
	}
	colIndex := func(t *table, name string) int {
		return slices.IndexFunc(t.cols, func(c column) bool { return c.name == name })
	}

	rows, err = c.dst.Query(ctx, `SELECT c.relname, a.attname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
        WHERE i.indisprimary AND n.nspname = current_schema()
        ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)`)
	if err != nil {
		return nil, fmt.Errorf("read the target's primary keys: %w", err)
	}
	var cname string
	_, err = pgx.ForEachRow(rows, []any{&tname, &cname}, func() error {
		if t := byName[tname]; t != nil {
			t.pk = append(t.pk, colIndex(t, cname))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the target's primary keys: %w", err)
	}

	type ref struct {
		to  string
		col int
	}
	refs := map[string][]ref{}
	rows, err = c.dst.Query(ctx, `SELECT c.relname, r.relname, a.attname
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_class r ON r.oid = k.confrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
        WHERE k.contype = 'f' AND n.nspname = current_schema()
        ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("read the target's foreign keys: %w", err)
	}
	var rname string
	_, err = pgx.ForEachRow(rows, []any{&tname, &rname, &cname}, func() error {
		if t := byName[tname]; t != nil && rname != tname && byName[rname] != nil {
			refs[tname] = append(refs[tname], ref{rname, colIndex(t, cname)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the target's foreign keys: %w", err)
	}

	names := make([]string, 0, len(byName))
	for n, t := range byName {
		if len(t.pk) == 0 {
			return nil, fmt.Errorf("table %s has no primary key: it cannot be copied in resumable batches", n)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	placed := map[string]bool{}
	var order []*table
	for len(order) < len(names) {
		progress := false
		for _, n := range names {
			if !placed[n] && !slices.ContainsFunc(refs[n], func(r ref) bool { return !placed[r.to] }) {
				placed[n], progress = true, true
				order = append(order, byName[n])
			}
		}
		if progress {
			continue
		}
		// A cycle: take the first table whose missing references are all
		// nullable, and write those columns afterwards.
		broke := false
		for _, n := range names {
			t := byName[n]
			if placed[n] || slices.ContainsFunc(refs[n], func(r ref) bool { return !placed[r.to] && !t.cols[r.col].nullable }) {
				continue
			}
			for _, r := range refs[n] {
				if !placed[r.to] {
					t.deferred[r.col] = true
				}
			}
			if len(t.pk) != 1 {
				return nil, fmt.Errorf("table %s is in a cycle of references and has a composite key", n)
			}
			placed[n], broke = true, true
			order = append(order, t)
			break
		}
		if !broke {
			return nil, errors.New("the target's tables refer to each other in a cycle with no nullable column")
		}
	}
	return order, nil
}

// checkSource makes sure the source has every table and column of the
// target, and nothing the target lacks (which the copy would leave behind).
func (c *copier) checkSource(ctx context.Context, tables []*table) error {
	want := map[string]*table{}
	for _, t := range tables {
		want[t.name] = t
	}
	rows, err := c.src.QueryContext(ctx, `SELECT name FROM sqlite_schema
        WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'`)
	if err != nil {
		return fmt.Errorf("read the source schema: %w", err)
	}
	var srcTables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("read the source schema: %w", err)
		}
		srcTables = append(srcTables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the source schema: %w", err)
	}
	for _, n := range srcTables {
		if want[n] == nil {
			return fmt.Errorf("table %s is in the source but not in the target: migrate both with this version of Herald", n)
		}
	}
	for _, t := range tables {
		if !slices.Contains(srcTables, t.name) {
			return fmt.Errorf("table %s is in the target but not in the source: migrate both with this version of Herald", t.name)
		}
		rows, err := c.src.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, t.name)
		if err != nil {
			return fmt.Errorf("read the source's %s: %w", t.name, err)
		}
		var srcCols []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			srcCols = append(srcCols, n)
		}
		rows.Close()
		for _, n := range srcCols {
			if !slices.ContainsFunc(t.cols, func(c column) bool { return c.name == n }) {
				return fmt.Errorf("column %s.%s is in the source but not in the target", t.name, n)
			}
		}
		for _, col := range t.cols {
			if !slices.Contains(srcCols, col.name) {
				return fmt.Errorf("column %s.%s is in the target but not in the source", t.name, col.name)
			}
		}
	}
	return nil
}

// prepareTarget refuses (or, with Force, empties) a target whose tables
// hold rows no copy put there.
func (c *copier) prepareTarget(ctx context.Context, tables []*table) error {
	var foreign []string
	for _, t := range tables {
		var has, tracked bool
		err := c.dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{t.name}.Sanitize()+`),
                EXISTS (SELECT 1 FROM `+ProgressTable+` WHERE table_name = $1)`, t.name).Scan(&has, &tracked)
		if err != nil {
			return fmt.Errorf("look at the target's %s: %w", t.name, err)
		}
		if has && !tracked {
			foreign = append(foreign, t.name)
		}
	}
	if len(foreign) == 0 && !c.opts.Force {
		return nil
	}
	if len(foreign) > 0 && !c.opts.Force {
		return &TargetNotEmptyError{Tables: foreign}
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.name}.Sanitize()
	}
	if _, err := c.dst.Exec(ctx, `TRUNCATE `+strings.Join(names, ", ")+`, `+ProgressTable+` RESTART IDENTITY CASCADE`); err != nil {
		return fmt.Errorf("empty the target: %w", err)
	}
	return nil
}

// progress reports where a table stands, if anyone listens.
func (c *copier) progress(p Progress) {
	if c.opts.Progress != nil {
		c.opts.Progress(p)
	}
}

// selectSQL is the source query of t's rows, after a key when after is set.
func (t *table) selectSQL(after bool, limit bool) string {
	cols := t.colNames()
	keys := make([]string, len(t.pk))
	marks := make([]string, len(t.pk))
	for i, k := range t.pk {
		keys[i], marks[i] = cols[k], "?"
	}
	q := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + pgx.Identifier{t.name}.Sanitize()
	if after {
		q += ` WHERE (` + strings.Join(keys, ", ") + `) > (` + strings.Join(marks, ", ") + `)`
	}
	q += ` ORDER BY ` + strings.Join(keys, ", ")
	if limit {
		q += ` LIMIT ?`
	}
	return q
}

// copyTable copies t's rows past the last key a previous run recorded,
// batch by batch, and reports whether it resumed an earlier copy.
func (c *copier) copyTable(ctx context.Context, t *table) (resumed bool, err error) {
	var (
		lastKey string
		copied  int64
		done    bool
		total   int64
	)
	err = c.dst.QueryRow(ctx, `SELECT last_key, rows, done FROM `+ProgressTable+` WHERE table_name = $1`, t.name).
		Scan(&lastKey, &copied, &done)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("read the progress of %s: %w", t.name, err)
	}
	resumed = err == nil && copied > 0
	if err := c.src.QueryRowContext(ctx, `SELECT count(*) FROM `+pgx.Identifier{t.name}.Sanitize()).Scan(&total); err != nil {
		return false, fmt.Errorf("count the source's %s: %w", t.name, err)
	}
	c.progress(Progress{Table: t.name, Copied: copied, Total: total, Done: done})
	if done {
		return resumed, nil
	}
	var key []any
	if lastKey != "" {
		if key, err = decodeKey(lastKey); err != nil {
			return false, fmt.Errorf("the recorded progress of %s: %w", t.name, err)
		}
	}
	names := make([]string, len(t.cols))
	for i, col := range t.cols {
		names[i] = col.name
	}
	for {
		batch, next, err := c.readBatch(ctx, t, key)
		if err != nil {
			return resumed, err
		}
		done = len(batch) < c.opts.BatchSize
		err = pgx.BeginFunc(ctx, c.dst, func(tx pgx.Tx) error {
			if len(batch) > 0 {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, names, pgx.CopyFromRows(batch)); err != nil {
					return err
				}
			}
			nextKey := lastKey
			if next != nil {
				nextKey = encodeKey(next)
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+ProgressTable+` (table_name, last_key, rows, done, updated_at)
                VALUES ($1, $2, $3, $4, now())
                ON CONFLICT (table_name) DO UPDATE SET last_key = $2, rows = $3, done = $4, updated_at = now()`,
				t.name, nextKey, copied+int64(len(batch)), done)
			return err
		})
		if err != nil {
			return resumed, fmt.Errorf("copy %s: %w", t.name, err)
		}
		copied += int64(len(batch))
		if next != nil {
			key, lastKey = next, encodeKey(next)
		}
		c.progress(Progress{Table: t.name, Copied: copied, Total: total, Done: done})
		if done {
			return resumed, nil
		}
	}
}

// readBatch reads up to BatchSize rows of t after key (all from the start
// when key is nil), converted for the target, and the key of the last one.
func (c *copier) readBatch(ctx context.Context, t *table, key []any) ([][]any, []any, error) {
	args := append(slices.Clone(key), c.opts.BatchSize)
	rows, err := c.src.QueryContext(ctx, t.selectSQL(key != nil, true), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("read the source's %s: %w", t.name, err)
	}
	defer rows.Close()
	var out [][]any
	var last []any
	for rows.Next() {
		raw := make([]any, len(t.cols))
		ptrs := make([]any, len(raw))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, fmt.Errorf("read the source's %s: %w", t.name, err)
		}
		row, err := convertRow(t, raw)
		if err != nil {
			return nil, nil, err
		}
		for i := range t.deferred {
			row[i] = nil
		}
		out = append(out, row)
		last = make([]any, len(t.pk))
		for i, k := range t.pk {
			last[i] = raw[k]
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read the source's %s: %w", t.name, err)
	}
	return out, last, nil
}

// fixDeferred writes the columns of t that were copied NULL to break a
// cycle of references, now that the rows they refer to are in. It is
// idempotent, so it runs on every (resumed) copy.
func (c *copier) fixDeferred(ctx context.Context, t *table) error {
	for col := range t.deferred {
		pk := t.cols[t.pk[0]]
		rows, err := c.src.QueryContext(ctx, `SELECT `+pgx.Identifier{pk.name}.Sanitize()+`, `+pgx.Identifier{t.cols[col].name}.Sanitize()+
			` FROM `+pgx.Identifier{t.name}.Sanitize()+` WHERE `+pgx.Identifier{t.cols[col].name}.Sanitize()+` IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("read the source's %s.%s: %w", t.name, t.cols[col].name, err)
		}
		update := `UPDATE ` + pgx.Identifier{t.name}.Sanitize() + ` SET ` + pgx.Identifier{t.cols[col].name}.Sanitize() + ` = $2 WHERE ` +
			pgx.Identifier{pk.name}.Sanitize() + ` = $1`
		b := &pgx.Batch{}
		flush := func() error {
			if b.Len() == 0 {
				return nil
			}
			err := c.dst.SendBatch(ctx, b).Close()
			b = &pgx.Batch{}
			return err
		}
		for rows.Next() {
			var id, v any
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return err
			}
			cv, err := convert(t.cols[col], v)
			if err != nil {
				rows.Close()
				return fmt.Errorf("%s.%s: %w", t.name, t.cols[col].name, err)
			}
			b.Queue(update, id, cv)
			if b.Len() >= c.opts.BatchSize {
				if err := flush(); err != nil {
					rows.Close()
					return fmt.Errorf("set %s.%s: %w", t.name, t.cols[col].name, err)
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return fmt.Errorf("set %s.%s: %w", t.name, t.cols[col].name, err)
		}
	}
	return nil
}

// resetIdentity moves t's identity sequences past the copied ids, so that
// the next row Herald inserts gets a fresh one.
func (c *copier) resetIdentity(ctx context.Context, t *table) error {
	for _, col := range t.cols {
		if !col.identity {
			continue
		}
		tn, cn := pgx.Identifier{t.name}.Sanitize(), pgx.Identifier{col.name}.Sanitize()
		_, err := c.dst.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2),
                coalesce((SELECT max(`+cn+`) FROM `+tn+`), 1), (SELECT max(`+cn+`) FROM `+tn+`) IS NOT NULL)`,
			tn, col.name)
		if err != nil {
			return fmt.Errorf("reset the identity of %s.%s: %w", t.name, col.name, err)
		}
	}
	return nil
}

// verify counts and checksums t on both sides.
func (c *copier) verify(ctx context.Context, t *table) (TableReport, error) {
	r := TableReport{Table: t.name}
	srcSum, tgtSum := sha256.New(), sha256.New()

	rows, err := c.src.QueryContext(ctx, t.selectSQL(false, false))
	if err != nil {
		return r, fmt.Errorf("verify the source's %s: %w", t.name, err)
	}
	raw := make([]any, len(t.cols))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return r, err
		}
		row, err := convertRow(t, raw)
		if err != nil {
			rows.Close()
			return r, err
		}
		writeRow(srcSum, row)
		r.SourceRows++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("verify the source's %s: %w", t.name, err)
	}

	// The target in the same order: text keys in byte order, as SQLite's
	// BINARY collation sorts them.
	keys := make([]string, len(t.pk))
	for i, k := range t.pk {
		keys[i] = pgx.Identifier{t.cols[k].name}.Sanitize()
		if t.cols[k].typ == "text" || t.cols[k].typ == "varchar" {
			keys[i] += ` COLLATE "C"`
		}
	}
	prows, err := c.dst.Query(ctx, `SELECT `+strings.Join(t.colNames(), ", ")+` FROM `+pgx.Identifier{t.name}.Sanitize()+
		` ORDER BY `+strings.Join(keys, ", "))
	if err != nil {
		return r, fmt.Errorf("verify the target's %s: %w", t.name, err)
	}
	for prows.Next() {
		vals, err := prows.Values()
		if err != nil {
			prows.Close()
			return r, fmt.Errorf("verify the target's %s: %w", t.name, err)
		}
		writeRow(tgtSum, vals)
		r.TargetRows++
	}
	prows.Close()
	if err := prows.Err(); err != nil {
		return r, fmt.Errorf("verify the target's %s: %w", t.name, err)
	}
	r.SourceSum, r.TargetSum = hex.EncodeToString(srcSum.Sum(nil)), hex.EncodeToString(tgtSum.Sum(nil))
	return r, nil
}

// convertRow converts a source row for the target, column by column.
func convertRow(t *table, raw []any) ([]any, error) {
	row := make([]any, len(raw))
	for i, v := range raw {
		cv, err := convert(t.cols[i], v)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t.name, t.cols[i].name, err)
		}
		row[i] = cv
	}
	return row, nil
}

// convert turns one SQLite value into the Go value for the target column:
// times are unix milliseconds (0 is the zero time, as both engines read
// it), booleans 0 or 1, id lists comma-separated text.
func convert(col column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch col.typ {
	case "timestamptz", "timestamp":
		ms, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want unix milliseconds, got %T", v)
		}
		if ms == 0 {
			return time.Time{}, nil
		}
		return time.UnixMilli(ms).UTC(), nil
	case "bool":
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want 0 or 1, got %T", v)
		}
		return n != 0, nil
	case "_int8", "_int4":
		s := asString(v)
		ids := []int64{}
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("want comma-separated ids, got %q", s)
			}
			ids = append(ids, n)
		}
		return ids, nil
	case "bytea":
		switch b := v.(type) {
		case []byte:
			return b, nil
		case string:
			return []byte(b), nil
		}
		return nil, fmt.Errorf("want bytes, got %T", v)
	case "text", "varchar", "bpchar", "citext":
		return asString(v), nil
	case "int2", "int4", "int8", "float4", "float8", "numeric":
		switch v.(type) {
		case int64, float64:
			return v, nil
		}
		return nil, fmt.Errorf("want a number, got %T", v)
	}
	return nil, fmt.Errorf("type %s is not supported by the copy", col.typ)
}

func asString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return fmt.Sprint(v)
}

// writeRow adds one row's canonical text to h: each value canonical, the
// row as a JSON array, one row a line. Both sides go through it, the source
// after convert, the target as pgx decodes it.
func writeRow(h hash.Hash, row []any) {
	out := make([]string, len(row))
	for i, v := range row {
		out[i] = canonical(v)
	}
	b, _ := json.Marshal(out)
	h.Write(b)
	h.Write([]byte{'\n'})
}

// canonical is a value's text for the checksum.
func canonical(v any) string {
	switch x := v.(type) {
	case nil:
		return `\N`
	case int64:
		return "i" + strconv.FormatInt(x, 10)
	case int32:
		return "i" + strconv.FormatInt(int64(x), 10)
	case int16:
		return "i" + strconv.FormatInt(int64(x), 10)
	case int:
		return "i" + strconv.Itoa(x)
	case float64:
		return "f" + strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return "f" + strconv.FormatFloat(float64(x), 'g', -1, 64)
	case bool:
		return "b" + strconv.FormatBool(x)
	case string:
		return "s" + x
	case []byte:
		return "x" + hex.EncodeToString(x)
	case time.Time:
		return "t" + x.UTC().Format(time.RFC3339Nano)
	case []int64:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = canonical(n)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []any:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = canonical(n)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprintf("?%T:%v", v, v)
}

// encodeKey records a source key (int64, string or []byte values) as text.
func encodeKey(key []any) string {
	parts := make([]string, len(key))
	for i, v := range key {
		switch x := v.(type) {
		case int64:
			parts[i] = "i" + strconv.FormatInt(x, 10)
		case []byte:
			parts[i] = "x" + hex.EncodeToString(x)
		default:
			parts[i] = "s" + asString(x)
		}
	}
	b, _ := json.Marshal(parts)
	return string(b)
}

// decodeKey reads a key encodeKey wrote.
func decodeKey(s string) ([]any, error) {
	var parts []string
	if err := json.Unmarshal([]byte(s), &parts); err != nil {
		return nil, err
	}
	key := make([]any, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("bad key %q", s)
		}
		switch p[0] {
		case 'i':
			n, err := strconv.ParseInt(p[1:], 10, 64)
			if err != nil {
				return nil, err
			}
			key[i] = n
		case 'x':
			b, err := hex.DecodeString(p[1:])
			if err != nil {
				return nil, err
			}
			key[i] = b
		case 's':
			key[i] = p[1:]
		default:
			return nil, fmt.Errorf("bad key %q", s)
		}
	}
	return key, nil
}
