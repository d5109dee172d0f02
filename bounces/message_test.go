package bounces

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseFile(t *testing.T, name string) []Event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return ParseMessage(f, name)
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		file string
		want Event
	}{
		{"dsn_hard.eml", Event{
			Kind: Hard, Recipient: "gone@example.net", MessageID: "herald.digest.12.34@passblue.example",
			VERP: "bounces+aeaqaaaaaaaaaaaaaa@bounces.passblue.example", Status: "5.1.1",
			Reason: "550 5.1.1 <address>: Recipient address rejected: User unknown in virtual mailbox table",
			At:     time.Date(2026, 3, 3, 9, 14, 2, 0, time.UTC), Source: "dsn_hard.eml",
		}},
		{"dsn_soft.eml", Event{
			Kind: Soft, Recipient: "full@example.org", MessageID: "herald.digest.13.77@passblue.example",
			Status: "4.2.2", Reason: "452 4.2.2 Mailbox full",
			At: time.Date(2026, 3, 4, 14, 59, 0, 0, time.UTC), Source: "dsn_soft.eml",
		}},
		{"dsn_delayed.eml", Event{
			Kind: Ignored, Recipient: "slow@example.net", VERP: "bounces+aeaqaaaaaaaaaaaaaa@bounces.passblue.example",
			Status: "4.4.1", Reason: "action delayed: connect to mx.example.net: Connection timed out",
			At: time.Date(2026, 3, 3, 13, 0, 0, 0, time.UTC), Source: "dsn_delayed.eml",
		}},
		{"arf_abuse.eml", Event{
			Kind: Complaint, Recipient: "reader@example.com", MessageID: "herald.digest.14.9@passblue.example",
			ListUnsubscribe: "<https://news.passblue.example/unsubscribe/AQF1abc>",
			Reason:          "feedback type abuse from ExampleFBL/1.0",
			At:              time.Date(2026, 3, 5, 7, 58, 0, 0, time.UTC), Source: "arf_abuse.eml",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := parseFile(t, tt.file)
			if len(got) != 1 {
				t.Fatalf("got %d events, want 1: %+v", len(got), got)
			}
			if got[0] != tt.want {
				t.Errorf("got  %+v\nwant %+v", got[0], tt.want)
			}
		})
	}
}

func TestParseMessageUnparsed(t *testing.T) {
	tests := []struct {
		name, input, reason string
	}{
		{"malformed DSN", "", "malformed delivery-status fields"},
		{"not a report", "", "not a delivery status notification or feedback report (content type text/plain)"},
		{"empty", "\n", "not a delivery status notification"},
		{"garbage", "\x00\x01\x02", "not an email message"},
		{"report without boundary", "Content-Type: multipart/report; report-type=delivery-status\n\nx", "without a boundary"},
		{"other report type", "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n--b\nContent-Type: text/plain\n\nread\n--b--\n", `"disposition-notification"`},
		{"DSN without recipients", "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n--b--\n", "without per-recipient fields"},
		{"failed without status", "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n\n--b--\n", "without a valid Status"},
		{"ARF naming nothing", "Content-Type: multipart/report; report-type=feedback-report; boundary=b\n\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n\n--b--\n", "names neither"},
		{"truncated multipart", "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\n", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Event
			switch tt.name {
			case "malformed DSN":
				got = parseFile(t, "malformed_dsn.eml")
			case "not a report":
				got = parseFile(t, "not_a_report.eml")
			default:
				got = ParseMessage(strings.NewReader(tt.input), "x")
			}
			if len(got) != 1 || got[0].Kind != Unparsed || !strings.Contains(got[0].Reason, tt.reason) {
				t.Fatalf("got %+v, want one Unparsed event saying %q", got, tt.reason)
			}
			if strings.Contains(got[0].Reason, "jane@example.org") {
				t.Errorf("the reason shows an address: %q", got[0].Reason)
			}
		})
	}
}

func TestParseMessageTooLarge(t *testing.T) {
	big := io.MultiReader(strings.NewReader("Subject: x\n\n"), bytes.NewReader(make([]byte, MaxMessageSize)))
	got := ParseMessage(big, "big")
	if len(got) != 1 || got[0].Kind != Unparsed || !strings.Contains(got[0].Reason, "larger than") {
		t.Fatalf("got %+v", got)
	}
}

// A report forwarded as an attachment is still found.
func TestParseMessageNested(t *testing.T) {
	inner, err := os.ReadFile("testdata/dsn_delayed.eml")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(inner), "\n\n")
	msg := "Content-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: text/plain\n\nfwd\n--outer\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"d\"\n\n" + body + "\n--outer--\n"
	got := ParseMessage(strings.NewReader(msg), "fwd")
	if len(got) != 1 || got[0].Kind != Ignored || got[0].Recipient != "slow@example.net" {
		t.Fatalf("got %+v", got)
	}
}

func TestCleanReason(t *testing.T) {
	got := cleanReason("550 <Jane.Doe+x@Example.org>: no\r\n\tsuch user\x00 " + strings.Repeat("é", 400))
	if strings.Contains(got, "@") || strings.ContainsAny(got, "\r\n\t\x00") || len(got) > maxReason {
		t.Errorf("cleanReason = %q", got)
	}
	if !strings.HasPrefix(got, "550 <address>: no such user") {
		t.Errorf("cleanReason = %q", got)
	}
}

type walked struct {
	source string
	events []Event
}

func walk(t *testing.T, path string) []walked {
	t.Helper()
	var out []walked
	err := Walk(path, func(source string, r io.Reader) error {
		out = append(out, walked{source, ParseMessage(r, source)})
		return nil
	})
	if err != nil {
		t.Fatalf("Walk(%s): %v", path, err)
	}
	return out
}

func TestWalkMbox(t *testing.T) {
	got := walk(t, "testdata/bounces.mbox")
	if len(got) != 3 {
		t.Fatalf("got %d messages, want 3", len(got))
	}
	wantKinds := []Kind{Hard, Complaint, Unparsed}
	for i, w := range got {
		if w.source != "testdata/bounces.mbox#"+string(rune('1'+i)) {
			t.Errorf("message %d source = %q", i, w.source)
		}
		if len(w.events) != 1 || w.events[0].Kind != wantKinds[i] {
			t.Errorf("message %d events = %+v, want one %s", i, w.events, wantKinds[i])
		}
	}
	if got[1].events[0].MessageID != "herald.welcome.2@passblue.example" || got[1].events[0].Recipient != "two@example.net" {
		t.Errorf("complaint = %+v", got[1].events[0])
	}
}

func TestReadMboxUnquotes(t *testing.T) {
	in := "From a\nSubject: one\n\n>From here\n>>From there\nFrom b\nSubject: two\n\nbody\n"
	var msgs []string
	err := ReadMbox(strings.NewReader(in), "m", func(_ string, r io.Reader) error {
		b, _ := io.ReadAll(r)
		msgs = append(msgs, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Subject: one\n\nFrom here\n>From there\n", "Subject: two\n\nbody\n"}
	if len(msgs) != 2 || msgs[0] != want[0] || msgs[1] != want[1] {
		t.Errorf("messages = %q, want %q", msgs, want)
	}
}

func TestWalkMaildir(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "testdata/dsn_hard.eml", filepath.Join(dir, "new", "1772529242.M1.host"))
	copyFile(t, "testdata/arf_abuse.eml", filepath.Join(dir, "cur", "1772697480.M2.host:2,S"))
	copyFile(t, "testdata/not_a_report.eml", filepath.Join(dir, "tmp", "1772697481.M3.host"))
	copyFile(t, "testdata/not_a_report.eml", filepath.Join(dir, "cur", ".hidden"))
	got := walk(t, dir)
	if len(got) != 2 || got[0].events[0].Kind != Hard || got[1].events[0].Kind != Complaint {
		t.Fatalf("got %+v", got)
	}
	if err := Walk(t.TempDir(), func(string, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "not a Maildir") {
		t.Errorf("Walk(empty dir) = %v, want a not-a-Maildir error", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVERP(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, id := range []int64{1, 127, 128, 1 << 20, 1<<40 + 3} {
		addr := VERPAddress(id, key, "bounces.passblue.example")
		local, _, _ := strings.Cut(addr, "@")
		if !strings.HasPrefix(addr, VERPPrefix) || len(local) > 64 {
			t.Errorf("VERPAddress(%d) = %q", id, addr)
		}
		if got, ok := DecodeVERP(strings.ToUpper(addr), key); !ok || got != id {
			t.Errorf("DecodeVERP(%q) = %d, %v; want %d", addr, got, ok, id)
		}
		if _, ok := DecodeVERP(addr, []byte("another key")); ok {
			t.Errorf("DecodeVERP accepted %q under another key", addr)
		}
	}
	good := VERPAddress(42, key, "b.example")
	for _, bad := range []string{"", "news@passblue.example", "bounces+@b.example", "bounces+aaaa@b.example",
		strings.Replace(good, "+", "+a", 1), good[:len(good)-12] + "@b.example"} {
		if id, ok := DecodeVERP(bad, key); ok {
			t.Errorf("DecodeVERP(%q) = %d, want rejection", bad, id)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		events := ParseMessage(bytes.NewReader(b), "fuzz")
		if len(events) == 0 {
			t.Fatal("no events")
		}
		for _, e := range events {
			if e.Kind == "" || e.Source != "fuzz" || len(e.Reason) > maxReason {
				t.Fatalf("bad event %+v", e)
			}
			if e.Kind == Unparsed && e.Reason == "" {
				t.Fatal("unparsed without a reason")
			}
		}
	})
}

func FuzzReadMbox(f *testing.F) {
	b, err := os.ReadFile("testdata/bounces.mbox")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("From x\n>From y\nFrom z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		err := ReadMbox(bytes.NewReader(b), "m", func(_ string, r io.Reader) error {
			n, _ := io.Copy(io.Discard, r)
			total += int(n)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if total > len(b) {
			t.Fatalf("messages hold %d bytes, more than the %d read", total, len(b))
		}
	})
}

func FuzzDecodeVERP(f *testing.F) {
	key := []byte("k")
	f.Add(VERPAddress(7, key, "b.example"))
	f.Add("bounces+@x")
	f.Fuzz(func(t *testing.T, addr string) {
		if id, ok := DecodeVERP(addr, key); ok {
			if id <= 0 {
				t.Fatalf("DecodeVERP(%q) = %d", addr, id)
			}
		}
	})
}
