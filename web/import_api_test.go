package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"herald/apitokens"
	"herald/subscribers"
)

// importReportJSON is the default answer of an import.
type importReportJSON struct {
	Rejections []importRejection `json:"rejections"`
	Summary    importSummary     `json:"summary"`
	Error      *apiErrorBody     `json:"error"`
}

func (h *realHarness) postCSV(t *testing.T, query, csv string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	return h.do(t, http.MethodPost, "/api/v1/subscribers/import"+query, "text/csv", strings.NewReader(csv), headers...)
}

func (h *realHarness) count(t *testing.T) int {
	t.Helper()
	n := 0
	if err := h.admin.Each(context.Background(), subscribers.Filter{}, func(*subscribers.Subscriber) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportHappyPath(t *testing.T) {
	h := newRealHarness(t)
	rec := h.postCSV(t, "", "email,name,newsletters\nann@example.org,Ann,daily\nBob@Example.org,,daily weekly\nann@example.org,Ann,daily\n")
	wantStatus(t, rec, 200)
	rep := decode[importReportJSON](t, rec)
	want := importSummary{Status: "pending", Rows: 3, Created: 2, Unchanged: 1, IgnoredColumns: []string{}}
	if fmt.Sprint(rep.Summary) != fmt.Sprint(want) || len(rep.Rejections) != 0 || rep.Error != nil {
		t.Errorf("report = %+v, want summary %+v", rep, want)
	}
	if h.wakes != 1 {
		t.Errorf("wakes = %d: the confirmations must be sent", h.wakes)
	}
	// Each row whole: subscriber, consent, event and confirmation together.
	counts, err := h.db.CountMessages(context.Background())
	if err != nil || counts["queued"] != 2 {
		t.Errorf("queued confirmations = %v, %v", counts, err)
	}
	subs, _ := h.db.FindSubscribers(context.Background(), subscribers.Filter{Query: "bob@", Limit: 5})
	if len(subs) != 1 || subs[0].Status != subscribers.StatusPending || strings.Join(subs[0].Newsletters, " ") != "daily weekly" {
		t.Errorf("bob = %+v", subs)
	}
	if strings.Contains(h.log.String(), "ann@example.org") {
		t.Error("an address reached the log")
	}
}

// TestImportMalformed: every kind of bad row is reported with its line and
// masked address, the good rows around it are imported, and no bad row
// left anything behind.
func TestImportMalformed(t *testing.T) {
	h := newRealHarness(t)
	ctx := context.Background()
	// Already known: unsubscribed and bounced addresses are never re-added.
	h.importCSV(t, "email\ngone@example.org\nbounce@example.org\n")
	gone, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "gone@", Limit: 1})
	wantStatus(t, h.json(t, http.MethodPatch, fmt.Sprintf("/api/v1/subscribers/%d", gone[0].ID), `{"status":"unsubscribed"}`), 200)
	bounce, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "bounce@", Limit: 1})
	bounceOne(t, h, bounce[0].ID)

	var b bytes.Buffer
	b.WriteString("name,email,newsletters\n")                        // line 1
	b.WriteString("Ann,ann@example.org,daily\n")                     // 2: good
	b.WriteString(`"Bad "quote",bad@example.org,daily` + "\n")       // 3: broken quoting
	b.WriteString("Cy,cy@example.org,daily\n")                       // 4: good
	b.WriteString("\xff\xfeLatin,latin@example.org,daily\n")         // 5: not UTF-8
	b.WriteString("Dee\n")                                           // 6: no email field
	b.WriteString("Big," + strings.Repeat("x", 10<<20) + ",daily\n") // 7: a 10 MB line
	b.WriteString("Eve,not-an-address,daily\n")                      // 8: invalid address
	b.WriteString("Fay,fay@example.org,monthly\n")                   // 9: unknown newsletter
	b.WriteString("Gus,gone@example.org,daily\n")                    // 10: unsubscribed
	b.WriteString("Hal,bounce@example.org,daily\n")                  // 11: bounced
	b.WriteString("Ivy,ivy@example.org,weekly\n")                    // 12: good
	rec := h.do(t, http.MethodPost, "/api/v1/subscribers/import?status=active", "text/csv", &b)
	wantStatus(t, rec, 200)
	rep := decode[importReportJSON](t, rec)
	if rep.Summary.Created != 3 || rep.Summary.Rejected != 8 || rep.Summary.Rows != 11 || rep.Error != nil {
		t.Errorf("summary = %+v, error %+v", rep.Summary, rep.Error)
	}
	want := map[int]string{3: "quoting", 5: "UTF-8", 6: "email column", 7: "longer than", 8: "", 9: "monthly", 10: "unsubscribed", 11: "bounced"}
	got := map[int]importRejection{}
	for _, r := range rep.Rejections {
		got[r.Line] = r
	}
	for line, reason := range want {
		r, ok := got[line]
		if !ok {
			t.Errorf("line %d not reported; report: %+v", line, rep.Rejections)
			continue
		}
		if !strings.Contains(r.Reason, reason) {
			t.Errorf("line %d: reason %q, want it to mention %q", line, r.Reason, reason)
		}
		if strings.Contains(r.Email, "@example.org") && !strings.Contains(r.Email, "•••") {
			t.Errorf("line %d: address not masked: %q", line, r.Email)
		}
	}
	if got[10].Email != "g•••@example.org" {
		t.Errorf("line 10 email = %q", got[10].Email)
	}
	for _, addr := range []string{"bad@", "latin@", "fay@"} {
		if s, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: addr, Limit: 1}); len(s) != 0 {
			t.Errorf("%s was written: %+v", addr, s[0])
		}
	}
	for _, addr := range []string{"ann@", "cy@", "ivy@"} {
		s, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: addr, Limit: 1})
		if len(s) != 1 || s[0].Status != subscribers.StatusActive {
			t.Errorf("%s not imported active: %+v", addr, s)
		}
	}
	if s, _ := h.db.FindSubscribers(ctx, subscribers.Filter{Query: "gone@", Limit: 1}); s[0].Status != subscribers.StatusUnsubscribed {
		t.Errorf("gone@ was re-added: %s", s[0].Status)
	}
}

// TestImportDryRun: a dry run reports exactly what the import then does,
// repeats across batches included, and writes nothing.
func TestImportDryRun(t *testing.T) {
	h := newRealHarness(t)
	var b strings.Builder
	b.WriteString("email,newsletters\n")
	for i := range 1500 {
		fmt.Fprintf(&b, "r%04d@example.org,daily\n", i)
		if i == 1200 {
			b.WriteString("r0003@example.org,daily\n") // a repeat from the first batch
			b.WriteString("oops,daily\n")
		}
	}
	csv := b.String()
	dry := decode[importReportJSON](t, h.postCSV(t, "?dry_run=true", csv))
	if h.count(t) != 0 {
		t.Fatalf("the dry run wrote %d subscribers", h.count(t))
	}
	if counts, _ := h.db.CountMessages(context.Background()); len(counts) != 0 {
		t.Fatalf("the dry run queued mail: %v", counts)
	}
	if h.wakes != 0 {
		t.Error("the dry run woke delivery")
	}
	real := decode[importReportJSON](t, h.postCSV(t, "", csv))
	if !dry.Summary.DryRun || real.Summary.DryRun {
		t.Error("dry_run is not reported")
	}
	dry.Summary.DryRun = false
	// A repeat of an address an earlier batch created is "updated" in a
	// dry run where the import finds it unchanged (see DryRun).
	dry.Summary.Unchanged, dry.Summary.Updated = dry.Summary.Unchanged+dry.Summary.Updated, 0
	if fmt.Sprint(dry.Summary) != fmt.Sprint(real.Summary) || fmt.Sprint(dry.Rejections) != fmt.Sprint(real.Rejections) {
		t.Errorf("dry run %+v %+v\nimport  %+v %+v", dry.Summary, dry.Rejections, real.Summary, real.Rejections)
	}
	if real.Summary.Created != 1500 || real.Summary.Unchanged != 1 || real.Summary.Rejected != 1 || h.count(t) != 1500 {
		t.Errorf("import = %+v, %d stored", real.Summary, h.count(t))
	}
}

func TestImportMultipartAndMap(t *testing.T) {
	h := newRealHarness(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("note", "ignored"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "members.csv")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(fw, "\ufeffE-mail,\"Full Name\",Lists,Joined\nann@example.org,Ann Lee,weekly,2020\n")
	mw.Close()
	rec := h.do(t, http.MethodPost, "/api/v1/subscribers/import?status=active&map="+
		"email:e-mail,name:Full%20Name,newsletters:Lists", mw.FormDataContentType(), &body)
	wantStatus(t, rec, 200)
	rep := decode[importReportJSON](t, rec)
	if rep.Summary.Created != 1 || strings.Join(rep.Summary.IgnoredColumns, ",") != "joined" {
		t.Errorf("report = %+v", rep)
	}
	s, _ := h.db.FindSubscribers(context.Background(), subscribers.Filter{Query: "ann@", Limit: 1})
	if len(s) != 1 || s[0].Name != "Ann Lee" || strings.Join(s[0].Newsletters, " ") != "weekly" || s[0].Status != subscribers.StatusActive {
		t.Errorf("ann = %+v", s)
	}

	var noFile bytes.Buffer
	mw = multipart.NewWriter(&noFile)
	_ = mw.WriteField("csv", "email\na@example.org\n")
	mw.Close()
	wantAPIErr(t, h.do(t, http.MethodPost, "/api/v1/subscribers/import", mw.FormDataContentType(), &noFile), 422, "invalid", "file")
}

func TestImportNDJSON(t *testing.T) {
	h := newRealHarness(t)
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 2100 {
		fmt.Fprintf(&b, "r%04d@example.org\n", i)
	}
	b.WriteString("nope\n")
	rec := h.postCSV(t, "?status=active", b.String(), "Accept", "application/x-ndjson")
	wantStatus(t, rec, 200)
	wantHeader(t, rec, "Content-Type", "application/x-ndjson")
	var types []string
	for line := range strings.SplitSeq(strings.TrimSpace(rec.Body.String()), "\n") {
		var v struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		types = append(types, v.Type)
	}
	if got := strings.Join(types, " "); got != "progress progress rejected progress summary" {
		t.Errorf("lines = %s", got)
	}
	wantBody(t, rec, `"type":"summary"`, `"created":2100`, `"rejected":1`)
}

func TestImportBadInput(t *testing.T) {
	h := newRealHarness(t)
	_, readTok, err := h.tokens.Create(context.Background(), "ro", apitokens.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, query, contentType, body string
		headers                        []string
		status                         int
		code, fragment                 string
	}{
		{"no email column", "", "text/csv", "name,newsletters\nAnn,daily\n", nil, 422, "invalid", "no email column"},
		{"empty file", "", "text/csv", "", nil, 422, "invalid", "empty"},
		{"header twice", "", "text/csv", "email,email\n", nil, 422, "invalid", "twice"},
		{"status", "?status=bounced", "text/csv", "email\n", nil, 422, "invalid", "status"},
		{"dry_run", "?dry_run=maybe", "text/csv", "email\n", nil, 422, "invalid", "dry_run"},
		{"map syntax", "?map=email", "text/csv", "email\n", nil, 422, "invalid", "map"},
		{"map column", "?map=phone:Tel", "text/csv", "email\n", nil, 422, "invalid", "phone"},
		{"map header missing", "?map=email:E-mail", "text/csv", "email\n", nil, 422, "invalid", "E-mail"},
		{"json body", "", "application/json", `{"email":"a@example.org"}`, nil, 415, "unsupported", "text/csv"},
		{"read token", "", "text/csv", "email\na@example.org\n", []string{"Authorization", "Bearer " + readTok}, 403, "forbidden", "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := h.do(t, http.MethodPost, "/api/v1/subscribers/import"+tt.query, tt.contentType, strings.NewReader(tt.body), tt.headers...)
			wantAPIErr(t, rec, tt.status, tt.code, tt.fragment)
		})
	}
	if h.count(t) != 0 {
		t.Errorf("bad requests wrote %d subscribers", h.count(t))
	}

	// Over the limit by its Content-Length: refused before reading.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/subscribers/import", strings.NewReader("email\n"))
	req.Header.Set("Authorization", bearer)
	req.Header.Set("Content-Type", "text/csv")
	req.ContentLength = ImportBodyLimit + 1
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	wantAPIErr(t, rec, 413, "too_large", "512 MiB")
	h.doc.check(t, req, rec)
}

// TestImportBodyLimitMidStream: a body that passes the limit while rows are
// being imported stops the import; the rows before it stay imported and the
// report ends with the error.
func TestImportBodyLimitMidStream(t *testing.T) {
	h := newRealHarness(t)
	h.srv.bodyLimits["POST /api/v1/subscribers/import"] = 64 << 10 // as if 512 MiB had passed
	var b strings.Builder
	b.WriteString("email\n")
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "r%06d@example.org\n", i)
		if i == 5 {
			b.WriteString("bad\n") // the report starts streaming here
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/subscribers/import?status=active", strings.NewReader(b.String()))
	req.ContentLength = -1 // sent chunked: the limit is met while reading
	req.Header.Set("Authorization", bearer)
	req.Header.Set("Content-Type", "text/csv")
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	h.doc.check(t, req, rec)
	wantStatus(t, rec, 200)
	rep := decode[importReportJSON](t, rec)
	if rep.Error == nil || rep.Error.Code != "too_large" {
		t.Fatalf("report error = %+v", rep.Error)
	}
	if n := h.count(t); n == 0 || n != rep.Summary.Created || n >= 10000 {
		t.Errorf("%d stored, summary %+v", n, rep.Summary)
	}
}
