package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/jackc/pgx/v5"
)

// outboxFilesHolding returns the names of the .eml files in dir whose
// bytes contain s, ignoring ASCII case, and how many .eml files there are.
func outboxFilesHolding(t *testing.T, dir, s string) (names []string, total int) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		total++
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
			names = append(names, e.Name())
		}
	}
	return names, total
}

// Erasing a reader through the admin API, with the outbox transport,
// removes the .eml files addressed to them and no other; with the
// directory gone, an erase still succeeds.
func TestEndToEndEraseRemovesOutboxFiles(t *testing.T) {
	h := startHeraldWith(t, 0, "")
	dir := filepath.Join(filepath.Dir(h.config), "outbox")
	const gone, kept = "Ann.Erased@example.org", "ben.kept@example.org"
	for _, addr := range []string{gone, kept} {
		if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {addr}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /subscribe %s: %d\n%s", addr, resp.StatusCode, body)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, _ := outboxFilesHolding(t, dir, gone)
		k, _ := outboxFilesHolding(t, dir, kept)
		if len(g) > 0 && len(k) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no confirmation files in the outbox after 15 s (%d for the one erased, %d for the one kept)\n%s", len(g), len(k), h.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, before := outboxFilesHolding(t, dir, "")

	id := func(addr string) string {
		t.Helper()
		code, body := h.api(t, http.MethodGet, "/api/v1/subscribers?q="+url.QueryEscape(addr), "")
		var page struct {
			Items []struct {
				ID int64 `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(body), &page); code != http.StatusOK || err != nil || len(page.Items) != 1 {
			t.Fatalf("find %s: %d %v\n%s", addr, code, err, body)
		}
		return itoa(page.Items[0].ID)
	}
	keptID := id(kept)
	if code, body := h.api(t, http.MethodDelete, "/api/v1/subscribers/"+id(gone), ""); code != http.StatusNoContent {
		t.Fatalf("erase: %d\n%s", code, body)
	}
	g, after := outboxFilesHolding(t, dir, gone)
	if len(g) != 0 {
		t.Errorf("after the erase, the outbox still holds the address in %v", g)
	}
	if k, _ := outboxFilesHolding(t, dir, kept); len(k) == 0 {
		t.Errorf("the other reader's confirmation was removed too")
	}
	if after != before-1 {
		t.Errorf("%d .eml files before the erase, %d after; want one fewer", before, after)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, body := h.api(t, http.MethodDelete, "/api/v1/subscribers/"+keptID, ""); code != http.StatusNoContent {
		t.Errorf("erase with the outbox directory gone: %d\n%s", code, body)
	}
	if code := h.stop(); code != exitOK {
		t.Fatalf("serve exited %d:\n%s", code, h.stderr.String())
	}
	if logs := strings.ToLower(h.stderr.String()); strings.Contains(logs, strings.ToLower(gone)) || strings.Contains(logs, kept) {
		t.Errorf("the log holds an erased address:\n%s", logs)
	}
}

// waitOutboxFiles waits until the outbox holds a file for each of addrs.
func waitOutboxFiles(t *testing.T, h *heraldServer, dir string, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range addrs {
		for {
			if names, _ := outboxFilesHolding(t, dir, addr); len(names) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no file in the outbox for one of the readers after 15 s\n%s", h.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// ageSubscriber moves the last change of the subscriber with that address
// age into the past, in the database the test's herald commands use.
func ageSubscriber(t *testing.T, config, addr string, age time.Duration) {
	t.Helper()
	ctx := context.Background()
	if dsn := os.Getenv("HERALD_DATABASE_DSN"); os.Getenv("HERALD_DATABASE_DRIVER") == "postgres" {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tag, err := conn.Exec(ctx, `UPDATE subscribers SET updated_at = now() - $1::interval WHERE lower(email) = lower($2)`,
			strconv.FormatInt(int64(age/time.Second), 10)+" seconds", addr)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("age the subscriber: %v, %v", tag, err)
		}
		return
	}
	db, err := sql.Open("sqlite3", filepath.Join(filepath.Dir(config), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, `UPDATE subscribers SET updated_at = ? WHERE lower(email) = lower(?)`,
		time.Now().Add(-age).UnixMilli(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("age the subscriber: %d rows, %v", n, err)
	}
}

// The retention purge of an unconfirmed signup, with the outbox transport,
// removes the .eml files addressed to them and no other.
func TestEndToEndRetentionRemovesOutboxFiles(t *testing.T) {
	eachEngine(t, testEndToEndRetentionRemovesOutboxFiles)
}

func testEndToEndRetentionRemovesOutboxFiles(t *testing.T) {
	h := startHeraldWith(t, 0, "")
	dir := filepath.Join(filepath.Dir(h.config), "outbox")
	const gone, kept = "Old.Pending@example.org", "new.pending@example.org"
	for _, addr := range []string{gone, kept} {
		if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {addr}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /subscribe %s: %d\n%s", addr, resp.StatusCode, body)
		}
	}
	waitOutboxFiles(t, h, dir, gone, kept)
	if code := h.stop(); code != exitOK {
		t.Fatalf("serve exited %d:\n%s", code, h.stderr.String())
	}
	_, before := outboxFilesHolding(t, dir, "")

	// Both never confirmed; one signed up 60 days ago (unconfirmed
	// signups are kept 30 days by default).
	ageSubscriber(t, h.config, gone, 60*24*time.Hour)
	r := runHerald(t, "", "retention", "run", "--config", h.config)
	if r.code != exitOK {
		t.Fatalf("retention run: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "purged 1 unconfirmed signups (and 1 of their outbox files)") {
		t.Errorf("retention run printed %q", r.stdout)
	}
	g, after := outboxFilesHolding(t, dir, gone)
	if len(g) != 0 {
		t.Errorf("after the purge, the outbox still holds the address in %v", g)
	}
	if k, _ := outboxFilesHolding(t, dir, kept); len(k) == 0 {
		t.Errorf("the other signup's confirmation was removed too")
	}
	if after != before-1 {
		t.Errorf("%d .eml files before the purge, %d after; want one fewer", before, after)
	}
	if out := strings.ToLower(h.stderr.String() + r.stdout + r.stderr); strings.Contains(out, strings.ToLower(gone)) || strings.Contains(out, kept) {
		t.Errorf("the output holds an address:\n%s", out)
	}
}

// ForgetRecipients removes the files that hold the address as a whole
// address, in any ASCII case, wherever a chunk boundary falls, and leaves
// files that hold a longer address containing it.
func TestOutboxCopiesForgetRecipient(t *testing.T) {
	ctx := context.Background()
	files := map[string]string{
		"a.eml":        "Return-Path: <bounces@news.example>\r\nTo: Ann <ann@example.org>\r\n\r\nhello\r\n",
		"upper.eml":    "To: ANN@EXAMPLE.ORG\r\n\r\nhello\r\n",
		"end.eml":      "X: 1\r\n\r\nwrite to ann@example.org",
		"sentence.eml": "Body: mail ann@example.org.\r\n",
		"longer.eml":   "To: <joann@example.org>\r\n\r\n",
		"dotted.eml":   "To: <jo.ann@example.org>\r\n\r\n",
		"subdomain.eml": "To: <ann@example.org.uk>\r\n\r\n" +
			"and <ann@example.organic>\r\n",
		"other.eml":         "To: <ben@example.org>\r\n\r\n",
		".outbox-1.tmp":     "To: <ann@example.org>\r\n\r\n",
		"notes.txt":         "ann@example.org",
		"ann@example.org.d": "", // a directory: left alone
	}
	dir := t.TempDir()
	for name, text := range files {
		if strings.HasSuffix(name, ".d") {
			if err := os.Mkdir(filepath.Join(dir, name), 0o750); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(ctx, []string{"Ann@Example.org"})
	if err != nil || n != 4 {
		t.Errorf("ForgetRecipients = %d, %v; want 4, nil", n, err)
	}
	for name := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		removed := os.IsNotExist(err)
		want := name == "a.eml" || name == "upper.eml" || name == "end.eml" || name == "sentence.eml"
		if removed != want {
			t.Errorf("%s removed: %v, want %v", name, removed, want)
		}
	}

	if n, err := (&outboxCopies{dir: filepath.Join(dir, "missing")}).ForgetRecipients(ctx, []string{"ann@example.org"}); n != 0 || err != nil {
		t.Errorf("missing directory: %d, %v; want 0, nil", n, err)
	}
}

// The matcher finds an address split across reads of any size.
func TestAddressMatcherChunks(t *testing.T) {
	for _, tt := range []struct {
		text string
		want bool
	}{
		{"To: <ann@example.org>\r\n", true},
		{"ann@example.org", true},
		{"xx ann@example.org.", true},
		{"joann@example.org", false},
		{"ann@example.org-x", false},
		{"ann@example.org.x", false},
		{"ann@example.or", false},
		{"ann@example.organn@example.org", false},
		{"ann@example.organn@example.org ann@example.org", true},
		{strings.Repeat("x", 100) + " ann@example.org " + strings.Repeat("y", 100), true},
	} {
		// Alone, and among a shorter and a longer address that the text
		// does not hold (the window kept between chunks is the longest's).
		for _, addrs := range [][]string{{"ann@example.org"}, {"a@x.io", "ann@example.org", "", "christopher.long@example.net"}} {
			for _, size := range []int{1, 2, 3, 5, 16, 17, 32 << 10} {
				m := newAddressMatcher(addrs...)
				got, err := m.in(iotest.OneByteReader(strings.NewReader(tt.text)), make([]byte, size))
				if err != nil || got != tt.want {
					t.Errorf("%q in(%q) one byte at a time, buffer %d = %v, %v; want %v", addrs, tt.text, size, got, err, tt.want)
				}
				got, err = m.in(strings.NewReader(tt.text), make([]byte, size))
				if err != nil || got != tt.want {
					t.Errorf("%q in(%q), buffer %d = %v, %v; want %v", addrs, tt.text, size, got, err, tt.want)
				}
			}
		}
	}
	if m := newAddressMatcher("", ""); m != nil {
		t.Errorf("a matcher for no address: %+v, want nil", m)
	}
}

// One pass through the directory removes the files of every address
// given, whatever its length, and no other.
func TestOutboxCopiesForgetRecipients(t *testing.T) {
	files := map[string]string{
		"ann.eml":   "To: <ann@example.org>\r\n\r\nhi",
		"long.eml":  strings.Repeat("x", 100) + "\r\nTo: Christopher.Long@Example.net\r\n",
		"short.eml": "Cc: a@x.io\r\n",
		"both.eml":  "To: ann@example.org, a@x.io\r\n",
		"other.eml": "To: <joann@example.org>, <aa@x.io>, <christopher.long@example.network>\r\n",
	}
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), []string{"a@x.io", "ann@example.org", "christopher.long@example.net", "ann@example.org"})
	if err != nil || n != 4 {
		t.Errorf("ForgetRecipients = %d, %v; want 4, nil", n, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "other.eml" {
		t.Errorf("left in the outbox: %v, %v; want other.eml only", entries, err)
	}
	if n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), nil); n != 0 || err != nil {
		t.Errorf("no addresses: %d, %v; want 0, nil", n, err)
	}
}
