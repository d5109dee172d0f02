package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"herald/subscribers"
)

// subscribersImport streams a CSV of subscribers into the database.
func (a *app) subscribersImport(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("subscribers import")
	status := fs.String("status", "pending", "`STATUS` given to new rows: pending (a confirmation email is sent) or active (consent was already given)")
	u := usage{
		synopsis: "herald subscribers import FILE.csv [--status pending|active] [--config FILE]",
		description: `Streams a CSV file of subscribers into the database. Rows are imported
pending, and each new address is sent a confirmation email, unless
--status active asserts that consent was already given elsewhere.

The header row names the columns: email (required), name and newsletters
(newsletter ids separated by spaces; empty means every newsletter). Rows
that cannot be imported are listed on stdout with their line number and the
reason, addresses masked; a summary line follows.`,
		arguments: `  FILE.csv   the CSV file to read, or - for standard input`,
		example: `  herald subscribers import readers.csv
  herald subscribers import members.csv --status active
  cat readers.csv | herald subscribers import -`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return a.usageError(fs, "a CSV file (or - for standard input) is required")
	case len(pos) > 1:
		return a.usageError(fs, "one CSV file at a time, got %d arguments", len(pos))
	}
	st := subscribers.Status(*status)
	if st != subscribers.StatusPending && st != subscribers.StatusActive {
		return a.usageError(fs, "--status must be pending or active, got %q", *status)
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)

	name := pos[0]
	var in io.Reader
	var size int64
	if name == "-" {
		in = a.stdin
		name = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return a.fail(fs, err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		in = f
	}

	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	svc, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}

	cr := &countingReader{r: in}
	bar := newImportBar(a.stderr, size)
	reject := func(r subscribers.Rejection) {
		if bar != nil {
			bar.Clear()
		}
		fmt.Fprintf(a.stdout, "line %d: %s: %s\n", r.Line, maskEmail(r.Email), r.Reason)
	}
	progress := func(rows int) {
		if bar == nil {
			return
		}
		if size > 0 {
			bar.Set64(cr.n)
		} else {
			bar.Set64(int64(rows))
		}
	}
	stats, err := svc.Import(ctx, cr, subscribers.ImportOptions{
		Status: st,
		Source: "import:" + filepath.Base(name),
	}, reject, progress)
	if bar != nil {
		bar.Finish()
		bar.Clear()
	}
	if len(stats.IgnoredColumns) > 0 {
		fmt.Fprintf(a.stdout, "ignored columns: %s\n", strings.Join(stats.IgnoredColumns, ", "))
	}
	fmt.Fprintf(a.stdout, "%s: %d rows: %d created, %d updated, %d unchanged, %d rejected\n",
		name, stats.Rows, stats.Created, stats.Updated, stats.Unchanged, stats.Rejected)
	if err != nil {
		return a.fail(fs, err)
	}
	return exitOK
}

// subscribersExport streams every subscriber as CSV to a file or stdout.
func (a *app) subscribersExport(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("subscribers export")
	out := fs.String("out", "", "write to `FILE` (atomically: a temporary file renamed into place) instead of standard output")
	u := usage{
		synopsis: "herald subscribers export [--out FILE] [--config FILE]",
		description: `Streams every subscriber as CSV with the header
email,name,newsletters,status,created_at,confirmed_at (newsletter ids
separated by spaces, times in RFC 3339 UTC, empty when unset). The file
holds personal data: --out creates it readable by its owner only.`,
		example: `  herald subscribers export --out subscribers.csv
  herald subscribers export | gzip > subscribers.csv.gz`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)

	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return a.fail(fs, err)
	}
	defer db.Close()
	svc, err := newSubscribers(ctx, cfg, db, logger)
	if err != nil {
		return a.fail(fs, err)
	}

	err = a.writeExport(*out, "%d subscribers", func(w io.Writer) (int, error) { return svc.Export(ctx, w) })
	if err != nil {
		return a.fail(fs, err)
	}
	return exitOK
}

// writeExport streams an export to stdout (out empty or "-") or atomically
// into the file out, then reports the count on the stream that is not the
// data: what is a format with one %d, e.g. "%d subscribers".
func (a *app) writeExport(out, what string, export func(io.Writer) (int, error)) error {
	if out == "" || out == "-" {
		w := bufio.NewWriterSize(a.stdout, 64<<10)
		n, err := export(w)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "exported "+what+"\n", n)
		return nil
	}
	var n int
	err := writeFileAtomic(out, func(w io.Writer) error {
		var err error
		n, err = export(w)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "exported "+what+" to %s\n", n, out)
	return nil
}

// writeFileAtomic writes path through a temporary file in the same directory
// that is renamed over path only once fill succeeded and the data is synced,
// so that a reader never sees half an export. The file is created 0600.
func writeFileAtomic(path string, fill func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 64<<10)
	if err = fill(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// newImportBar returns a progress bar on w when w is a terminal, else nil:
// a bar of bytes when the input's size is known, a row counter otherwise.
func newImportBar(w io.Writer, size int64) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("importing"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
	}
	if size > 0 {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionSetPredictTime(true))
		return progressbar.NewOptions64(size, opts...)
	}
	opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetItsString("rows"), progressbar.OptionSpinnerType(14))
	return progressbar.NewOptions64(-1, opts...)
}

// maskEmail hides most of an address for a report: "jane.doe@example.org"
// becomes "j***@e***.org". The operator finds the row by its line number.
func maskEmail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(empty)"
	}
	local, domain, ok := cutLast(s, "@")
	if !ok {
		return firstRune(s) + "***"
	}
	masked := firstRune(local) + "***@"
	if host, tld, ok := cutLast(domain, "."); ok && host != "" && isTLD(tld) {
		return masked + firstRune(host) + "***." + tld
	}
	return masked + firstRune(domain) + "***"
}

// isTLD reports whether s looks like a top-level domain, short and plain
// enough to print as is.
func isTLD(s string) bool {
	if s == "" || len(s) > 6 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

func firstRune(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || r == utf8.RuneError || r < ' ' {
		return ""
	}
	return string(r)
}
