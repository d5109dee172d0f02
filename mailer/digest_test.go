package mailer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"herald/templates"
)

// testDigest is a realistic edition: five articles, about 10 KB once
// encoded, with non-ASCII text, an article without an image, one without an
// author, an image without alt text, and a URL with a query string.
func testDigest() DigestData {
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	return DigestData{
		NewsletterID:          "daily",
		NewsletterName:        "PassBlue Daily",
		NewsletterDescription: "The day's news from the United Nations, in five minutes.",
		IssueID:               318,
		Subject:               "Security Council extends the Haiti mission — and four more stories",
		Date:                  day(4, 7),
		ArchiveURL:            "https://herald.passblue.example/archive/daily/318",
		Articles: []DigestArticle{
			{
				Title:       "Security Council Extends Haiti Support Mission for Another Year",
				URL:         "https://passblue.example/2026/03/03/security-council-extends-haiti-support-mission/",
				Author:      "Dulcie Leimbach",
				PublishedAt: day(3, 18),
				ImageURL:    "https://passblue.example/wp-content/uploads/2026/03/haiti-council-vote-1200x800.jpg",
				ImageAlt:    "Council members raise their hands during the vote on the Haiti mission",
				Excerpt: "After two weeks of negotiations that ran late into the night, the 15-member Council voted " +
					"unanimously to renew the mandate of the support mission in Haiti, with a new clause asking the " +
					"Secretary-General to report every 90 days on the protection of civilians and on funding gaps " +
					"that have left the mission at half its planned strength.",
			},
			{
				Title:       "Who Will Be the Next Secretary-General? The Race, Explained",
				URL:         "https://passblue.example/2026/03/03/next-secretary-general-race-explained/?utm_source=herald&utm_medium=email",
				Author:      "Kacie Candela",
				PublishedAt: day(3, 12),
				ImageURL:    "https://passblue.example/wp-content/uploads/2026/03/sg-candidates.jpg",
				Excerpt: "Six candidates have been formally nominated so far, four of them women. Member states will " +
					"question each one in public sessions of the General Assembly in April, a practice that began " +
					"in 2016 and that campaigners want to make more demanding, with questions from civil society " +
					"and a televised debate.",
			},
			{
				Title:       "Ángela Núñez on the Peacekeeping Budget: «We Are Asked to Do More With Less»",
				URL:         "https://passblue.example/2026/03/02/angela-nunez-peacekeeping-budget-interview/",
				Author:      "Stéphanie Fillion",
				PublishedAt: day(2, 9),
				Excerpt: "The head of the Fifth Committee's working group says the arrears of the largest contributors " +
					"now exceed $2 billion, and that missions in South Sudan and the Central African Republic " +
					"will have to cut patrols before the end of the fiscal year unless payments arrive.",
			},
			{
				Title:       "Climate Finance Talks Stall Over the Loss and Damage Fund",
				URL:         "https://passblue.example/2026/03/02/climate-finance-talks-stall-loss-damage-fund/",
				PublishedAt: day(2, 7),
				ImageURL:    "https://passblue.example/wp-content/uploads/2026/03/climate-talks.jpg",
				ImageAlt:    "Delegates in a conference room in Bonn",
				Excerpt: "Negotiators left Bonn without agreeing on how the fund would be replenished. Small island " +
					"states accused the biggest emitters of delaying tactics; donors said the fund's board had " +
					"yet to show how it would disburse the $700 million already pledged.",
			},
			{
				Title:       "UN Women at 15: What the Agency Has Changed, and What It Has Not",
				URL:         "https://passblue.example/2026/03/01/un-women-at-15/",
				Author:      "Anjali Kaur",
				PublishedAt: day(1, 10),
				ImageURL:    "https://passblue.example/wp-content/uploads/2026/03/un-women-15.jpg",
				ImageAlt:    "A UN Women poster at headquarters in New York",
				Excerpt: "Fifteen years after four smaller bodies merged into one agency, its budget remains a " +
					"fraction of what its founders promised. Former staff and diplomats assess its record on " +
					"ending violence against women, on political participation and on the economy.",
			},
		},
	}
}

func testReader() DigestReader {
	return DigestReader{
		MessageID:      "issue.318.sub.42@passblue.example",
		To:             "ana@example.org",
		Name:           "Ana Núñez",
		UnsubscribeURL: "https://herald.passblue.example/unsubscribe/uNsUbT0ken-abcdefghijklmnopqrstuvwxyz0123456789",
		PreferencesURL: "https://herald.passblue.example/preferences/pR3fT0ken-abcdefghijklmnopqrstuvwxyz0123456789",
	}
}

var sendDate = time.Date(2026, 3, 4, 7, 0, 12, 0, time.UTC)

func prepare(t testing.TB, c *Composer) *DigestTemplate {
	t.Helper()
	dt, err := c.PrepareDigest(testDigest())
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// referenceDigest renders r's digest the slow way, without placeholders:
// the templates run with the reader's values, then premailer, then the
// ordinary encoder. The splice must decode to exactly this.
func referenceDigest(t *testing.T, c *Composer, dt *DigestTemplate, d DigestData, r DigestReader) *Email {
	t.Helper()
	v := c.digestView(&d, dt.subject)
	v.Name = greetingName(r.Name)
	v.UnsubscribeURL, v.PreferencesURL = r.UnsubscribeURL, r.PreferencesURL
	text, html, err := c.renderDigest(v)
	if err != nil {
		t.Fatal(err)
	}
	return &Email{
		FromName: dt.fromName, From: dt.from, ToName: v.Name, To: r.To, ReplyTo: dt.replyTo,
		Subject: dt.subject, MessageID: r.MessageID, Date: sendDate, Text: text, HTML: html,
		Headers: append([]Header{{Name: "List-Unsubscribe", Value: "<" + r.UnsubscribeURL + ">"}}, dt.staticHeaders()...),
	}
}

func parse(t *testing.T, raw []byte) *enmime.Envelope {
	t.Helper()
	env, err := enmime.ReadEnvelope(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, perr := range env.Errors {
		t.Errorf("enmime: %v", perr)
	}
	return env
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test ./mailer -update and review the diff", name)
	}
}

func TestDigestGolden(t *testing.T) {
	c := testComposer(t)
	dt := prepare(t, c)
	raw, err := dt.AppendTo(nil, testReader(), sendDate)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "digest.golden.eml", raw)
	e := dt.Email(testReader(), sendDate)
	golden(t, "digest.golden.txt", []byte(e.Text))
	golden(t, "digest.golden.html", []byte(e.HTML))
	// A second edition from the same data is the same edition.
	again, err := prepare(t, c).AppendTo(nil, testReader(), sendDate)
	if err != nil || !bytes.Equal(again, raw) {
		t.Errorf("preparing the same digest twice gives different messages (%v)", err)
	}
}

func TestDigestParsed(t *testing.T) {
	c := testComposer(t)
	d := testDigest()
	r := testReader()
	raw, err := prepare(t, c).AppendTo(nil, r, sendDate)
	if err != nil {
		t.Fatal(err)
	}
	env := parse(t, raw)
	first := env.Root.FirstChild
	if env.Root.ContentType != "multipart/alternative" || first == nil || first.ContentType != "text/plain" ||
		first.NextSibling == nil || first.NextSibling.ContentType != "text/html" || first.NextSibling.NextSibling != nil {
		t.Fatal("want multipart/alternative with text/plain first and text/html last")
	}
	for _, h := range []struct{ name, want string }{
		{"Subject", d.Subject},
		{"From", "PassBlue Newsroom <news@passblue.example>"},
		{"To", "Ana Núñez <ana@example.org>"},
		{"Message-ID", "<" + r.MessageID + ">"},
		{"Date", "Wed, 04 Mar 2026 07:00:12 +0000"},
		{"List-Unsubscribe", "<" + r.UnsubscribeURL + ">"},
		{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
		{"List-Id", "PassBlue Daily <daily.passblue.example>"},
	} {
		if got := env.GetHeader(h.name); got != h.want {
			t.Errorf("%s = %q, want %q", h.name, got, h.want)
		}
	}
	text := strings.ReplaceAll(env.Text, "\r\n", "\n")
	html := env.HTML
	address := "PassBlue, 1 Example Plaza, New York, NY 10017, USA"
	for _, want := range []string{
		"PassBlue: PassBlue Daily\nMarch 4, 2026\n", "Hi Ana Núñez,",
		"Security Council Extends Haiti Support Mission for Another Year\nBy Dulcie Leimbach, March 3, 2026\n",
		"Climate Finance Talks Stall Over the Loss and Damage Fund\nMarch 2, 2026\n",
		"Read more:\n" + d.Articles[1].URL + "\n",
		"You're receiving PassBlue Daily because you subscribed at PassBlue.",
		"View in your browser:\n" + d.ArchiveURL + "\n",
		"Manage your preferences:\n" + r.PreferencesURL + "\n",
		"Unsubscribe with one click:\n" + r.UnsubscribeURL + "\n",
		address,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	for i, line := range strings.Split(text, "\n") {
		if n := len([]rune(line)); n > 78 && !strings.Contains(line, "https://") {
			t.Errorf("text line %d is %d characters: %q", i, n, line)
		}
	}
	for _, want := range []string{
		`<html lang="en" dir="ltr">`, `<meta name="color-scheme" content="light dark"/>`,
		`Hi Ana Núñez,`, `<h1 class="newsletter"`, `<h2 class="article-title"`,
		`href="` + r.UnsubscribeURL + `"`, `>Unsubscribe</a>`,
		`href="` + r.PreferencesURL + `"`, `>Manage preferences</a>`,
		`href="` + d.ArchiveURL + `"`, `>View in your browser</a>`,
		`You&#39;re receiving PassBlue Daily because you subscribed at`,
		`alt="Council members raise their hands during the vote on the Haiti mission"`,
		`alt="Who Will Be the Next Secretary-General? The Race, Explained"`, // no ImageAlt: the title
		`href="https://passblue.example/2026/03/03/next-secretary-general-race-explained/?utm_source=herald&amp;utm_medium=email"`,
		`aria-label="Read more: Climate Finance Talks Stall Over the Loss and Damage Fund"`,
		"«We Are Asked to Do More With Less»", address,
		"@media (prefers-color-scheme: dark)", // kept for the clients that read <style>
	} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML part lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(html), "<script") {
		t.Error("HTML part has a <script>")
	}
	// Every rule premailer could inline is inline: the main elements carry
	// their styles, and the one <style> block left holds only the media
	// queries and :root.
	for _, re := range []string{
		`<body class="body" style="[^"]*background-color:#f1f1f3`,
		`<table role="presentation" class="page" width="100%" [^>]*style="[^"]*width:100%`,
		`<table role="presentation" class="card" width="600" [^>]*style="[^"]*max-width:600px`,
		`<td class="masthead text" style="[^"]*padding:28px 32px 20px 32px`,
		`<h1 class="newsletter" style="[^"]*font-size:26px`,
		`<h2 class="article-title" style="[^"]*margin:0 0 6px 0`,
		`<a class="article-link" href="[^"]+" style="[^"]*color:#1f2328`,
		`<img class="image" src="[^"]+" alt="[^"]+" width="536" style="[^"]*max-width:536px;height:auto`,
		`<p class="excerpt" style="[^"]*line-height:24px`,
		`<td class="footer-cell text" style="[^"]*font-size:13px`,
		`<a class="footer-link" href="[^"]+" style="[^"]*text-decoration:underline`,
	} {
		if !regexp.MustCompile(re).MatchString(html) {
			t.Errorf("HTML part lacks an inlined style matching %s", re)
		}
	}
	if n := strings.Count(html, "<style"); n != 1 {
		t.Errorf("HTML has %d <style> blocks, want 1 (the media queries)", n)
	}
	if style := html[strings.Index(html, "<style"):strings.Index(html, "</style>")]; strings.Contains(style, ".preheader") ||
		strings.Contains(style, ".image {") || strings.Contains(style, "font-family") {
		t.Errorf("inlinable rules left in <style>:\n%s", style)
	}
	if strings.Count(html, "<img ") != 4 || strings.Count(html, ` alt="`) != 4 {
		t.Error("want 4 images, each with alt text")
	}
}

// splicedReaders cover what the splice must get right: non-ASCII names
// (QP escapes, RFC 2047 in To), names that HTML must escape, names left
// out (the anonymous rendering), URLs longer than a QP line, and URLs with
// '=' and '&' (escaped by QP and by HTML).
func splicedReaders() []DigestReader {
	base := testReader()
	long := "https://herald.passblue.example/unsubscribe/" + strings.Repeat("aB3-_", 30) + "?list=daily&issue=318&sig=Zm9vYmFy%3D%3D"
	rs := []DigestReader{base}
	for i, tc := range []struct{ name, unsub string }{
		{"Zoë Ångström-Nakamura 中村", long},
		{"O'Brien & <Sons>", base.UnsubscribeURL + "?a=1&b=2"},
		{"", long},
		{"http://evil.example", base.UnsubscribeURL},
		{"  Ana\r\n María\u200b  ", base.UnsubscribeURL},
		{"José Ramos-Horta, Jr.", "http://localhost:8080/unsubscribe/x"},
	} {
		r := base
		r.MessageID = "issue.318.sub." + string(rune('a'+i)) + "@passblue.example"
		r.To = "reader" + string(rune('a'+i)) + "@example.org"
		r.Name = tc.name
		r.UnsubscribeURL = tc.unsub
		r.PreferencesURL = strings.Replace(tc.unsub, "unsubscribe", "preferences", 1)
		rs = append(rs, r)
	}
	return rs
}

func TestDigestSpliceEquivalence(t *testing.T) {
	c := testComposer(t)
	d := testDigest()
	dt := prepare(t, c)
	for _, r := range splicedReaders() {
		t.Run(r.MessageID, func(t *testing.T) {
			spliced, err := dt.AppendTo(nil, r, sendDate)
			if err != nil {
				t.Fatal(err)
			}
			// Through *Email (what the transports get): the same bytes.
			e := dt.Email(r, sendDate)
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := encode(t, e); !bytes.Equal(got, spliced) {
				t.Error("Email.WriteTo differs from DigestTemplate.AppendTo")
			}
			// Through Message (what the delivery engine sends): the same
			// bytes, without the decoded parts.
			m := dt.Message(r, sendDate)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if m.Text != "" || m.HTML != "" {
				t.Error("Message decoded the parts")
			}
			if got := encode(t, m); !bytes.Equal(got, spliced) {
				t.Error("Message's WriteTo differs from DigestTemplate.AppendTo")
			}
			// The reference: rendered for this reader without
			// placeholders, encoded without splicing.
			ref := referenceDigest(t, c, dt, d, r)
			if ref.Text != e.Text || ref.HTML != e.HTML || ref.ToName != e.ToName {
				t.Fatal("Email's Text, HTML or ToName differ from a render for this reader")
			}
			plain := encode(t, ref)
			// Headers: byte for byte.
			sh, _, _ := bytes.Cut(spliced, []byte("\r\n\r\n"))
			ph, _, _ := bytes.Cut(plain, []byte("\r\n\r\n"))
			if !bytes.Equal(sh, ph) {
				t.Errorf("headers differ:\nspliced:\n%s\nplain:\n%s", sh, ph)
			}
			// Bodies: the same once soft line breaks are removed.
			if unsoft(spliced) != unsoft(plain) {
				t.Error("spliced and plain encodings differ beyond soft line breaks")
			}
			// Decoded: exactly the same parts.
			se, pe := parse(t, spliced), parse(t, plain)
			if se.Text != pe.Text || se.HTML != pe.HTML {
				t.Errorf("decoded parts differ")
			}
			if !strings.Contains(se.Text, r.UnsubscribeURL) || !strings.Contains(se.HTML, `href="`+strings.ReplaceAll(r.UnsubscribeURL, "&", "&amp;")+`"`) {
				t.Error("unsubscribe URL missing from a part")
			}
			checkQPLines(t, spliced)
		})
	}
}

// unsoft removes quoted-printable soft line breaks, and undoes the escapes
// of characters that start a line in one encoding and need not in another
// (a '.', and the F of "From ").
func unsoft(b []byte) string {
	return strings.NewReplacer("=\r\n", "", "=2E", ".", "=46", "F").Replace(string(b))
}

// checkQPLines checks the body's lines. (Header lines may be longer: an
// unbreakable List-Unsubscribe URL cannot be folded.)
func checkQPLines(t *testing.T, msg []byte) {
	t.Helper()
	_, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for i, line := range strings.Split(string(body), "\r\n") {
		if len(line) > 76 {
			t.Errorf("line %d is %d bytes: %q", i, len(line), line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF", i)
		}
		if strings.HasSuffix(line, " ") {
			t.Errorf("line %d ends with white space: %q", i, line)
		}
		// SMTP sends a digest without dot-stuffing it.
		if strings.HasPrefix(line, ".") {
			t.Errorf("line %d starts with a dot: %q", i, line)
		}
	}
}

func TestDigestNames(t *testing.T) {
	dt := prepare(t, testComposer(t))
	for _, tc := range []struct{ name, greeting string }{
		{"Ana Núñez", "Hi Ana Núñez,"},
		{"", "Hi there,"},
		{"visit evil.example now", "Hi there,"},
		{"Zoë <Bold> & Co", "Hi Zoë <Bold> & Co,"},
	} {
		r := testReader()
		r.Name = tc.name
		e := dt.Email(r, sendDate)
		if !strings.Contains(e.Text, "\n"+tc.greeting+"\n") {
			t.Errorf("name %q: text lacks %q", tc.name, tc.greeting)
		}
		if strings.Contains(e.HTML, "evil") || strings.Contains(e.HTML, "<Bold>") {
			t.Errorf("name %q reached the HTML unescaped or unfiltered", tc.name)
		}
	}
}

func TestDigestRefusesInjection(t *testing.T) {
	dt := prepare(t, testComposer(t))
	for _, tc := range []struct {
		name   string
		mutate func(r *DigestReader)
	}{
		{"To with CRLF", func(r *DigestReader) { r.To = "ana@example.org\r\nBcc: x@evil.example" }},
		{"unsubscribe URL with CRLF", func(r *DigestReader) { r.UnsubscribeURL += "\r\nBcc: x@evil.example" }},
		{"preferences URL with LF", func(r *DigestReader) { r.PreferencesURL += "\nX-Evil: 1" }},
		{"unsubscribe URL closing the bracket", func(r *DigestReader) { r.UnsubscribeURL += ">, <https://evil.example/" }},
		{"unsubscribe URL with a quote", func(r *DigestReader) { r.UnsubscribeURL += `"onmouseover="alert(1)` }},
		{"unsubscribe URL with an apostrophe", func(r *DigestReader) { r.UnsubscribeURL += "'x" }},
		{"javascript URL", func(r *DigestReader) { r.UnsubscribeURL = "javascript:alert(1)" }},
		{"no unsubscribe URL", func(r *DigestReader) { r.UnsubscribeURL = "" }},
		{"no preferences URL", func(r *DigestReader) { r.PreferencesURL = "" }},
		{"Message-ID with CRLF", func(r *DigestReader) { r.MessageID = "a@b\r\nBcc: x@evil.example" }},
		{"no Message-ID", func(r *DigestReader) { r.MessageID = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testReader()
			tc.mutate(&r)
			dst := []byte("keep")
			got, err := dt.AppendTo(dst, r, sendDate)
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("AppendTo err = %v, want ErrInvalidEmail", err)
			}
			if string(got) != "keep" {
				t.Error("AppendTo changed dst on error")
			}
			e := dt.Email(r, sendDate)
			if _, err := e.WriteTo(io.Discard); !errors.Is(err, ErrInvalidEmail) {
				t.Errorf("Email.WriteTo err = %v, want ErrInvalidEmail", err)
			}
			if e.Text != "" || e.HTML != "" {
				t.Error("an invalid reader got a body")
			}
		})
	}
	if _, err := dt.AppendTo(nil, testReader(), time.Time{}); !errors.Is(err, ErrInvalidEmail) {
		t.Errorf("zero date: err = %v", err)
	}
	// A name cannot inject anything: it is cleaned, never refused.
	r := testReader()
	r.Name = "Ana\r\nBcc: x@evil.example"
	raw, err := dt.AppendTo(nil, r, sendDate)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	if bytes.Contains(head, []byte("\r\nBcc:")) || bytes.Contains(head, []byte("\nBcc")) {
		t.Errorf("header injection through the name:\n%s", head)
	}
}

// TestDigestEmailChanged checks that an Email whose fields change after
// DigestTemplate.Email is encoded afresh, not spliced from stale parts.
func TestDigestEmailChanged(t *testing.T) {
	dt := prepare(t, testComposer(t))
	e := dt.Email(testReader(), sendDate)
	e.ReturnPath = "bounces@passblue.example" // allowed: not part of the message
	spliced, err := dt.AppendTo(nil, testReader(), sendDate)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encode(t, e), spliced) {
		t.Error("ReturnPath changed the encoding")
	}
	for _, mutate := range []func(e *Email){
		func(e *Email) { e.Subject = "Changed subject" },
		func(e *Email) { e.To = "other@example.org" },
		func(e *Email) { e.Date = e.Date.Add(time.Hour) },
		func(e *Email) { e.HTML += "<p>postscript</p>" },
		func(e *Email) { e.Headers[0].Value = "<https://herald.passblue.example/unsubscribe/other>" },
	} {
		e := dt.Email(testReader(), sendDate)
		mutate(e)
		got := encode(t, e)
		cp := *e
		cp.splice = nil
		if !bytes.Equal(got, encode(t, &cp)) {
			t.Error("a changed Email was not encoded from its fields")
		}
	}
}

// TestDigestMessageChanged checks that a Message (no decoded parts) whose
// fields change afterwards is encoded afresh from them, with the reader's
// text and HTML, exactly as an Email changed the same way.
func TestDigestMessageChanged(t *testing.T) {
	dt := prepare(t, testComposer(t))
	for i, mutate := range []func(e *Email){
		func(e *Email) { e.Subject = "Changed subject" },
		func(e *Email) { e.To = "other@example.org" },
		func(e *Email) { e.Date = e.Date.Add(time.Hour) },
		func(e *Email) { e.Headers[0].Value = "<https://herald.passblue.example/unsubscribe/other>" },
		func(e *Email) { e.Headers = append(e.Headers, Header{Name: "X-Extra", Value: "1"}) },
	} {
		m, e := dt.Message(testReader(), sendDate), dt.Email(testReader(), sendDate)
		mutate(m)
		mutate(e)
		cp := *e
		cp.splice = nil
		want := encode(t, &cp)
		if got := encode(t, m); !bytes.Equal(got, want) {
			t.Errorf("change %d: a changed Message was not encoded from its fields and the reader's parts", i)
		}
		if m.Text != "" || m.HTML != "" {
			t.Errorf("change %d: encoding changed the Message's fields", i)
		}
	}
	bad := dt.Message(DigestReader{MessageID: "x@y", To: "not an address"}, sendDate)
	if err := bad.Validate(); !errors.Is(err, ErrInvalidEmail) {
		t.Errorf("Message for an invalid reader: Validate = %v, want ErrInvalidEmail", err)
	}
}

// TestDigestValidate: a digest as its template made it is valid without
// being checked again, but its ReturnPath is checked, and a field changed
// afterwards is checked as in any Email.
func TestDigestValidate(t *testing.T) {
	dt := prepare(t, testComposer(t))
	for _, tc := range []struct {
		name   string
		mutate func(e *Email)
		valid  bool
	}{
		{"as made", func(e *Email) {}, true},
		{"VERP return path", func(e *Email) { e.ReturnPath = "bounces+42@passblue.example" }, true},
		{"bad return path", func(e *Email) { e.ReturnPath = "bounces@@passblue" }, false},
		{"bad To", func(e *Email) { e.To = "not an address" }, false},
		{"header with a line break", func(e *Email) { e.Headers[0].Value = "<https://x.example/u>\r\nBcc: a@b.example" }, false},
		{"control character in the name", func(e *Email) { e.ToName = "Ana\x00" }, false},
	} {
		for _, m := range []*Email{dt.Message(testReader(), sendDate), dt.Email(testReader(), sendDate)} {
			tc.mutate(m)
			err := m.Validate()
			if tc.valid && err != nil {
				t.Errorf("%s: Validate = %v", tc.name, err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidEmail) {
				t.Errorf("%s: Validate = %v, want ErrInvalidEmail", tc.name, err)
			}
		}
	}
}

// TestDigestThroughSMTP sends spliced messages through the SMTP transport
// to the in-process relay.
func TestDigestThroughSMTP(t *testing.T) {
	dt := prepare(t, testComposer(t))
	be := &backend{}
	srv := startServer(t, be, TLSNone)
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	readers := splicedReaders()
	for _, r := range readers {
		e := dt.Email(r, sendDate)
		e.ReturnPath = "bounces@passblue.example"
		if err := tr.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	msgs := be.messages()
	if len(msgs) != len(readers) {
		t.Fatalf("relay received %d messages, want %d", len(msgs), len(readers))
	}
	for i, m := range msgs {
		want, err := dt.AppendTo(nil, readers[i], sendDate)
		if err != nil {
			t.Fatal(err)
		}
		if m.to != readers[i].To || !bytes.Equal(bytes.TrimRight(m.data, "\r\n"), bytes.TrimRight(want, "\r\n")) {
			t.Errorf("message %d: the relay received other bytes than AppendTo writes", i)
		}
	}
}

func TestPrepareDigestErrors(t *testing.T) {
	c := testComposer(t)
	for _, tc := range []struct {
		name   string
		mutate func(d *DigestData)
	}{
		{"newsletter id with space", func(d *DigestData) { d.NewsletterID = "daily news" }},
		{"newsletter id with angle bracket", func(d *DigestData) { d.NewsletterID = "daily>" }},
		{"no newsletter name", func(d *DigestData) { d.NewsletterName = " " }},
		{"newsletter name with LF", func(d *DigestData) { d.NewsletterName = "Daily\nBcc: x" }},
		{"subject with CRLF", func(d *DigestData) { d.Subject = "Hi\r\nBcc: x@evil.example" }},
		{"no date", func(d *DigestData) { d.Date = time.Time{} }},
		{"no articles", func(d *DigestData) { d.Articles = nil }},
		{"article without title", func(d *DigestData) { d.Articles[2].Title = "" }},
		{"article javascript URL", func(d *DigestData) { d.Articles[0].URL = "javascript:alert(1)" }},
		{"article relative image", func(d *DigestData) { d.Articles[0].ImageURL = "/x.jpg" }},
		{"archive URL with quote", func(d *DigestData) { d.ArchiveURL = `https://x.example/"` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDigest()
			tc.mutate(&d)
			if _, err := c.PrepareDigest(d); !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("err = %v, want ErrInvalidEmail", err)
			}
		})
	}
}

// TestDigestDefaults checks the optional parts: a default subject, no
// archive link, no site URL.
func TestDigestDefaults(t *testing.T) {
	c, err := NewComposer(ComposerConfig{SiteName: "PassBlue", From: "news@passblue.example",
		PostalAddress: "1 Example Plaza"}, templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	d := testDigest()
	d.Subject, d.ArchiveURL, d.NewsletterDescription = "", "", ""
	dt, err := c.PrepareDigest(d)
	if err != nil {
		t.Fatal(err)
	}
	e := dt.Email(testReader(), sendDate)
	if e.Subject != "PassBlue Daily, March 4, 2026" {
		t.Errorf("Subject = %q", e.Subject)
	}
	if strings.Contains(e.Text, "View in your browser") || strings.Contains(e.HTML, "View in your browser") {
		t.Error("archive link without an ArchiveURL")
	}
	if got := e.Headers[2].Value; got != "PassBlue Daily <daily.passblue.example>" {
		t.Errorf("List-Id = %q, want the From domain", got)
	}
	env := parse(t, encode(t, e))
	if env.HTML == "" || env.Text == "" {
		t.Fatal("missing a part")
	}
}

// overrideDir writes files into a fresh templates directory.
func overrideDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func composerWith(dir string) (*Composer, error) {
	return NewComposer(ComposerConfig{
		SiteName: "PassBlue", SiteURL: "https://passblue.example", From: "news@passblue.example",
		PostalAddress: "PassBlue, 1 Example Plaza, New York, NY 10017, USA", TemplatesDir: dir,
	}, templates.FS)
}

func TestTemplateOverrides(t *testing.T) {
	embedded := func(name string) string {
		b, err := templates.FS.ReadFile("email/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("replaces the embedded file", func(t *testing.T) {
		txt := strings.Replace(embedded("digest.txt.tmpl"), "Read more:", "Continue reading:", 1)
		c, err := composerWith(overrideDir(t, map[string]string{"digest.txt.tmpl": txt, "README": "ignored"}))
		if err != nil {
			t.Fatal(err)
		}
		dt, err := c.PrepareDigest(testDigest())
		if err != nil {
			t.Fatal(err)
		}
		e := dt.Email(testReader(), sendDate)
		if !strings.Contains(e.Text, "Continue reading:\n") || strings.Contains(e.Text, "Read more:") {
			t.Error("the override of digest.txt.tmpl was not used")
		}
		if !strings.Contains(e.HTML, ">Read more</a>") {
			t.Error("the embedded digest.html.tmpl was not used")
		}
	})

	t.Run("broken template names file and line", func(t *testing.T) {
		broken := strings.Replace(embedded("digest.html.tmpl"), `<h1 class="newsletter">{{.NewsletterName}}</h1>`,
			`<h1 class="newsletter">{{.NewsletterName</h1>`, 1)
		line := 1 + strings.Count(broken[:strings.Index(broken, "{{.NewsletterName</h1>")], "\n")
		dir := overrideDir(t, map[string]string{"digest.html.tmpl": broken})
		_, err := composerWith(dir)
		if err == nil {
			t.Fatal("NewComposer accepted a broken override")
		}
		path := filepath.Join(dir, "digest.html.tmpl")
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "digest.html.tmpl:"+strconv.Itoa(line)+":") {
			t.Errorf("error %q does not name %s and line %d", msg, path, line)
		}
	})

	t.Run("broken layout override", func(t *testing.T) {
		dir := overrideDir(t, map[string]string{"layout.txt.tmpl": "{{define \"layout\"}}\n{{if .Name}}\n{{end}}"})
		_, err := composerWith(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "layout.txt.tmpl")) ||
			!strings.Contains(err.Error(), "layout.txt.tmpl:3:") {
			t.Errorf("err = %v, want the override path and line 3", err)
		}
	})

	t.Run("unknown file", func(t *testing.T) {
		dir := overrideDir(t, map[string]string{"digst.html.tmpl": "x"})
		if _, err := composerWith(dir); err == nil || !strings.Contains(err.Error(), "digst.html.tmpl") {
			t.Errorf("err = %v, want the misspelt file named", err)
		}
	})

	t.Run("missing directory", func(t *testing.T) {
		if _, err := composerWith(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("NewComposer accepted a missing templates directory")
		}
	})

	for _, tc := range []struct{ name, file, old, new, want string }{
		{"drops the unsubscribe link", "digest.txt.tmpl", "{{.UnsubscribeURL}}", "", "unsubscribe"},
		{"drops the postal address", "digest.html.tmpl", "{{.PostalAddress}}", "", "postal address"},
		{"name inside a URL", "digest.html.tmpl", `href="{{.ArchiveURL}}"`, `href="{{.ArchiveURL}}?n={{.Name}}"`, "URL"},
		{"URL inside a URL", "digest.html.tmpl", `href="{{.PreferencesURL}}"`, `href="https://x.example/?next={{.PreferencesURL}}"`, "URL"},
		{"name in a style attribute", "digest.html.tmpl", `<p class="greeting">`, `<p class="greeting" style="x:{{.Name}}">`, "style"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := embedded(tc.file)
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%s lacks %q", tc.file, tc.old)
			}
			c, err := composerWith(overrideDir(t, map[string]string{tc.file: strings.Replace(src, tc.old, tc.new, -1)}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.PrepareDigest(testDigest())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "overridden") {
				t.Errorf("err = %v, want one about %s naming the override", err, tc.want)
			}
		})
	}
}

// TestQPSegments checks that segments encoded apart, at any cut points,
// concatenate into a valid body that decodes to the whole.
func TestQPSegments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", " ", "\t", "=", "\n", "é", "From ", ".", "x", "\r\n", "中"}
	for range 2000 {
		var sb strings.Builder
		for range rng.IntN(300) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		checkQPSegments(t, sb.String(), rng)
	}
}

func checkQPSegments(t *testing.T, s string, rng *rand.Rand) {
	t.Helper()
	// Cut anywhere but inside a CRLF: placeholders never stand there.
	var cuts []int
	for i := 0; i < len(s); i += 1 + rng.IntN(40) {
		if i > 0 && s[i] == '\n' && s[i-1] == '\r' {
			continue
		}
		cuts = append(cuts, i)
	}
	cuts = append(cuts, len(s))
	var enc []byte
	for k := 0; k+1 < len(cuts); k++ {
		enc = appendQPSegment(enc, s[cuts[k]:cuts[k+1]], k+2 < len(cuts))
	}
	for _, line := range strings.Split(string(enc), "\r\n") {
		if len(line) > 76 || strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") || strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bad QP line %q in the encoding of %q", line, s)
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatalf("decode %q: %v", enc, err)
	}
	if want := crlf(s); string(dec) != want {
		t.Fatalf("segments of %q decode to %q", s, dec)
	}
}

// BenchmarkPrepareDigest is the once-per-edition work: two renderings,
// premailer, QP encoding.
func BenchmarkPrepareDigest(b *testing.B) {
	c := testComposer(b)
	d := testDigest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.PrepareDigest(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDigestAppendTo is the per-reader work on the fast path, into a
// reused buffer as the SMTP transport does.
func BenchmarkDigestAppendTo(b *testing.B) {
	dt := prepare(b, testComposer(b))
	r := testReader()
	buf, err := dt.AppendTo(nil, r, sendDate)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = dt.AppendTo(buf[:0], r, sendDate); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDigestEmailAppendTo is the per-reader work through *Email, as
// the delivery engine hands it to a transport: DigestTemplate.Email, then
// Email.AppendTo into a reused buffer.
func BenchmarkDigestEmailAppendTo(b *testing.B) {
	dt := prepare(b, testComposer(b))
	r := testReader()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		e := dt.Email(r, sendDate)
		var err error
		if buf, err = e.AppendTo(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDigestConcurrent splices from several goroutines at once (run with
// -race): a DigestTemplate is shared by every delivery worker.
func TestDigestConcurrent(t *testing.T) {
	dt := prepare(t, testComposer(t))
	readers := splicedReaders()
	want := make([][]byte, len(readers))
	for i, r := range readers {
		var err error
		if want[i], err = dt.AppendTo(nil, r, sendDate); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var buf []byte
			for n := range 50 {
				i := n % len(readers)
				var err error
				if buf, err = dt.AppendTo(buf[:0], readers[i], sendDate); err == nil && !bytes.Equal(buf, want[i]) {
					err = errors.New("concurrent splice differs")
				}
				if err == nil {
					var eb bytes.Buffer
					if _, err = dt.Email(readers[i], sendDate).WriteTo(&eb); err == nil && !bytes.Equal(eb.Bytes(), want[i]) {
						err = errors.New("concurrent Email differs")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
