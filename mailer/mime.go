package mailer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidEmail is wrapped by every error that WriteTo and AppendTo return
// for a message that can never be encoded: a missing field, an invalid
// address, or a header value carrying CR, LF or another control character.
var ErrInvalidEmail = errors.New("invalid email")

// maxLine is the length after which header lines are folded (RFC 5322
// section 2.1.1 recommends 78).
const maxLine = 78

// dateLayout is the RFC 5322 date-time format.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidEmail}, args...)...)
}

// WriteTo writes e as an RFC 5322 message with CRLF line endings: the
// headers, then a multipart/alternative body with the text part first and
// the HTML part last, both UTF-8 quoted-printable. A message with only one of
// Text and HTML is written as that single part. The output depends only on
// e, so a retried message is byte-identical. It refuses (ErrInvalidEmail)
// header values and addresses that contain control characters.
func (e *Email) WriteTo(w io.Writer) (int64, error) {
	var dst []byte
	buf, isBuf := w.(*bytes.Buffer)
	if isBuf {
		buf.Grow(e.sizeHint())
		dst = buf.AvailableBuffer()
	} else {
		dst = make([]byte, 0, e.sizeHint())
	}
	dst, err := e.AppendTo(dst)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(dst)
	return int64(n), err
}

// sizeHint estimates the encoded size so that one allocation usually holds
// the whole message.
func (e *Email) sizeHint() int {
	n := 1024 + len(e.Subject)*3 + len(e.FromName)*3 + len(e.ToName)*3
	for _, h := range e.Headers {
		n += len(h.Name) + len(h.Value) + 8
	}
	// Quoted-printable grows ASCII text by a few percent (soft breaks,
	// escaped '='); non-ASCII bytes triple.
	n += len(e.Text) + len(e.Text)/8 + len(e.HTML) + len(e.HTML)/8
	if e.splice != nil && e.splice.lean {
		n += e.splice.t.body(e.splice.v.name).encLen
	}
	return n
}

// AppendTo appends the encoded message (see WriteTo) to dst and returns the
// extended slice. On error dst is returned unchanged.
//
// An Email from DigestTemplate.Email is written from the digest's
// pre-encoded parts (DigestTemplate.AppendTo), and one that DKIMTransport
// signed as the signed bytes, unless a field has been changed since, in
// which case it is encoded afresh like any other.
func (e *Email) AppendTo(dst []byte) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return dst, err
	}
	b, _, err := e.appendEncoded(dst)
	return b, err
}

// appendEncoded is AppendTo for a validated e, and also reports whether
// the message is known to hold no line that starts with a dot, so that
// SMTP need not dot-stuff it: a digest spliced from its template, where
// quoted-printable escapes such a dot (qpLineStartEscape), and no header
// line starts with one (a folded line starts with white space).
func (e *Email) appendEncoded(dst []byte) (b []byte, dotFree bool, err error) {
	if e.signed != nil && e.signed.matches(e) {
		return append(dst, e.signed.raw...), false, nil
	}
	if e.splice != nil && e.splice.matches(e) {
		return e.splice.appendTo(dst), true, nil
	}
	b, err = e.appendFresh(dst)
	return b, false, err
}

// appendFresh encodes e from its fields (AppendTo for an Email that did
// not come from a digest template or the signer, or was changed since).
func (e *Email) appendFresh(dst []byte) ([]byte, error) {
	if e.splice != nil && e.splice.lean && e.Text == "" && e.HTML == "" {
		return e.splice.decoded(e).AppendTo(dst)
	}
	b := dst

	start := len(b)
	b = append(b, "From: "...)
	b = appendNameAddr(b, e.FromName, e.From, start)
	b = foldLast(b, start)
	start = len(b)
	b = append(b, "To: "...)
	b = appendNameAddr(b, e.ToName, e.To, start)
	b = foldLast(b, start)
	if e.ReplyTo != "" {
		b = append(b, "Reply-To: <"...)
		b = append(b, e.ReplyTo...)
		b = append(b, ">\r\n"...)
	}
	// Subject: unstructured, so RFC 2047 words may stand anywhere.
	start = len(b)
	b = append(b, "Subject: "...)
	if isPrintableASCII(e.Subject) {
		b = append(b, e.Subject...)
	} else {
		b = appendEncodedWords(b, e.Subject, false, start)
	}
	b = foldLast(b, start)
	b = append(b, "Date: "...)
	b = e.Date.AppendFormat(b, dateLayout)
	b = append(b, "\r\nMessage-ID: <"...)
	b = append(b, e.MessageID...)
	b = append(b, ">\r\nMIME-Version: 1.0\r\n"...)
	for _, h := range e.Headers {
		start := len(b)
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = foldLast(b, start)
	}

	switch {
	case e.Text != "" && e.HTML != "":
		var boundary [48]byte
		bnd := appendBoundary(boundary[:0], e.MessageID)
		b = append(b, "Content-Type: multipart/alternative;\r\n boundary=\""...)
		b = append(b, bnd...)
		b = append(b, "\"\r\n\r\n"...)
		b = appendDelimiter(b, bnd, false)
		b = appendPart(b, "text/plain", e.Text)
		b = append(b, "\r\n"...)
		b = appendDelimiter(b, bnd, false)
		b = appendPart(b, "text/html", e.HTML)
		b = append(b, "\r\n"...)
		b = appendDelimiter(b, bnd, true)
	case e.Text != "":
		b = appendPart(b, "text/plain", e.Text)
	default:
		b = appendPart(b, "text/html", e.HTML)
	}
	return b, nil
}

// appendBoundary derives the multipart boundary from the Message-ID so the
// same message always encodes the same way. It starts with "=_", a sequence
// that quoted-printable output can never contain, so no body line can
// collide with it.
func appendBoundary(dst []byte, messageID string) []byte {
	sum := sha256.Sum256([]byte(messageID))
	dst = append(dst, "=_herald"...)
	return hex.AppendEncode(dst, sum[:16])
}

func appendDelimiter(b, boundary []byte, last bool) []byte {
	b = append(b, "--"...)
	b = append(b, boundary...)
	if last {
		return append(b, "--\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendPart(b []byte, contentType, body string) []byte {
	b = append(b, "Content-Type: "...)
	b = append(b, contentType...)
	b = append(b, "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"...)
	return appendQuotedPrintable(b, body)
}

// Validate reports whether e can be encoded: From, To and MessageID present,
// every address a bare addr-spec, a non-zero Date, a text or HTML body, and
// no control characters in any header value. Its errors wrap ErrInvalidEmail.
func (e *Email) Validate() error {
	if e.invalid != nil {
		return e.invalid
	}
	if e.splice != nil && e.splice.matches(e) {
		// A digest as its template made it: the template's fields were
		// checked by NewComposer and PrepareDigest, the reader's by
		// DigestTemplate.values (the name cleaned by greetingName), which
		// a send would otherwise check again, twice, for every reader.
		// Only ReturnPath is set freely.
		if e.ReturnPath != "" {
			return checkAddr("Return-Path", e.ReturnPath)
		}
		return nil
	}
	if err := checkAddr("From", e.From); err != nil {
		return err
	}
	if err := checkAddr("To", e.To); err != nil {
		return err
	}
	if e.ReplyTo != "" {
		if err := checkAddr("Reply-To", e.ReplyTo); err != nil {
			return err
		}
	}
	if e.ReturnPath != "" {
		if err := checkAddr("Return-Path", e.ReturnPath); err != nil {
			return err
		}
	}
	if err := checkText("From name", e.FromName); err != nil {
		return err
	}
	if err := checkText("To name", e.ToName); err != nil {
		return err
	}
	if err := checkText("Subject", e.Subject); err != nil {
		return err
	}
	if err := checkMessageID(e.MessageID); err != nil {
		return err
	}
	if e.Date.IsZero() {
		return invalidf("missing Date")
	}
	if e.Text == "" && e.HTML == "" && (e.splice == nil || !e.splice.lean) {
		return invalidf("no body")
	}
	for _, h := range e.Headers {
		if err := checkHeader(h); err != nil {
			return err
		}
	}
	return nil
}

// checkText accepts any valid UTF-8 without control characters (C0, DEL, C1,
// and the Unicode line and paragraph separators).
func checkText(field, s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return invalidf("%s contains control character %#02x", field, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return invalidf("%s is not valid UTF-8", field)
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return invalidf("%s contains control character %U", field, r)
		}
		i += size
	}
	return nil
}

// checkHeader accepts an RFC 5322 field name that WriteTo does not write
// itself, and a printable ASCII value (encode anything else before).
func checkHeader(h Header) error {
	if h.Name == "" {
		return invalidf("empty header name")
	}
	for i := 0; i < len(h.Name); i++ {
		if c := h.Name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return invalidf("header name %q is invalid", h.Name)
		}
	}
	// WriteTo writes these itself (or, for Cc and Bcc, never).
	reserved := [...]string{
		"From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Return-Path",
	}
	for _, r := range reserved {
		if strings.EqualFold(h.Name, r) {
			return invalidf("header %s is written by the encoder", r)
		}
	}
	if !isPrintableASCII(h.Value) {
		return invalidf("header %s: value must be printable ASCII without CR or LF", h.Name)
	}
	return nil
}

// checkMessageID accepts id-left "@" id-right made of printable ASCII
// without spaces or angle brackets.
func checkMessageID(id string) error {
	if id == "" {
		return invalidf("missing Message-ID")
	}
	at := -1
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' {
			return invalidf("Message-ID contains %q", c)
		}
		if c == '@' {
			at = i
		}
	}
	if at <= 0 || at == len(id)-1 {
		return invalidf("Message-ID must be id-left@id-right")
	}
	return nil
}

// checkAddr accepts a bare ASCII addr-spec (local@domain, no display name,
// no angle brackets). Domains arrive already in their ASCII (punycode) form.
func checkAddr(field, addr string) error {
	if addr == "" {
		return invalidf("missing %s address", field)
	}
	if validDotAtomAddr(addr) {
		return nil
	}
	// Let net/mail judge the rarer forms (quoted local parts, domain
	// literals), but only accept the address if it comes back unchanged:
	// anything it had to normalise (comments, angle brackets, folding) has
	// no place in a header we write verbatim.
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c >= 0x7f {
			return invalidf("%s address contains %q", field, c)
		}
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || a.Address != addr {
		return invalidf("%s address %q is not a bare address", field, addr)
	}
	return nil
}

// validDotAtomAddr is the fast path for the usual address: a dot-atom local
// part and a host name.
func validDotAtomAddr(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 || at == len(s)-1 || len(s) > 254 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	prevDot := true
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !isAtext(c) {
			return false
		}
		prevDot = false
	}
	if prevDot {
		return false
	}
	labelLen := 0
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		switch {
		case c == '.':
			if labelLen == 0 || domain[i-1] == '-' {
				return false
			}
			labelLen = 0
		case c == '-':
			if labelLen == 0 {
				return false
			}
			labelLen++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			labelLen++
		default:
			return false
		}
		if labelLen > 63 {
			return false
		}
	}
	return labelLen > 0 && domain[len(domain)-1] != '-'
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// appendNameAddr appends `phrase <addr>`, or `<addr>` without a name. The
// display name is written as atoms when it can be, as a quoted-string when
// it holds specials, and as RFC 2047 encoded words when it is not ASCII.
func appendNameAddr(b []byte, name, addr string, lineStart int) []byte {
	if name != "" {
		b = appendPhrase(b, name, lineStart)
		b = append(b, ' ')
	}
	b = append(b, '<')
	b = append(b, addr...)
	return append(b, '>')
}

// appendPhrase appends name as an RFC 5322 phrase; lineStart is the start of
// the header line in b.
func appendPhrase(b []byte, name string, lineStart int) []byte {
	if !isPrintableASCII(name) {
		return appendEncodedWords(b, name, true, lineStart)
	}
	atoms := name[0] != ' ' && name[len(name)-1] != ' ' && !strings.Contains(name, "  ")
	for i := 0; atoms && i < len(name); i++ {
		atoms = name[i] == ' ' || isAtext(name[i])
	}
	if atoms {
		return append(b, name...)
	}
	b = append(b, '"')
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, name[i])
	}
	return append(b, '"')
}

const hexDigits = "0123456789ABCDEF"

// appendEncodedWords appends s as RFC 2047 "Q" encoded words of at most 75
// characters, separated by a space (where foldLast may break the line),
// never splitting a UTF-8 sequence. The first word is shortened so that it
// ends within maxLine of lineStart, the start of the header line in b. In a
// phrase (phrase true) only the characters RFC 2047 section 5(3) allows stay
// literal.
func appendEncodedWords(b []byte, s string, phrase bool, lineStart int) []byte {
	const prefix, suffix = "=?utf-8?q?", "?="
	const maxWord = 75 - len(prefix) - len(suffix)
	n := 0 // encoded length of the current word
	if room := maxLine - (len(b) - lineStart) - len(prefix) - len(suffix); room < maxWord && room >= 12 {
		n = maxWord - room // start the first word as if partly full
	}
	b = append(b, prefix...)
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		enc := 0
		for j := i; j < i+size; j++ {
			if qLiteral(s[j], phrase) {
				enc++
			} else {
				enc += 3
			}
		}
		if n+enc > maxWord {
			b = append(b, suffix+" "+prefix...)
			n = 0
		}
		for j := i; j < i+size; j++ {
			c := s[j]
			switch {
			case c == ' ':
				b = append(b, '_')
			case qLiteral(c, phrase):
				b = append(b, c)
			default:
				b = append(b, '=', hexDigits[c>>4], hexDigits[c&0x0f])
			}
		}
		n += enc
		i += size
	}
	return append(b, suffix...)
}

// qLiteral reports whether c may appear unencoded (space as '_') in a Q
// encoded word.
func qLiteral(c byte, phrase bool) bool {
	switch {
	case c == ' ':
		return true
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '!' || c == '*' || c == '+' || c == '-' || c == '/':
		return true
	case phrase:
		return false
	}
	return c > ' ' && c < 0x7f && c != '=' && c != '?' && c != '_' && c != '(' && c != ')' && c != '"'
}

// foldLast folds the header line that starts at b[start:] (not yet
// terminated) so that lines stay within maxLine where whitespace allows, and
// terminates it with CRLF. A break goes before a space that follows a
// non-space, so no folded line is blank, and never inside the field name.
func foldLast(b []byte, start int) []byte {
	if len(b)-start <= maxLine {
		return append(b, "\r\n"...)
	}
	line := b[start:]
	colon := bytes.IndexByte(line, ':')
	// Find the break points first, then rebuild in place from the end.
	var breaksArr [32]int
	breaks := breaksArr[:0]
	lineStart, lastSpace := 0, -1
	for i := colon + 2; i < len(line); i++ {
		if line[i] == ' ' && line[i-1] != ' ' {
			if i-lineStart > maxLine && lastSpace > lineStart {
				breaks = append(breaks, lastSpace)
				lineStart = lastSpace
			}
			lastSpace = i
		}
	}
	if len(line)-lineStart > maxLine && lastSpace > lineStart {
		breaks = append(breaks, lastSpace)
	}
	if len(breaks) == 0 {
		return append(b, "\r\n"...)
	}
	// Each break inserts CRLF before the space.
	extra := 2 * len(breaks)
	oldLen := len(b)
	for range extra {
		b = append(b, 0)
	}
	line = b[start:]
	src := oldLen - start // end of the unshifted content, exclusive
	dst := len(line)
	for k := len(breaks) - 1; k >= 0; k-- {
		p := breaks[k]
		n := copy(line[dst-(src-p):dst], line[p:src])
		dst -= n
		src = p
		dst -= 2
		line[dst], line[dst+1] = '\r', '\n'
	}
	return append(b, "\r\n"...)
}

// appendQuotedPrintable appends s encoded as quoted-printable (RFC 2045
// section 6.7) with CRLF line breaks: LF and CRLF in s are line breaks, lines
// are soft-broken before 76 characters without splitting an escape, and
// trailing white space is escaped. The output always ends without a line
// break unless s does.
func appendQuotedPrintable(b []byte, s string) []byte {
	return appendQP(b, s, false)
}

// appendQPSegment appends s as one segment of a quoted-printable body that
// is encoded in pieces (see DigestTemplate). Like appendQuotedPrintable it
// starts a new encoded line; when more is set (another segment follows) the
// white space at the end of s stays literal, since it does not end a line,
// and the output ends with a soft line break unless s ends with a line
// break. So every segment both starts and ends at the start of an encoded
// line, and segments encoded apart concatenate into a valid body that
// decodes to the concatenation of their texts.
func appendQPSegment(b []byte, s string, more bool) []byte {
	if s == "" {
		return b
	}
	b = appendQP(b, s, more)
	if more && s[len(s)-1] != '\n' {
		b = append(b, "=\r\n"...)
	}
	return b
}

// appendQP is appendQuotedPrintable; more says that s does not end the
// body, so white space at its end is not trailing.
func appendQP(b []byte, s string, more bool) []byte {
	lineLen := 0
	for i := 0; i < len(s); {
		c := s[i]
		// Fast path: copy a run of characters that stay literal, up to
		// the end of the line budget.
		if lineLen < 75 && qpSafe(s, i, more) && !(lineLen == 0 && qpLineStartEscape(s, i)) {
			j, limit := i+1, min(len(s), i+75-lineLen)
			for j < limit && qpSafe(s, j, more) {
				j++
			}
			b = append(b, s[i:j]...)
			lineLen += j - i
			i = j
			continue
		}
		if c == '\n' || (c == '\r' && i+1 < len(s) && s[i+1] == '\n') {
			if c == '\r' {
				i++
			}
			i++
			b = append(b, "\r\n"...)
			lineLen = 0
			continue
		}
		literal := qpSafe(s, i, more)
		width := 1
		if !literal {
			width = 3
		}
		if lineLen+width > 75 {
			b = append(b, "=\r\n"...)
			lineLen = 0
		}
		if literal && lineLen == 0 && qpLineStartEscape(s, i) {
			literal, width = false, 3
		}
		if literal {
			b = append(b, c)
		} else {
			b = append(b, '=', hexDigits[c>>4], hexDigits[c&0x0f])
		}
		lineLen += width
		i++
	}
	return b
}

// qpLineStartEscape reports whether s[i], at the start of an encoded line,
// is escaped although it could stay literal: a '.', so that no encoded
// line starts with one and SMTP need not dot-stuff the body (see
// Email.appendEncoded), and the 'F' of "From ", which mbox writers mangle.
func qpLineStartEscape(s string, i int) bool {
	return s[i] == '.' || s[i] == 'F' && strings.HasPrefix(s[i:], "From ")
}

// qpSafe reports whether s[i] may stay literal in quoted-printable: a
// printable ASCII character other than '=', or a space or tab that does not
// end a line (the end of s ends a line unless more is set).
func qpSafe(s string, i int, more bool) bool {
	c := s[i]
	if c >= '!' && c <= '~' {
		return c != '='
	}
	if c != ' ' && c != '\t' {
		return false
	}
	i++
	if i == len(s) {
		return more
	}
	return s[i] != '\n' && !(s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n')
}
