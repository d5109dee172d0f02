package mailer

import (
	"bytes"
	"errors"
	"flag"
	htemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	ttemplate "text/template"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"herald/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func testComposer(t testing.TB) *Composer {
	t.Helper()
	c, err := NewComposer(ComposerConfig{
		SiteName:      "PassBlue",
		SiteURL:       "https://passblue.example",
		FromName:      "PassBlue Newsroom",
		From:          "news@passblue.example",
		ReplyTo:       "editors@passblue.example",
		PostalAddress: "PassBlue, 1 Example Plaza, New York, NY 10017, USA",
		BaseURL:       "https://herald.passblue.example",
		ListID:        "news.passblue.example",
	}, templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testData() Data {
	return Data{
		MessageID:      "welcome.42@passblue.example",
		Date:           time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC),
		To:             "ana@example.org",
		Name:           "Ana Núñez",
		ConfirmURL:     "https://herald.passblue.example/confirm/c0nf1rmT0ken-abcdefghijklmnopqrstuvwxyz0123456789",
		UnsubscribeURL: "https://herald.passblue.example/unsubscribe/uNsUbT0ken-abcdefghijklmnopqrstuvwxyz",
		PreferencesURL: "https://herald.passblue.example/preferences/pR3fT0ken-abcdefghijklmnopqrstuvwxyz",
		DataExportURL:  "https://herald.passblue.example/data/d4taT0ken-abcdefghijklmnopqrstuvwxyz0123456789",
		Newsletters: []NewsletterInfo{
			{ID: "daily", Name: "PassBlue Daily", Frequency: "every weekday morning",
				Description: "The day's news from the United Nations in five minutes: what the Security Council decided, who spoke, and what comes next."},
			{ID: "weekly", Name: "The Weekly Brief", Frequency: "on Fridays"},
		},
	}
}

func TestComposeGolden(t *testing.T) {
	c := testComposer(t)
	for _, kind := range c.Kinds() {
		t.Run(kind, func(t *testing.T) {
			d := testData()
			d.MessageID = kind + ".42@passblue.example"
			e, err := c.Compose(kind, d)
			if err != nil {
				t.Fatal(err)
			}
			got := encode(t, e)
			path := filepath.Join("testdata", kind+".golden.eml")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file; run go test ./mailer -update and review the diff", kind)
			}
			// The same data compose the same bytes: a retry is the same message.
			again, err := c.Compose(kind, d)
			if err != nil || !bytes.Equal(encode(t, again), got) {
				t.Errorf("second composition differs (%v)", err)
			}
		})
	}
}

func TestComposeParsed(t *testing.T) {
	c := testComposer(t)
	d := testData()
	for _, tc := range []struct {
		kind    string
		subject string
		text    []string // fragments of the decoded text part
		html    []string // fragments of the decoded HTML part
	}{
		{
			kind:    KindConfirmation,
			subject: "Please confirm your subscription to PassBlue",
			text: []string{
				"Hi Ana Núñez,", "PassBlue Daily", "The Weekly Brief",
				"\n" + d.ConfirmURL + "\n", "expires in 48 hours",
				"If you did not sign up, ignore this email: you will not hear from us\nagain.",
			},
			html: []string{
				`href="` + d.ConfirmURL + `"`, "Confirm my subscription", "48 hours",
				"you will not hear from us again",
			},
		},
		{
			kind:    KindWelcome,
			subject: "Welcome to PassBlue",
			text: []string{
				"Hi Ana Núñez,", "* PassBlue Daily, every weekday morning",
				"* The Weekly Brief, on Fridays", "Manage your preferences:\n" + d.PreferencesURL + "\n",
			},
			html: []string{"PassBlue Daily", "every weekday morning", `href="` + d.PreferencesURL + `"`, "Manage my preferences"},
		},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			e, err := c.Compose(tc.kind, d)
			if err != nil {
				t.Fatal(err)
			}
			env, err := enmime.ReadEnvelope(bytes.NewReader(encode(t, e)))
			if err != nil {
				t.Fatal(err)
			}
			if len(env.Errors) > 0 {
				t.Errorf("enmime errors: %v", env.Errors)
			}
			first := env.Root.FirstChild
			if env.Root.ContentType != "multipart/alternative" || first.ContentType != "text/plain" ||
				first.NextSibling == nil || first.NextSibling.ContentType != "text/html" || first.NextSibling.NextSibling != nil {
				t.Fatal("want multipart/alternative with text/plain first and text/html last")
			}
			for _, h := range []struct{ name, want string }{
				{"Subject", tc.subject},
				{"Message-ID", "<" + d.MessageID + ">"},
				{"List-Unsubscribe", "<" + d.UnsubscribeURL + ">"},
				{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
				{"List-Id", "PassBlue <news.passblue.example>"},
				{"From", "PassBlue Newsroom <news@passblue.example>"},
				{"Date", "Wed, 04 Mar 2026 09:30:00 +0000"},
			} {
				if got := env.GetHeader(h.name); got != h.want {
					t.Errorf("%s = %q, want %q", h.name, got, h.want)
				}
			}
			text := strings.ReplaceAll(env.Text, "\r\n", "\n")
			html := env.HTML
			common := []string{d.UnsubscribeURL, "PassBlue, 1 Example Plaza, New York, NY 10017, USA"}
			for _, want := range append(tc.text, common...) {
				if !strings.Contains(text, want) {
					t.Errorf("text part lacks %q:\n%s", want, text)
				}
			}
			for _, want := range append(tc.html, common...) {
				if !strings.Contains(html, want) {
					t.Errorf("HTML part lacks %q", want)
				}
			}
			for _, want := range []string{`<html lang="en"`, "max-width:600px", `role="presentation"`, "display:none", `href="` + d.UnsubscribeURL + `"`} {
				if !strings.Contains(html, want) {
					t.Errorf("HTML part lacks %q", want)
				}
			}
			if strings.Contains(html, "<style") || strings.Contains(html, "<img") {
				t.Error("HTML part depends on <style> or images")
			}
			for i, line := range strings.Split(text, "\n") {
				if n := len([]rune(line)); n > 78 && !strings.Contains(line, "https://") {
					t.Errorf("text line %d is %d characters: %q", i, n, line)
				}
			}
		})
	}
}

func TestComposeWithoutUnsubscribe(t *testing.T) {
	c := testComposer(t)
	d := testData()
	d.UnsubscribeURL, d.PreferencesURL = "", ""
	e, err := c.Compose(KindConfirmation, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range e.Headers {
		if strings.HasPrefix(h.Name, "List-Unsubscribe") {
			t.Errorf("unexpected %s header without an UnsubscribeURL", h.Name)
		}
	}
	if strings.Contains(e.Text, "Unsubscribe") || strings.Contains(e.HTML, ">Unsubscribe<") {
		t.Error("unsubscribe link without an UnsubscribeURL")
	}
	if !strings.Contains(e.Text, "1 Example Plaza") || !strings.Contains(e.HTML, "1 Example Plaza") {
		t.Error("postal address missing")
	}
}

func TestComposeErrors(t *testing.T) {
	c := testComposer(t)
	for _, tc := range []struct {
		name   string
		kind   string
		mutate func(d *Data)
	}{
		{"unknown kind", "digest-of-doom", func(*Data) {}},
		{"confirmation without URL", KindConfirmation, func(d *Data) { d.ConfirmURL = "" }},
		{"confirm URL javascript", KindConfirmation, func(d *Data) { d.ConfirmURL = "javascript:alert(1)" }},
		{"confirm URL relative", KindConfirmation, func(d *Data) { d.ConfirmURL = "/confirm/x" }},
		{"confirm URL with LF", KindConfirmation, func(d *Data) { d.ConfirmURL = "https://x.example/\nBcc: y" }},
		{"unsubscribe URL with >", KindConfirmation, func(d *Data) { d.UnsubscribeURL = "https://x.example/u>, <https://evil.example" }},
		{"welcome without unsubscribe", KindWelcome, func(d *Data) { d.UnsubscribeURL = "" }},
		{"bad address", KindWelcome, func(d *Data) { d.To = "ana@example.org\r\nBcc: x@example.org" }},
		{"no message id", KindWelcome, func(d *Data) { d.MessageID = "" }},
		{"no date", KindWelcome, func(d *Data) { d.Date = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testData()
			tc.mutate(&d)
			if _, err := c.Compose(tc.kind, d); err == nil {
				t.Fatal("Compose succeeded")
			} else if tc.kind != "digest-of-doom" && !errors.Is(err, ErrInvalidEmail) {
				t.Errorf("err = %v, want ErrInvalidEmail", err)
			}
		})
	}
}

func TestNewComposerErrors(t *testing.T) {
	good := ComposerConfig{SiteName: "S", From: "a@b.example", PostalAddress: "1 Road"}
	for _, tc := range []struct {
		name   string
		mutate func(c *ComposerConfig)
	}{
		{"no site name", func(c *ComposerConfig) { c.SiteName = "" }},
		{"no postal address", func(c *ComposerConfig) { c.PostalAddress = "" }},
		{"bad from", func(c *ComposerConfig) { c.From = "not an address" }},
		{"bad reply-to", func(c *ComposerConfig) { c.ReplyTo = "x\n" }},
		{"site name LF", func(c *ComposerConfig) { c.SiteName = "S\nBcc: x" }},
		{"list id with space", func(c *ComposerConfig) { c.ListID = "a b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			if _, err := NewComposer(cfg, templates.FS); err == nil {
				t.Fatal("NewComposer succeeded")
			}
		})
	}
	if _, err := NewComposer(good, fsWithout(t, "email/welcome.html.tmpl")); err == nil {
		t.Error("NewComposer succeeded without a template")
	}
}

// fsWithout copies templates.FS without one file.
func fsWithout(t *testing.T, skip string) fs.FS {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(templates.FS, "email", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || p == skip {
			return err
		}
		b, err := fs.ReadFile(templates.FS, p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return os.DirFS(dir)
}

// TestEveryEmailTemplateParses parses every file under email/ with the
// engine its name calls for, and checks each belongs to a kind Compose knows
// (or is the layout or the digest).
func TestEveryEmailTemplateParses(t *testing.T) {
	known := map[string]bool{"layout": true, "digest": true}
	for _, k := range kindTable() {
		known[k.name] = true
	}
	entries, err := fs.ReadDir(templates.FS, "email")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range entries {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		b, err := fs.ReadFile(templates.FS, "email/"+name)
		if err != nil {
			t.Fatal(err)
		}
		base, engine, ok := strings.Cut(strings.TrimSuffix(name, ".tmpl"), ".")
		switch {
		case !strings.HasSuffix(name, ".tmpl") || !ok:
			t.Errorf("%s: want <kind>.txt.tmpl or <kind>.html.tmpl", name)
		case engine == "txt":
			_, err = ttemplate.New(name).Funcs(ttemplate.FuncMap{"wrap": wrapText}).Parse(string(b))
		case engine == "html":
			_, err = htemplate.New(name).Parse(string(b))
		default:
			t.Errorf("%s: unknown engine %q", name, engine)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !known[base] {
			t.Errorf("%s: no kind %q in kindTable", name, base)
		}
		n++
	}
	if want := 2 * len(known); n != want {
		t.Errorf("found %d email templates, want %d (a text and an HTML one per kind and layout)", n, want)
	}
}

func TestGreetingName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Ana", "Ana"},
		{"  Ana   María  ", "Ana María"},
		{"J.R.R. Tolkien", "J.R.R. Tolkien"},
		{"Dr. Who", "Dr. Who"},
		{"O'Brien-Smith", "O'Brien-Smith"},
		{"Zoë <Bold> & Co", "Zoë <Bold> & Co"}, // html/template escapes it; plain text shows it as typed
		{"Ana\r\nBcc: x", "Ana Bcc: x"},
		{"A\u202eB\u200dC\x00D", "ABCD"},
		{"http://evil.example", ""},
		{"HTTPS://EVIL.EXAMPLE", ""},
		{"Win at evil.example now", ""},
		{"www.evil", ""},
		{"evil.com", ""},
		{"evil．com", ""},
		{"visit evil。com", ""},
		{"ana@example.org", ""},
		{"mailto:x", ""},
		{"a/b", ""},
		{"Claim your prize money by replying to this email today", ""},
		{"", ""},
		{"   ", ""},
	} {
		if got := greetingName(tc.in); got != tc.want {
			t.Errorf("greetingName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestComposeNeutralisesNames(t *testing.T) {
	c := testComposer(t)
	for _, name := range []string{"http://evil.example", "go to evil.example", "<script>alert(1)</script>"} {
		d := testData()
		d.Name = name
		e, err := c.Compose(KindConfirmation, d)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(e.Text, "evil") || strings.Contains(e.HTML, "evil") || strings.Contains(e.ToName, "evil") {
			t.Errorf("name %q reached the email", name)
		}
		if strings.Contains(e.HTML, "<script>") {
			t.Errorf("name %q reached the HTML unescaped", name)
		}
	}
}

func TestDurationWords(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{48 * time.Hour, "48 hours"}, {time.Hour, "1 hour"}, {7 * 24 * time.Hour, "7 days"},
		{30 * time.Minute, "30 minutes"}, {90 * time.Minute, "90 minutes"},
	} {
		if got := durationWords(tc.d); got != tc.want {
			t.Errorf("durationWords(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestWrapText(t *testing.T) {
	got := wrapText(20, "  ", "one two three four five six seven https://a.very.long.example/url/that/stays/whole")
	want := "  one two three four\n  five six seven\n  https://a.very.long.example/url/that/stays/whole"
	if got != want {
		t.Errorf("wrapText:\ngot  %q\nwant %q", got, want)
	}
}
