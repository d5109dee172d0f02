package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/subscribers"
)

// ImportBodyLimit is the largest CSV POST /api/v1/subscribers/import
// accepts: some ten million rows. The body is streamed, never held.
const ImportBodyLimit int64 = 512 << 20

// importIdle bounds how long an import may go without reading a batch of
// rows: the server's read and write timeouts are meant for ordinary
// requests, so an import pushes its deadlines on by this much after each
// batch instead, and a stalled client is still cut off.
const importIdle = 2 * time.Minute

// mimeNDJSON is the type of the streamed, line-per-event import report.
const mimeNDJSON = "application/x-ndjson"

// importRejection is one row an import did not take.
type importRejection struct {
	Line   int    `json:"line"`
	Email  string `json:"email"` // masked
	Reason string `json:"reason"`
}

// importSummary counts what an import did (or, in a dry run, would do).
type importSummary struct {
	DryRun         bool     `json:"dry_run"`
	Status         string   `json:"status"`
	Rows           int      `json:"rows"`
	Created        int      `json:"created"`
	Updated        int      `json:"updated"`
	Unchanged      int      `json:"unchanged"`
	Rejected       int      `json:"rejected"`
	IgnoredColumns []string `json:"ignored_columns"`
}

// importReport writes the answer to an import as it goes, so that neither
// side holds a long list of rejections: by default one JSON object,
//
//	{"rejections": [...], "summary": {...}}
//
// (with "error" after the summary when the import stopped part way), or,
// when the client accepts application/x-ndjson, one JSON object a line,
// each with a "type": rejected, progress (after each batch), summary,
// error. Nothing is written before the first rejection, so a file that
// cannot be read at all is an ordinary error answer.
type importReport struct {
	c       echo.Context
	ndjson  bool
	started bool
	count   int // rejections written
	err     error
}

func (r *importReport) start() {
	if r.started {
		return
	}
	r.started = true
	res := r.c.Response()
	if r.ndjson {
		res.Header().Set(echo.HeaderContentType, mimeNDJSON)
	} else {
		res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	res.WriteHeader(http.StatusOK)
	if !r.ndjson {
		r.write([]byte(`{"rejections":[`))
	}
}

func (r *importReport) write(b []byte) {
	if r.err == nil {
		_, r.err = r.c.Response().Write(b)
	}
}

func (r *importReport) line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		r.err = err
		return
	}
	r.write(append(b, '\n'))
}

func (r *importReport) reject(rej subscribers.Rejection) {
	r.start()
	item := importRejection{Line: rej.Line, Reason: rej.Reason}
	if e := strings.TrimSpace(rej.Email); e != "" {
		item.Email = maskEmail(e)
	}
	if r.ndjson {
		r.line(struct {
			Type string `json:"type"`
			importRejection
		}{"rejected", item})
		return
	}
	b, err := json.Marshal(item)
	if err != nil {
		r.err = err
		return
	}
	if r.count > 0 {
		r.write([]byte{','})
	}
	r.count++
	r.write(b)
}

func (r *importReport) progress(rows int) {
	if r.ndjson {
		r.start()
		r.line(struct {
			Type string `json:"type"`
			Rows int    `json:"rows"`
		}{"progress", rows})
	}
	if r.started {
		r.c.Response().Flush()
	}
}

// finish writes the summary and, when the import stopped part way, the
// error, and ends the answer.
func (r *importReport) finish(sum importSummary, failure *apiErrorBody) {
	r.start()
	if r.ndjson {
		r.line(struct {
			Type string `json:"type"`
			importSummary
		}{"summary", sum})
		if failure != nil {
			r.line(struct {
				Type  string       `json:"type"`
				Error apiErrorBody `json:"error"`
			}{"error", *failure})
		}
		return
	}
	r.write([]byte(`],"summary":`))
	b, err := json.Marshal(sum)
	if err != nil {
		r.err = err
		return
	}
	r.write(b)
	if failure != nil {
		eb, _ := json.Marshal(failure)
		r.write([]byte(`,"error":`))
		r.write(eb)
	}
	r.write([]byte("}\n"))
}

// handleImportSubscribers streams a CSV of subscribers in through the CLI
// import's engine: the body is text/csv (or multipart/form-data with the
// file in the field "file"), read as a stream; query parameters status
// (pending, the default, or active), dry_run (true: check and report,
// write nothing) and map (COLUMN:HEADER pairs renaming the file's columns,
// e.g. email:E-mail,name:Full Name). The answer reports each rejected row
// (line, masked address, reason) and a summary, streamed (importReport).
func (s *Server) handleImportSubscribers(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	opts := subscribers.ImportOptions{Status: subscribers.StatusPending, Source: "import:api"}
	switch st := c.QueryParam("status"); st {
	case "", "pending":
	case "active":
		opts.Status = subscribers.StatusActive
	default:
		return herald.Errorf(herald.EINVALID, "status: must be pending or active.")
	}
	dryRun, err := boolParam(c, "dry_run")
	if err != nil {
		return err
	}
	var columns map[string]string
	if m := c.QueryParam("map"); m != "" {
		if columns, err = subscribers.ParseColumnMap(m); err != nil {
			return err
		}
	}
	body, err := csvBody(c)
	if err != nil {
		return err
	}
	in, err := subscribers.RenameColumns(body, columns)
	if err != nil {
		return readError(c, err)
	}

	rc := http.NewResponseController(c.Response())
	extend := func() {
		// Not every ResponseWriter (a test recorder) has deadlines.
		_ = rc.SetReadDeadline(time.Now().Add(importIdle))
		_ = rc.SetWriteDeadline(time.Now().Add(importIdle))
	}
	extend()
	report := &importReport{c: c, ndjson: acceptsNDJSON(c)}
	ctx := c.Request().Context()
	stats, err := adm.Import(ctx, in, opts, dryRun, report.reject, func(rows int) {
		extend()
		report.progress(rows)
	})
	if report.err != nil {
		// The client is gone or not reading: nothing more can be said.
		s.log.LogAttrs(ctx, slog.LevelWarn, "import report not delivered",
			slog.String("error", report.err.Error()), slog.String("request_id", requestID(c)))
	}
	if stats.Created > 0 && !dryRun && opts.Status == subscribers.StatusPending {
		s.callWake() // the confirmations
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "subscribers imported",
		slog.Bool("dry_run", dryRun), slog.Int("rows", stats.Rows), slog.Int("created", stats.Created),
		slog.Int("updated", stats.Updated), slog.Int("rejected", stats.Rejected), slog.String("request_id", requestID(c)))
	if err != nil {
		err = readError(c, err)
		if !report.started {
			return err
		}
		// Rows so far are imported, each batch whole; say why it stopped.
		status, code, msg := classify(err)
		if status >= 500 {
			s.log.LogAttrs(ctx, slog.LevelError, "import stopped", slog.String("error", err.Error()),
				slog.String("request_id", requestID(c)))
		}
		report.finish(summaryOf(stats, opts, dryRun), &apiErrorBody{Code: code, Message: msg})
		return nil
	}
	report.finish(summaryOf(stats, opts, dryRun), nil)
	return nil
}

func summaryOf(st subscribers.ImportStats, opts subscribers.ImportOptions, dryRun bool) importSummary {
	sum := importSummary{
		DryRun: dryRun, Status: string(opts.Status), Rows: st.Rows, Created: st.Created, Updated: st.Updated,
		Unchanged: st.Unchanged, Rejected: st.Rejected, IgnoredColumns: st.IgnoredColumns,
	}
	if sum.IgnoredColumns == nil {
		sum.IgnoredColumns = []string{}
	}
	return sum
}

// csvBody returns the CSV stream of an import request: the body itself
// for text/csv, or the part named "file" of a multipart form, read as it
// arrives (never spooled to memory or disk).
func csvBody(c echo.Context) (io.Reader, error) {
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil && req.Header.Get(echo.HeaderContentType) != "" {
		return nil, herald.Errorf(herald.EUNSUPPORTED, "Send the file as text/csv, or as multipart/form-data in a field named file.")
	}
	switch mt {
	case "text/csv", "application/csv", "text/plain", "":
		return req.Body, nil
	case echo.MIMEMultipartForm:
		mr, err := req.MultipartReader()
		if err != nil {
			return nil, herald.Errorf(herald.EBADREQUEST, "The multipart form cannot be read: %s.", err.Error())
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil, herald.Errorf(herald.EINVALID, "file: the form has no field named file holding the CSV.")
			} else if err != nil {
				return nil, readError(c, herald.Errorf(herald.EBADREQUEST, "The multipart form cannot be read."))
			}
			if part.FormName() == "file" {
				return part, nil
			}
		}
	}
	return nil, herald.Errorf(herald.EUNSUPPORTED, "Send the file as text/csv, or as multipart/form-data in a field named file.")
}

// acceptsNDJSON reports whether the client asked for the NDJSON report.
func acceptsNDJSON(c echo.Context) bool {
	for part := range strings.SplitSeq(c.Request().Header.Get(echo.HeaderAccept), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), mimeNDJSON) {
			return true
		}
	}
	return false
}

// boolParam reads an optional true/false query parameter.
func boolParam(c echo.Context, name string) (bool, error) {
	switch c.QueryParam(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, herald.Errorf(herald.EINVALID, "%s: must be true or false.", name)
}

// handleExportSubscribers streams the subscribers matching status and
// newsletter as CSV (format=csv, the default: the columns of the CLI
// export, so a file imports back unchanged) or as a JSON array (format=json:
// the objects of GET /api/v1/subscribers). A failure after the first byte
// aborts the connection, so a truncated export never looks complete.
func (s *Server) handleExportSubscribers(c echo.Context) error {
	adm, err := s.subscriberAdmin()
	if err != nil {
		return err
	}
	f, err := subscriberFilter(c)
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	if format != "" && format != "csv" && format != "json" {
		return herald.Errorf(herald.EINVALID, "format: must be csv or json.")
	}
	_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Time{}) // a long list takes long
	ctx := c.Request().Context()
	res := c.Response()
	var n int
	if format == "json" {
		res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		res.Header().Set(echo.HeaderContentDisposition, `attachment; filename="subscribers.json"`)
		res.WriteHeader(http.StatusOK)
		err = s.exportJSON(ctx, adm, res, f, &n)
	} else {
		res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		res.Header().Set(echo.HeaderContentDisposition, `attachment; filename="subscribers.csv"`)
		res.WriteHeader(http.StatusOK)
		n, err = adm.ExportCSV(ctx, res, f)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelError, "export failed part way; connection aborted",
				slog.String("error", err.Error()), slog.Int("written", n), slog.String("request_id", requestID(c)))
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}

// exportJSON streams the subscribers matching f as a JSON array, one
// object a line.
func (s *Server) exportJSON(ctx context.Context, adm SubscriberAdmin, w *echo.Response, f subscribers.Filter, n *int) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	err := adm.Each(ctx, f, func(sub *subscribers.Subscriber) error {
		b, err := json.Marshal(toJSON(sub))
		if err != nil {
			return err
		}
		sep := ",\n"
		if *n == 0 {
			sep = "\n"
		}
		*n++
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("export subscribers as JSON: %w", err)
	}
	_, err = io.WriteString(w, "\n]\n")
	return err
}
