package mailer

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"
)

// testEmail returns a message exercising every header the writer knows.
func testEmail() *Email {
	return &Email{
		FromName:  "Café Bleu, the newsroom",
		From:      "news@passblue.example",
		ToName:    "Ana Núñez",
		To:        "ana@example.org",
		ReplyTo:   "editors@passblue.example",
		Subject:   "Résumé: the week at the UN — «peacekeeping» budgets, votes and the road to the General Assembly",
		MessageID: "digest.7.42@passblue.example",
		Date:      time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("EST", -5*3600)),
		Text:      "Hello Ana,\n\nA line with = signs and trailing space \nand a very long line that goes on and on well past seventy-six characters so it must be soft-broken.\nFrom here on.\n.dot line\n",
		HTML:      "<p>Hello <b>Ana</b> — ünïcödé</p>\r\n<p>" + strings.Repeat("x", 200) + "</p>\r\n",
		Headers: []Header{
			{Name: "List-Unsubscribe", Value: "<https://herald.example/unsubscribe/abc>, <mailto:unsubscribe@herald.example?subject=unsubscribe-abc>"},
			{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
		},
	}
}

func encode(t testing.TB, e *Email) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := e.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func TestWriteToParsesWithEnmime(t *testing.T) {
	e := testEmail()
	raw := encode(t, e)
	env, err := enmime.ReadEnvelope(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, perr := range env.Errors {
		t.Errorf("enmime: %v", perr)
	}
	if got, want := env.Root.ContentType, "multipart/alternative"; got != want {
		t.Fatalf("root type = %q, want %q", got, want)
	}
	first, last := env.Root.FirstChild, env.Root.FirstChild.NextSibling
	if first.ContentType != "text/plain" || last == nil || last.ContentType != "text/html" || last.NextSibling != nil {
		t.Fatalf("parts: want text/plain then text/html")
	}
	if got, want := crlf(string(first.Content)), crlf(e.Text); got != want {
		t.Errorf("text part:\ngot  %q\nwant %q", got, want)
	}
	if got, want := crlf(string(last.Content)), crlf(e.HTML); got != want {
		t.Errorf("html part:\ngot  %q\nwant %q", got, want)
	}
	for _, h := range []struct{ name, want string }{
		{"Subject", e.Subject},
		{"Message-ID", "<" + e.MessageID + ">"},
		{"MIME-Version", "1.0"},
		{"List-Unsubscribe", e.Headers[0].Value},
		{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
		{"Reply-To", "<editors@passblue.example>"},
	} {
		if got := env.GetHeader(h.name); got != h.want {
			t.Errorf("%s = %q, want %q", h.name, got, h.want)
		}
	}
	from, err := env.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != e.FromName || from[0].Address != e.From {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := env.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != e.ToName || to[0].Address != e.To {
		t.Errorf("To = %v, %v", to, err)
	}
	date, err := env.Date()
	if err != nil || !date.Equal(e.Date) {
		t.Errorf("Date = %v, %v; want %v", date, err, e.Date)
	}
}

// TestWriteToStandardLibrary checks the same message with net/mail and
// mime/multipart, and the line rules enmime forgives.
func TestWriteToStandardLibrary(t *testing.T) {
	e := testEmail()
	raw := encode(t, e)
	headEnd := bytes.Index(raw, []byte("\r\n\r\n"))
	for i, line := range strings.Split(string(raw), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i, line)
		}
		limit := 76 // quoted-printable body
		if i < strings.Count(string(raw[:headEnd]), "\r\n")+1 {
			limit = 78 // header
		}
		if len(line) > limit {
			t.Errorf("line %d longer than %d: %q", i, limit, line)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != e.Subject {
		t.Errorf("Subject = %q, %v", subject, err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type: %q %v", mt, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Header.Get("Content-Transfer-Encoding"); got != "quoted-printable" {
			t.Errorf("encoding = %q", got)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
	}
	if got, want := strings.Join(types, ","), "text/plain,text/html"; got != want {
		t.Errorf("parts = %s, want %s", got, want)
	}
}

func TestWriteToDeterministic(t *testing.T) {
	a := encode(t, testEmail())
	b := encode(t, testEmail())
	if !bytes.Equal(a, b) {
		t.Fatal("two encodings of the same email differ")
	}
	other := testEmail()
	other.MessageID = "digest.7.43@passblue.example"
	c := encode(t, other)
	boundary := func(raw []byte) string {
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		return params["boundary"]
	}
	if boundary(a) == boundary(c) {
		t.Error("different Message-IDs gave the same boundary")
	}
	// Other writers get the same bytes.
	var sb strings.Builder
	if _, err := testEmail().WriteTo(&sb); err != nil || sb.String() != string(a) {
		t.Errorf("WriteTo(strings.Builder) differs: %v", err)
	}
}

func TestWriteToSinglePart(t *testing.T) {
	for _, tc := range []struct {
		name, text, html, want string
	}{
		{"text", "just text\n", "", "text/plain"},
		{"html", "", "<p>just html</p>", "text/html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEmail()
			e.Text, e.HTML = tc.text, tc.html
			env, err := enmime.ReadEnvelope(bytes.NewReader(encode(t, e)))
			if err != nil {
				t.Fatal(err)
			}
			if env.Root.ContentType != tc.want {
				t.Errorf("type = %q, want %q", env.Root.ContentType, tc.want)
			}
		})
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(e *Email)
	}{
		{"subject LF", func(e *Email) { e.Subject = "Hi\nBcc: victim@example.org" }},
		{"subject CRLF", func(e *Email) { e.Subject = "Hi\r\nBcc: victim@example.org" }},
		{"subject CR", func(e *Email) { e.Subject = "Hi\rthere" }},
		{"subject NUL", func(e *Email) { e.Subject = "Hi\x00" }},
		{"subject tab", func(e *Email) { e.Subject = "Hi\tthere" }},
		{"subject DEL", func(e *Email) { e.Subject = "Hi\x7f" }},
		{"subject C1 NEL", func(e *Email) { e.Subject = "Hi\u0085there" }},
		{"subject line separator", func(e *Email) { e.Subject = "Hi\u2028there" }},
		{"subject invalid UTF-8", func(e *Email) { e.Subject = "Hi\xff" }},
		{"to name LF", func(e *Email) { e.ToName = "Ana\nBcc: x@example.org" }},
		{"from name CR", func(e *Email) { e.FromName = "News\r" }},
		{"to LF", func(e *Email) { e.To = "ana@example.org\nBcc: x@example.org" }},
		{"to CRLF", func(e *Email) { e.To = "ana@example.org\r\n" }},
		{"to with name", func(e *Email) { e.To = "Ana <ana@example.org>" }},
		{"to list", func(e *Email) { e.To = "ana@example.org, bob@example.org" }},
		{"to comment", func(e *Email) { e.To = "ana@example.org (Ana)" }},
		{"to no at", func(e *Email) { e.To = "ana.example.org" }},
		{"to empty", func(e *Email) { e.To = "" }},
		{"to non-ASCII", func(e *Email) { e.To = "ana@exämple.org" }},
		{"from angle", func(e *Email) { e.From = "<news@passblue.example>" }},
		{"reply-to LF", func(e *Email) { e.ReplyTo = "a@b.example\n" }},
		{"return-path LF", func(e *Email) { e.ReturnPath = "bounce@b.example\nX: y" }},
		{"message-id LF", func(e *Email) { e.MessageID = "a@b\nBcc: x" }},
		{"message-id angle", func(e *Email) { e.MessageID = "<a@b>" }},
		{"message-id no at", func(e *Email) { e.MessageID = "ab" }},
		{"message-id empty", func(e *Email) { e.MessageID = "" }},
		{"header value LF", func(e *Email) { e.Headers = []Header{{Name: "List-Id", Value: "x\nBcc: y"}} }},
		{"header value CR", func(e *Email) { e.Headers = []Header{{Name: "List-Id", Value: "x\ry"}} }},
		{"header value non-ASCII", func(e *Email) { e.Headers = []Header{{Name: "List-Id", Value: "Café <x>"}} }},
		{"header name colon", func(e *Email) { e.Headers = []Header{{Name: "Bcc: y\nX", Value: "v"}} }},
		{"header name space", func(e *Email) { e.Headers = []Header{{Name: "X Y", Value: "v"}} }},
		{"header name empty", func(e *Email) { e.Headers = []Header{{Name: "", Value: "v"}} }},
		{"header reserved", func(e *Email) { e.Headers = []Header{{Name: "bcc", Value: "x@example.org"}} }},
		{"header reserved content-type", func(e *Email) { e.Headers = []Header{{Name: "Content-Type", Value: "text/plain"}} }},
		{"zero date", func(e *Email) { e.Date = time.Time{} }},
		{"no body", func(e *Email) { e.Text, e.HTML = "", "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEmail()
			tc.mutate(e)
			var buf bytes.Buffer
			n, err := e.WriteTo(&buf)
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("err = %v, want ErrInvalidEmail", err)
			}
			if n != 0 || buf.Len() != 0 {
				t.Errorf("wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

func TestAddressesAccepted(t *testing.T) {
	for _, addr := range []string{
		"a@b.example", "first.last+tag@sub.example.org", "o'brien@example.ie",
		"x@xn--bcher-kva.example", "user@[192.0.2.1]", "a!#$%&'*+-/=?^_`{|}~@example.com",
	} {
		if err := checkAddr("To", addr); err != nil {
			t.Errorf("checkAddr(%q) = %v", addr, err)
		}
	}
}

func TestHeaderFolding(t *testing.T) {
	for _, subject := range []string{
		strings.Repeat("word ", 40),
		strings.Repeat("naïve ", 30),
		strings.Repeat("x", 120) + " tail",
		"日本語のニュースレター、今週の国連の動き、そして総会への道のり。日本語のニュースレター",
	} {
		e := testEmail()
		e.Subject = strings.TrimSpace(subject)
		raw := encode(t, e)
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var dec mime.WordDecoder
		got, err := dec.DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || got != e.Subject {
			t.Errorf("Subject round trip:\ngot  %q (%v)\nwant %q", got, err, e.Subject)
		}
		head := string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))])
		for _, line := range strings.Split(head, "\r\n") {
			_, value, _ := strings.Cut(line, ": ")
			if len(line) > 78 && strings.Contains(strings.TrimSpace(value), " ") {
				t.Errorf("foldable line longer than 78: %q", line)
			}
			if strings.TrimSpace(line) == "" {
				t.Errorf("blank header line in %q", head)
			}
		}
	}
}

func TestQuotedPrintable(t *testing.T) {
	for _, s := range []string{
		"", "a", "a=b", "trailing space \nnext", "tab\t\n", "end space ", "caf\u00e9",
		strings.Repeat("=", 100), strings.Repeat("é", 60), "From the start\nFrom here",
		"bare\rCR", "crlf\r\nline\r\n", strings.Repeat("a", 75) + "=" + strings.Repeat("b", 10),
		".", ".card {\n.text {\n}", "a\n..\n.\n", strings.Repeat("a", 75) + ".b", strings.Repeat("a", 74) + ".",
		"mid.line. dots.",
	} {
		checkQP(t, s)
	}
	// A dot that starts an encoded line, after a hard or a soft break, is
	// escaped; others stay literal.
	for in, want := range map[string]string{
		".card":                        "=2Ecard",
		"a.b\n.c":                      "a.b\r\n=2Ec",
		strings.Repeat("a", 75) + ".b": strings.Repeat("a", 75) + "=\r\n=2Eb",
	} {
		if got := string(appendQuotedPrintable(nil, in)); got != want {
			t.Errorf("QP of %q = %q, want %q", in, got, want)
		}
	}
}

func checkQP(t *testing.T, s string) {
	t.Helper()
	enc := appendQuotedPrintable(nil, s)
	for _, line := range strings.Split(string(enc), "\r\n") {
		if len(line) > 76 {
			t.Fatalf("QP line longer than 76: %q", line)
		}
		if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
			t.Fatalf("QP line ends in white space: %q", line)
		}
		if strings.ContainsRune(line, '\r') || strings.ContainsRune(line, '\n') {
			t.Fatalf("bare CR or LF in %q", line)
		}
		if strings.HasPrefix(line, ".") {
			t.Fatalf("QP line starts with a dot: %q", line)
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatalf("decode %q: %v", enc, err)
	}
	want := strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	if string(dec) != want {
		t.Fatalf("QP round trip of %q:\ngot  %q\nwant %q\nencoded %q", s, dec, want, enc)
	}
}

func FuzzQuotedPrintable(f *testing.F) {
	for _, s := range []string{"hello", "a = b \n", "é\r\n", strings.Repeat("x ", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkQP(t, s)
	})
}

// FuzzWriteTo checks that any subject and name either is refused or
// survives a round trip through a MIME parser.
func FuzzWriteTo(f *testing.F) {
	f.Add("Hello", "Ana")
	f.Add("Ünïcödé — «quotes» and = signs?", "O'Brien, \"Jr\"")
	f.Add("x\r\nBcc: y", "z")
	f.Fuzz(func(t *testing.T, subject, name string) {
		e := testEmail()
		e.Subject, e.ToName = subject, name
		var buf bytes.Buffer
		if _, err := e.WriteTo(&buf); err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		msg, err := mail.ReadMessage(&buf)
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		var dec mime.WordDecoder
		got, err := dec.DecodeHeader(msg.Header.Get("Subject"))
		// Parsers may trim white space at the edges of a field body.
		if err != nil || strings.TrimSpace(got) != strings.TrimSpace(subject) {
			t.Fatalf("Subject %q came back %q (%v)", subject, got, err)
		}
		if strings.TrimSpace(name) == "" {
			return
		}
		to, err := mail.ParseAddress(msg.Header.Get("To"))
		if err != nil || to.Address != e.To {
			t.Fatalf("To %q: %v %v", msg.Header.Get("To"), to, err)
		}
	})
}

// BenchmarkWriteTo encodes a 10 KB message (2.5 KB text, 7.5 KB HTML) into
// a reused buffer, as the delivery workers do.
func BenchmarkWriteTo(b *testing.B) {
	e := testEmail()
	e.Text = strings.Repeat("A digest line about the day's news, with a link https://x.example/a?b=c.\n", 35)
	e.HTML = strings.Repeat(`<tr><td style="padding:8px;font-family:Arial,sans-serif;color:#222;"><a href="https://passblue.example/2026/03/04/story">A story</a> — résumé</td></tr>`+"\n", 50)
	var buf bytes.Buffer
	b.ReportAllocs()
	b.SetBytes(int64(len(encode(b, e))))
	for b.Loop() {
		buf.Reset()
		if _, err := e.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
	}
}
