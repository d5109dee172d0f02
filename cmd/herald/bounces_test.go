package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"herald/bounces"
	"herald/store/sqlite"
)

// bounceConfig writes a configuration that sends through the sink on port,
// with VERP and CFBL on, and returns its path and the database file.
func bounceConfig(t *testing.T, port int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "herald.db")
	text := `mail:
  from: "PassBlue <news@passblue.example>"
  postal_address: "777 UN Plaza, New York, NY 10017"
  transport: smtp
  bounce_domain: bounces.passblue.example
  cfbl_address: fbl@passblue.example
smtp:
  host: 127.0.0.1
  port: ` + strconv.Itoa(port) + `
  tls: none
newsletters:
  - id: daily
    name: The Daily Brief
    schedule: "0 7 * * 1-5"
database:
  dsn: ` + db + `
log:
  level: warn
`
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, db
}

// sentDigest is one digest the sink received.
type sentDigest struct {
	returnPath string
	env        *enmime.Envelope
	raw        []byte
}

// TestBouncesEndToEnd sends a digest through SMTP with VERP and CFBL on,
// checks the headers and return paths, then imports a Maildir of bounces
// and complaints about it into the same SQLite file.
func TestBouncesEndToEnd(t *testing.T) {
	s, port := startSink(t)
	path, dbPath := bounceConfig(t, port)
	posts := t.TempDir()
	writeArticle(t, posts, "first", "First Story", time.Now().Add(-time.Hour))
	if r := runHerald(t, "", "articles", "import", posts, "--config", path); r.code != exitOK {
		t.Fatalf("articles import: %d %s%s", r.code, r.stdout, r.stderr)
	}
	csv := "email,name,newsletters\nana@example.org,Ana,daily\nben@example.org,,daily\ncara@example.org,,daily\n"
	if r := runHerald(t, csv, "subscribers", "import", "-", "--status", "active", "--config", path); r.code != exitOK {
		t.Fatalf("subscribers import: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := runHerald(t, "", "digest", "send", "daily", "--config", path); r.code != exitOK {
		t.Fatalf("digest send: %d %s%s", r.code, r.stdout, r.stderr)
	}

	// What was sent: a VERP return path per message, and the complaint
	// feedback headers.
	key := readSecret(t, dbPath, verpKeyName)
	sent := map[string]sentDigest{}
	s.mu.Lock()
	for _, m := range s.messages {
		env, err := enmime.ReadEnvelope(bytes.NewReader(m.data))
		if err != nil {
			t.Fatal(err)
		}
		sent[m.to[0]] = sentDigest{returnPath: m.from, env: env, raw: m.data}
	}
	s.mu.Unlock()
	if len(sent) != 3 {
		t.Fatalf("the sink got %d digests, want 3", len(sent))
	}
	seen := map[int64]bool{}
	for rcpt, d := range sent {
		if got := d.env.GetHeader("CFBL-Address"); got != "fbl@passblue.example; report=arf" {
			t.Errorf("%s: CFBL-Address = %q", rcpt, got)
		}
		for _, h := range []string{"CFBL-Feedback-ID", "Feedback-ID"} {
			if got := d.env.GetHeader(h); got != "daily:digest:1:passblue.example" {
				t.Errorf("%s: %s = %q", rcpt, h, got)
			}
		}
		id, ok := bounces.DecodeVERP(d.returnPath, key)
		if !ok || !strings.HasSuffix(d.returnPath, "@bounces.passblue.example") || seen[id] {
			t.Errorf("%s: return path %q does not decode to a message of its own", rcpt, d.returnPath)
		}
		seen[id] = true
	}

	// The bounce mailbox: a DSN sent to ana's VERP address about a
	// forwarding target, a feedback report about ben's digest with the
	// address redacted, a DSN for a stranger, a malformed DSN, and an
	// auto-reply.
	ana, ben := sent["ana@example.org"], sent["ben@example.org"]
	dsn := func(to, rcpt, status string) string {
		return "From: MAILER-DAEMON@mx.example.net\nTo: " + to + "\nSubject: Undelivered Mail\nDate: Tue, 3 Mar 2026 09:14:02 +0000\n" +
			"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\nfailed\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; " + rcpt +
			"\nAction: failed\nStatus: " + status + "\nDiagnostic-Code: smtp; 550 " + status + " <" + rcpt + "> unknown\n--b--\n"
	}
	arf := "From: staff@fbl.example.com\nTo: fbl@passblue.example\nSubject: complaint\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=f\n\n--f\nContent-Type: message/feedback-report\n\n" +
		"Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\nOriginal-Rcpt-To: redacted@example.com\n\n--f\nContent-Type: message/rfc822\n\n" +
		strings.ReplaceAll(string(ben.raw), "ben@example.org", "redacted@example.com") + "\n--f--\n"
	malformed, err := os.ReadFile("../../bounces/testdata/malformed_dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	maildir := t.TempDir()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(maildir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"1.ana":       dsn(ana.returnPath, "ana.forwarded@elsewhere.example", "5.1.1"),
		"2.ben":       arf,
		"3.stranger":  dsn("news@passblue.example", "stranger@example.net", "5.1.1"),
		"4.malformed": string(malformed),
		"5.autoreply": "From: cara@example.org\nSubject: Out of office\n\nAway.\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(maildir, "new", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A dry run reads everything and changes nothing.
	r := runHerald(t, "", "bounces", "import", maildir, "--dry-run", "--config", path)
	if r.code != exitOK {
		t.Fatalf("dry run: %d %s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "1.ana: would record a hard bounce", "2.ben: would record a complaint", "4.malformed: unparsed: malformed delivery-status fields",
		"5 messages: 0 applied, 0 unmatched, 2 unparsed, 0 ignored, 0 duplicates; 0 paths failed (dry run: nothing was changed)")
	wantStatuses(t, path, map[string]string{"ana@example.org": "active", "ben@example.org": "active", "cara@example.org": "active"})

	r = runHerald(t, "", "bounces", "import", maildir, "--config", path)
	if r.code != exitOK {
		t.Fatalf("import: %d %s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"1.ana: applied hard bounce: subscriber 1 (now bounced)",
		"2.ben: applied complaint: subscriber 2 (now complained)",
		"3.stranger: unmatched hard bounce",
		"4.malformed: unparsed: malformed delivery-status fields",
		"5.autoreply: unparsed: not a delivery status notification or feedback report",
		"5 messages: 2 applied, 1 unmatched, 2 unparsed, 0 ignored, 0 duplicates; 0 paths failed")
	for _, a := range []string{"ana", "ben", "stranger", "cara"} {
		if strings.Contains(r.stdout+r.stderr, a+"@") || strings.Contains(r.stdout+r.stderr, a+".forwarded@") {
			t.Errorf("the report shows the address of %s:\n%s%s", a, r.stdout, r.stderr)
		}
	}
	wantStatuses(t, path, map[string]string{"ana@example.org": "bounced", "ben@example.org": "complained", "cara@example.org": "active"})

	// The same mailbox again: every report is a duplicate.
	r = runHerald(t, "", "bounces", "import", maildir, "--config", path)
	wantLines(t, r.stdout, "5 messages: 0 applied, 0 unmatched, 0 unparsed, 0 ignored, 5 duplicates")

	// A path that cannot be read fails the import, after the others.
	r = runHerald(t, "", "bounces", "import", filepath.Join(maildir, "nope"), filepath.Join(maildir, "new", "1.ana"), "--config", path)
	if r.code != exitFailure {
		t.Errorf("missing path: exit %d, want 1\n%s", r.code, r.stdout)
	}
	wantLines(t, r.stdout, "nope: FAILED", "1 message: 0 applied")
	if r := runHerald(t, "", "bounces", "import", "--config", path); r.code != exitUsage {
		t.Errorf("no path: exit %d, want 2", r.code)
	}
}

// readSecret reads a named secret from a SQLite file.
func readSecret(t *testing.T, path, name string) []byte {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := db.Secret(ctx, name, func() ([]byte, error) { t.Fatalf("secret %s missing", name); return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantStatuses checks subscribers' statuses through herald subscribers
// export.
func wantStatuses(t *testing.T, path string, want map[string]string) {
	t.Helper()
	r := runHerald(t, "", "subscribers", "export", "--config", path)
	if r.code != exitOK {
		t.Fatalf("export: %d %s", r.code, r.stderr)
	}
	for email, status := range want {
		found := false
		for line := range strings.SplitSeq(r.stdout, "\n") {
			if strings.HasPrefix(line, email+",") {
				found = true
				if !strings.Contains(line, ","+status+",") {
					t.Errorf("%s: %s, want status %s", email, line, status)
				}
			}
		}
		if !found {
			t.Errorf("%s not exported:\n%s", email, r.stdout)
		}
	}
}

func TestBouncesConfig(t *testing.T) {
	for _, c := range []struct{ extra, key string }{
		{"  bounce_domain: not a domain\n", "mail.bounce_domain"},
		{"  cfbl_address: Complaints <fbl@passblue.example>\n", "mail.cfbl_address"},
	} {
		path := writeConfig(t, strings.Replace(minimalYAML, "mail:\n", "mail:\n"+c.extra, 1))
		r := runHerald(t, "", "bounces", "import", "x.eml", "--config", path)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.key) {
			t.Errorf("%q: exit %d, stderr %q; want 2 naming %s", c.extra, r.code, r.stderr, c.key)
		}
	}
	path := writeConfig(t, minimalYAML+"webhooks:\n  sendgrid:\n    public_key: nope\n  ses:\n    topic_arns: [\"x\"]\nbounces:\n  soft_window: -1h\n")
	r := runHerald(t, "", "bounces", "import", "x.eml", "--config", path)
	for _, key := range []string{"webhooks.sendgrid.public_key", "webhooks.ses.topic_arns[0]", "bounces.soft_window"} {
		if r.code != exitUsage || !strings.Contains(r.stderr, key) {
			t.Errorf("exit %d, stderr %q; want 2 naming %s", r.code, r.stderr, key)
		}
	}
}
