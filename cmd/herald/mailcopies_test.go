package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

	"herald/subscribers"
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
	signUpWithFiles(t, h, dir, gone, kept)
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
	wantOneRemoved(t, dir, gone, kept, before, "the erase")

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

// signUpWithFiles signs addrs up through the form and waits for their
// confirmations' .eml files in dir.
func signUpWithFiles(t *testing.T, h *heraldServer, dir string, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {addr}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /subscribe %s: %d\n%s", addr, resp.StatusCode, body)
		}
	}
	waitOutboxFiles(t, h, dir, addrs...)
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

// wantOneRemoved checks the outbox after removing gone's files (what
// says by what): none holds gone, kept's confirmation is still there, and
// there is one file fewer than before.
func wantOneRemoved(t *testing.T, dir, gone, kept string, before int, what string) {
	t.Helper()
	g, after := outboxFilesHolding(t, dir, gone)
	if len(g) != 0 {
		t.Errorf("after %s, the outbox still holds the address in %v", what, g)
	}
	if k, _ := outboxFilesHolding(t, dir, kept); len(k) == 0 {
		t.Errorf("after %s, the other reader's confirmation is gone too", what)
	}
	if after != before-1 {
		t.Errorf("%d .eml files before %s, %d after; want one fewer", before, what, after)
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
	signUpWithFiles(t, h, dir, gone, kept)
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
	wantOneRemoved(t, dir, gone, kept, before, "the purge")
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
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(ctx, []string{"Ann@Example.org"}, time.Time{})
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

	if n, err := (&outboxCopies{dir: filepath.Join(dir, "missing")}).ForgetRecipients(ctx, []string{"ann@example.org"}, time.Time{}); n != 0 || err != nil {
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
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), []string{"a@x.io", "ann@example.org", "christopher.long@example.net", "ann@example.org"}, time.Time{})
	if err != nil || n != 4 {
		t.Errorf("ForgetRecipients = %d, %v; want 4, nil", n, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "other.eml" {
		t.Errorf("left in the outbox: %v, %v; want other.eml only", entries, err)
	}
	if n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), nil, time.Time{}); n != 0 || err != nil {
		t.Errorf("no addresses: %d, %v; want 0, nil", n, err)
	}
}

// With a cut-off, only the files kept before it go: a reader purged as an
// unconfirmed signup who signs up again keeps the new confirmation.
func TestOutboxCopiesKeptBefore(t *testing.T) {
	dir := t.TempDir()
	cut := time.Now().Add(-time.Minute)
	for name, age := range map[string]time.Duration{"old.eml": -time.Hour, "new.eml": time.Second, "at.eml": 0} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("To: <ann@example.org>\r\n\r\nConfirm"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, cut.Add(age), cut.Add(age)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), []string{"ann@example.org"}, cut)
	if err != nil || n != 1 {
		t.Errorf("ForgetRecipients = %d, %v; want 1, nil", n, err)
	}
	for name, want := range map[string]bool{"old.eml": false, "new.eml": true, "at.eml": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s kept: %v, want %v", name, err == nil, want)
		}
	}
}

// refLocalPartByte and refDomainContinues restate the whole-address rule
// for refHolds, independently of the matcher's own functions.
func refLocalPartByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80 ||
		strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", rune(c))
}

func refDomainContinues(rest []byte) bool {
	label := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80 }
	return len(rest) > 0 && (label(rest[0]) || rest[0] == '.' && len(rest) > 1 && label(rest[1]))
}

// refHolds is the brute-force reference for addressMatcher: text, lower
// case, holds one of addrs, lower case, at a place where nothing before it
// could belong to a local part and nothing after it extends its domain.
func refHolds(text []byte, addrs []string) bool {
	text = bytes.ToLower(text)
	for _, a := range addrs {
		a := []byte(strings.ToLower(a))
		if len(a) == 0 {
			continue
		}
		for j := 0; j+len(a) <= len(text); j++ {
			if !bytes.Equal(text[j:j+len(a)], a) {
				continue
			}
			if (j == 0 || !refLocalPartByte(text[j-1])) && !refDomainContinues(text[j+len(a):]) {
				return true
			}
		}
	}
	return false
}

// manyAddresses returns 500 distinct addresses as the store hands them
// over (NormalizeAddress), among them ones that are a suffix, a prefix or
// a dotted variant of another.
func manyAddresses(t testing.TB, rnd *rand.Rand) []string {
	addrs := []string{
		"bob@example.org", "jimbob@example.org", "bob@example.org.uk", "ob@example.org",
		"b.ob@example.org", "bob@example.or", "bob@xample.org", "bob+news@example.org",
		"o'neil@example.ie", "x@y.io", "a-b@c-d.example", "1@2.example",
	}
	words := []string{"ann", "bob", "jim", "jo", "mary", "x", "news", "info", "a.b", "c-d", "e_f", "g+h"}
	domains := []string{"example.org", "example.org.uk", "mail.example", "x.io", "e.example.net", "sub-d.example.com"}
	seen := make(map[string]bool)
	for _, a := range addrs {
		seen[a] = true
	}
	for len(addrs) < 500 {
		local := words[rnd.IntN(len(words))]
		for rnd.IntN(2) == 0 {
			local += []string{"", ".", "-", "_"}[rnd.IntN(4)] + words[rnd.IntN(len(words))]
		}
		a := local + strconv.Itoa(rnd.IntN(50)) + "@" + domains[rnd.IntN(len(domains))]
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		if n, err := subscribers.NormalizeAddress(a); n != a || err != nil {
			t.Fatalf("NormalizeAddress(%q) = %q, %v", a, n, err)
		}
	}
	return addrs
}

// randomCase changes the case of some of s's ASCII letters.
func randomCase(rnd *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' && rnd.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// messageAround returns a small message that mentions some of addrs, or
// near misses of them, with the bytes around each chosen to test the
// whole-address rule.
func messageAround(rnd *rand.Rand, addrs []string) []byte {
	seps := []string{" ", "<", ">", ", ", ".", ". ", ".x", "-", "_", "+", "\r\n", "\"", "(", ")", ";", ":", "=", "'", "@", "..", "\xc3\xa9", "a", "9", "/", ".-", ""}
	var b bytes.Buffer
	b.WriteString("To: ")
	for range 1 + rnd.IntN(6) {
		a := addrs[rnd.IntN(len(addrs))]
		switch rnd.IntN(6) {
		case 0: // a longer address containing it
			a = []string{"x", "jim", "a.", "+"}[rnd.IntN(4)] + a
		case 1:
			a += []string{"x", ".uk", "-1", "0"}[rnd.IntN(4)]
		case 2: // a shorter one
			a = a[:rnd.IntN(len(a))]
		}
		b.WriteString(seps[rnd.IntN(len(seps))])
		b.WriteString(randomCase(rnd, a))
		b.WriteString(seps[rnd.IntN(len(seps))])
		b.WriteString(strings.Repeat("lorem ipsum @ ", rnd.IntN(3)))
	}
	return b.Bytes()
}

// With 500 addresses and a few of other shapes, the matcher finds exactly what the brute-force
// reference finds, at any chunk size, and ForgetRecipients removes exactly
// the files the reference says hold one of them.
func TestAddressMatcherManyAddresses(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	addrs := append(manyAddresses(t, rnd),
		// Not what the store hands over; found by the same rule all the same.
		"weird..dots@example.org", "trailing@dot.example.", "two@at@example.org",
		`"quoted"@example.org`, "under@score_d.example", "emptydomain@")
	var texts [][]byte
	for range 400 {
		texts = append(texts, messageAround(rnd, addrs))
	}
	// The cases around bob@example.org spelled out.
	for _, s := range []string{
		"To: <Bob@Example.ORG>", "To: jimbob@example.org", "To: bob@example.org.uk",
		"bob@example.org.", "(BOB@example.org)", "x.bob@example.org", "bob@example.org-x",
		"bob@example.org_x", "bob@example.org..uk", "mail jimbob@example.org, bob@example.org.",
		"\xc3bob@example.org", "bob@example.org\xc3", "ob@example.org", "bob@@example.org",
		"weird..dots@example.org", "x.weird..dots@example.org", "trailing@dot.example.",
		"trailing@dot.example.x", "two@at@example.org", "two@at@example.orgs", "\"quoted\"@example.org",
		"under@score_d.example", "emptydomain@", "emptydomain@.", "emptydomain@x",
	} {
		texts = append(texts, []byte(s))
	}
	// The window kept between chunks is as long as the longest local part
	// and the longest domain: those addresses alone, and with a byte more.
	var longestLocal, longestDomain string
	for _, a := range addrs[:500] {
		at := strings.IndexByte(a, '@')
		if at > strings.IndexByte(longestLocal, '@') {
			longestLocal = a
		}
		if len(a)-at > len(longestDomain)-strings.IndexByte(longestDomain, '@') {
			longestDomain = a
		}
	}
	for _, a := range []string{longestLocal, longestDomain} {
		texts = append(texts, []byte("To: <"+a+">\r\n"), []byte(a), []byte("x"+a), []byte(a+"x"))
	}
	var holding int
	for _, text := range texts {
		want := refHolds(text, addrs)
		if want {
			holding++
		}
		for _, size := range []int{1, 2, 7, 64, 32 << 10} {
			m := newAddressMatcher(addrs...)
			if got, err := m.in(bytes.NewReader(text), make([]byte, size)); err != nil || got != want {
				t.Errorf("in(%q), buffer %d = %v, %v; want %v", text, size, got, err, want)
			}
			if got, err := m.in(iotest.HalfReader(bytes.NewReader(text)), make([]byte, size)); err != nil || got != want {
				t.Errorf("in(%q) by halves, buffer %d = %v, %v; want %v", text, size, got, err, want)
			}
		}
	}
	if holding < len(texts)/5 || holding > len(texts)*4/5 {
		t.Fatalf("%d of %d texts hold an address: the test needs more of both", holding, len(texts))
	}

	dir := t.TempDir()
	want := map[string]bool{}
	for i, text := range texts {
		name := strconv.Itoa(i) + ".eml"
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o640); err != nil {
			t.Fatal(err)
		}
		want[name] = refHolds(text, addrs)
	}
	n, err := (&outboxCopies{dir: dir}).ForgetRecipients(context.Background(), addrs, time.Time{})
	if err != nil || n != holding {
		t.Errorf("ForgetRecipients = %d, %v; want %d, nil", n, err, holding)
	}
	for name, held := range want {
		_, err := os.Stat(filepath.Join(dir, name))
		if removed := os.IsNotExist(err); removed != held {
			t.Errorf("%s removed: %v, want %v", name, removed, held)
		}
	}
}

// benchMessage returns a sent message of about 17 KB: headers, a text
// and an HTML part, a handful of '@' bytes, none of them a reader's.
func benchMessage() []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <bounces+8a3f@news.example>\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; d=news.example; s=herald; h=from:to:subject:date:message-id;\r\n" +
		" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r\n" +
		"From: The Weekly <editor@news.example>\r\n" +
		"To: Reader <reader.not.erased@example.com>\r\n" +
		"Subject: This week: forty-two things worth reading\r\n" +
		"Message-ID: <20250101.8a3f9c@news.example>\r\n" +
		"List-Unsubscribe: <mailto:unsubscribe+8a3f@news.example>, <https://news.example/u/8a3f9c2e>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; b.Len() < 8<<10; i++ {
		fmt.Fprintf(&b, "%d. An article about something, with a link: https://news.example/a/%d?utm=3Dweekly\r\n"+
			"A summary of the article that goes on for a while, as summaries do, and ends.\r\n\r\n", i, i)
	}
	b.WriteString("--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; b.Len() < 17<<10; i++ {
		fmt.Fprintf(&b, "<p style=3D\"margin:0 0 1em\"><a href=3D\"https://news.example/a/%d\">An article about =\r\n"+
			"something</a> &mdash; a summary that goes on for a while.</p>\r\n", i)
	}
	b.WriteString("<p>Questions? Write to editor@news.example.</p>\r\n--b1--\r\n")
	return b.Bytes()
}

// One pass of the matcher over a 17 KB message for 500 addresses (the
// retention purge's batch), none of them in it: the whole message is read.
func BenchmarkAddressMatcher500(b *testing.B) {
	addrs := manyAddresses(b, rand.New(rand.NewPCG(1, 2)))
	msg := benchMessage()
	m := newAddressMatcher(addrs...)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		found, err := m.in(bytes.NewReader(msg), buf)
		if err != nil || found {
			b.Fatalf("in = %v, %v; want false, nil", found, err)
		}
	}
}
