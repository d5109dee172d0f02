package mailer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MinDKIMKeyBits is the smallest RSA key NewDKIMSigner accepts: RFC 8301
// forbids verifiers to accept shorter ones.
const MinDKIMKeyBits = 1024

// DefaultDKIMHeaders returns the header fields a DKIMSigner covers when its
// DKIMConfig names none: the fields a reader sees and the one-click
// unsubscribe pair that mailbox providers act on.
func DefaultDKIMHeaders() []string {
	return []string{"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"}
}

// DKIMHeadersIfPresent returns the header fields a DKIMSigner covers in
// addition to DKIMConfig.Headers whenever a message carries them: the ones
// Herald writes that receivers only trust when signed (RFC 9477 requires
// CFBL-Address to be covered; Gmail's Feedback-ID is read from signed
// messages), and the MIME fields that say how to read the signed body.
func DKIMHeadersIfPresent() []string {
	return []string{"Reply-To", "List-Id", "Feedback-ID", "CFBL-Address", "CFBL-Feedback-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}
}

// DKIMConfig configures a DKIMSigner.
type DKIMConfig struct {
	// Domain is the signing domain (d=), whose DNS holds the public key at
	// Selector._domainkey.Domain. For DMARC it must align with the From
	// address's domain.
	Domain string
	// Selector names the key (s=).
	Selector string
	// Key signs: an *rsa.PrivateKey of at least MinDKIMKeyBits bits or an
	// ed25519.PrivateKey (ParseDKIMKey reads either from PEM).
	Key crypto.Signer
	// Headers are the header fields always covered (h=), From among them.
	// Nil: DefaultDKIMHeaders. A field a message lacks is listed anyway,
	// which signs its absence: a field added later breaks the signature.
	Headers []string
}

// DKIMSigner signs encoded messages with DKIM (RFC 6376, relaxed/relaxed
// canonicalization, SHA-256, RSA or Ed25519 per RFC 8463). It is safe for
// concurrent use.
type DKIMSigner struct {
	domain, selector string
	key              crypto.Signer
	headers          []string
	ifPresent        []string // lower case, those not already in headers
	tagsHead         string   // "v=1; a=...; c=...; d=...; s=...;"
	now              func() time.Time
}

// NewDKIMSigner checks cfg and returns its signer. Errors name the field:
// a missing domain or selector, a key that is neither RSA (of at least
// MinDKIMKeyBits) nor Ed25519, a header list without From or with a name
// that is not a header field name.
func NewDKIMSigner(cfg DKIMConfig) (*DKIMSigner, error) {
	if !validDKIMName(cfg.Domain) {
		return nil, fmt.Errorf("dkim: domain %q is not a domain name", cfg.Domain)
	}
	if !validDKIMName(cfg.Selector) {
		return nil, fmt.Errorf("dkim: selector %q is not a DNS name", cfg.Selector)
	}
	if err := CheckDKIMKey(cfg.Key); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	algo := "rsa-sha256"
	if _, ok := cfg.Key.(ed25519.PrivateKey); ok {
		algo = "ed25519-sha256"
	}
	headers := cfg.Headers
	if headers == nil {
		headers = DefaultDKIMHeaders()
	}
	if err := CheckDKIMHeaders(headers); err != nil {
		return nil, err
	}
	key := cfg.Key
	if k, ok := key.(*rsa.PrivateKey); ok {
		// A copy with its CRT values in place: a key built without them
		// (not by ParseDKIMKey or rsa.GenerateKey) would otherwise have
		// them computed, and the key checked, on every signature.
		kc := *k
		kc.Precompute()
		if err := kc.Validate(); err != nil {
			return nil, fmt.Errorf("dkim: the RSA key is not valid: %w", err)
		}
		key = &kc
	}
	s := &DKIMSigner{
		domain:   cfg.Domain,
		selector: cfg.Selector,
		key:      key,
		headers:  slices.Clone(headers),
		tagsHead: "v=1; a=" + algo + "; c=relaxed/relaxed; d=" + cfg.Domain + "; s=" + cfg.Selector + ";",
		now:      time.Now,
	}
	for _, h := range DKIMHeadersIfPresent() {
		if !slices.ContainsFunc(headers, func(g string) bool { return strings.EqualFold(g, h) }) {
			s.ifPresent = append(s.ifPresent, strings.ToLower(h))
		}
	}
	return s, nil
}

// CheckDKIMKey reports why key cannot sign DKIM: it is missing, of another
// type than RSA or Ed25519, or an RSA key shorter than MinDKIMKeyBits.
func CheckDKIMKey(key crypto.Signer) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinDKIMKeyBits {
			return fmt.Errorf("the RSA key has %d bits; at least %d are needed (2048 recommended)", bits, MinDKIMKeyBits)
		}
	case ed25519.PrivateKey:
	case nil:
		return errors.New("no key")
	default:
		return fmt.Errorf("unsupported key type %T (RSA or Ed25519)", key)
	}
	return nil
}

// validDKIMName reports whether s can be a d= or s= value: dot-separated
// labels of letters, digits, hyphens and underscores.
func validDKIMName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// CheckDKIMHeaders reports why headers cannot be a DKIM header list: From
// missing, a name listed twice, a name that is not a header field name, or
// a field that changes in transit (DKIM-Signature, Return-Path, Received).
func CheckDKIMHeaders(headers []string) error {
	hasFrom := false
	for i, h := range headers {
		if h == "" {
			return errors.New("dkim: an empty header name")
		}
		for j := 0; j < len(h); j++ {
			if c := h[j]; c <= ' ' || c >= 0x7f || c == ':' {
				return fmt.Errorf("dkim: %q is not a header field name", h)
			}
		}
		for _, bad := range []string{"DKIM-Signature", "Return-Path", "Received"} {
			if strings.EqualFold(h, bad) {
				return fmt.Errorf("dkim: %s cannot be signed: it is added or changed in transit", h)
			}
		}
		if slices.ContainsFunc(headers[:i], func(g string) bool { return strings.EqualFold(g, h) }) {
			return fmt.Errorf("dkim: %s is listed twice", h)
		}
		hasFrom = hasFrom || strings.EqualFold(h, "From")
	}
	if !hasFrom {
		return errors.New("dkim: the header list must include From (RFC 6376 section 5.4)")
	}
	return nil
}

// ParseDKIMKey reads a private key from PEM: PKCS #1 ("RSA PRIVATE KEY") or
// PKCS #8 ("PRIVATE KEY") holding an RSA or Ed25519 key, as
// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` or
// `openssl genpkey -algorithm ed25519` write them.
func ParseDKIMKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found (expected -----BEGIN PRIVATE KEY-----)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("RSA PRIVATE KEY: %w", err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PRIVATE KEY: %w", err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported key type %T (RSA or Ed25519)", k)
		}
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (expected PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
}

// DNSRecord returns the TXT record that publishes the signer's public key:
// its name (selector._domainkey.domain) and value ("v=DKIM1; k=rsa; p=...").
func (s *DKIMSigner) DNSRecord() (name, value string) {
	name = s.selector + "._domainkey." + s.domain
	switch pub := s.key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil { // cannot happen for a valid RSA key
			return name, ""
		}
		return name, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return name, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	return name, ""
}

// Domain returns the signing domain (d=).
func (s *DKIMSigner) Domain() string { return s.domain }

// Sign returns the DKIM-Signature header field for msg, a complete message
// with CRLF line endings, folded and ending in CRLF, to be put before msg.
// It covers the configured headers and those of DKIMHeadersIfPresent that
// msg carries, with relaxed/relaxed canonicalization (RFC 6376 section
// 3.4) and SHA-256.
func (s *DKIMSigner) Sign(msg []byte) ([]byte, error) {
	fields, body := splitHeader(msg)
	keys := s.headerKeys(fields)

	h := sha256.New()
	hashRelaxedBody(h, body)
	var sum [sha256.Size]byte
	bh := base64.StdEncoding.AppendEncode(make([]byte, 0, 44), h.Sum(sum[:0]))

	// The field up to an empty b=, as it will stand in the message.
	f := &folder{b: make([]byte, 0, 768)}
	f.b = append(f.b, "DKIM-Signature:"...)
	f.line = len(f.b)
	f.tag(s.tagsHead)
	f.tag("t=" + strconv.FormatInt(s.now().Unix(), 10) + ";")
	for i, k := range keys {
		switch {
		case i == 0:
			f.tag("h=" + k)
		default:
			f.tag(":" + k)
		}
	}
	f.b = append(f.b, ';')
	f.tag(string(append(append([]byte("bh="), bh...), ';')))
	f.tag("b=")

	// The hash covers the signed fields, then this one with b= empty and
	// without its final CRLF (RFC 6376 section 3.7).
	h.Reset()
	var scratch []byte
	picked := make([]bool, len(fields))
	for _, k := range keys {
		// The last instance of a name not yet taken (section 5.4.2).
		for i := len(fields) - 1; i >= 0; i-- {
			if !picked[i] && equalFoldName(fields[i].name, k) {
				picked[i] = true
				scratch = appendRelaxedHeader(scratch[:0], fields[i].raw)
				h.Write(scratch)
				break
			}
		}
	}
	scratch = appendRelaxedHeader(scratch[:0], f.b)
	h.Write(scratch[:len(scratch)-2])
	digest := h.Sum(sum[:0])

	var sig []byte
	var err error
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		// RFC 8463: Ed25519 signs the SHA-256 hash, as PureEdDSA.
		sig = ed25519.Sign(k, digest)
	default:
		sig, err = s.key.Sign(rand.Reader, digest, crypto.SHA256)
		if err != nil {
			return nil, err
		}
	}
	b64 := base64.StdEncoding.AppendEncode(make([]byte, 0, base64.StdEncoding.EncodedLen(len(sig))), sig)
	// The first piece stays beside "b=", so that removing the value (and
	// the white space around it) gives back exactly what was hashed.
	for len(b64) > 0 {
		n := min(len(b64), max(maxLine-(len(f.b)-f.line), 16))
		f.b = append(f.b, b64[:n]...)
		b64 = b64[n:]
		if len(b64) > 0 {
			f.b = append(f.b, "\r\n "...)
			f.line = len(f.b) - 1
		}
	}
	return append(f.b, "\r\n"...), nil
}

// folder writes a header field's tags, folding before a tag that would
// take the line past maxLine.
type folder struct {
	b    []byte
	line int // start of the current line in b
}

// tag appends t, after a space or a fold.
func (f *folder) tag(t string) {
	if len(f.b)-f.line+1+len(t) > maxLine {
		f.b = append(f.b, "\r\n"...)
		f.line = len(f.b)
	}
	f.b = append(f.b, ' ')
	f.b = append(f.b, t...)
}

// headerField is one field of a message header: its name and its raw
// bytes, continuation lines and final CRLF included, both within the
// message.
type headerField struct {
	name []byte
	raw  []byte
}

// equalFoldName reports whether the header field names a and b are equal
// without regard to ASCII case (RFC 5322 names are printable ASCII).
func equalFoldName(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// splitHeader splits msg into its header fields and its body (what follows
// the empty line).
func splitHeader(msg []byte) ([]headerField, []byte) {
	fields := make([]headerField, 0, 16)
	i := 0
	for i < len(msg) {
		end := bytes.IndexByte(msg[i:], '\n')
		if end < 0 {
			end = len(msg)
		} else {
			end += i + 1
		}
		line := msg[i:end]
		if len(line) <= 2 && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return fields, msg[end:]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.raw = last.raw[:len(last.raw)+len(line)]
		} else {
			name, _, _ := bytes.Cut(line, []byte(":"))
			fields = append(fields, headerField{name: bytes.TrimRight(name, " \t"), raw: line})
		}
		i = end
	}
	return fields, nil
}

// appendRelaxedHeader appends the relaxed canonical form of one header
// field (RFC 6376 section 3.4.2): the name in lower case, no white space
// around the colon, the value unfolded with runs of white space reduced to
// one space and none at either end, then CRLF.
func appendRelaxedHeader(dst, field []byte) []byte {
	name, value, _ := bytes.Cut(field, []byte(":"))
	name = bytes.TrimRight(name, " \t")
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	space := false
	for _, c := range value {
		switch c {
		case ' ', '\t', '\r', '\n':
			space = true
		default:
			if space && dst[len(dst)-1] != ':' {
				dst = append(dst, ' ')
			}
			space = false
			dst = append(dst, c)
		}
	}
	return append(dst, "\r\n"...)
}

// hashRelaxedBody writes the relaxed canonical form of body (RFC 6376
// section 3.4.4) to h: white space at the end of each line dropped, runs of
// white space within a line reduced to one space, line breaks as CRLF, and
// the empty lines at the end dropped; an empty body hashes nothing. Lines
// already in that form, as quoted-printable lines almost always are, are
// hashed in place in runs.
func hashRelaxedBody(h hash.Hash, body []byte) {
	end := len(body)
	for end > 0 && isBodySpace(body[end-1]) {
		end--
	}
	if end == 0 {
		return
	}
	body = body[:end] // ends in a character that stays; CRLF follows below
	run := 0
	var scratch []byte
	for i := 0; i < len(body); {
		next := len(body)
		content := body[i:]
		if nl := bytes.IndexByte(content, '\n'); nl >= 0 {
			next = i + nl + 1
			content = body[i : i+nl]
			if len(content) > 0 && content[len(content)-1] == '\r' {
				content = content[:len(content)-1]
			} else {
				content = body[i : i+nl+1] // a bare LF: not clean
			}
		}
		if cleanLine(content) {
			i = next
			continue
		}
		h.Write(body[run:i])
		scratch = appendRelaxedLine(scratch[:0], content)
		if next < len(body) {
			scratch = append(scratch, "\r\n"...)
		}
		h.Write(scratch)
		i, run = next, next
	}
	h.Write(body[run:])
	h.Write([]byte("\r\n"))
}

// isBodySpace reports whether c is white space or a line break.
func isBodySpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// cleanLine reports whether a line (without its CRLF) is already relaxed
// canonical: no byte below '!' but single spaces, none at its end. It is
// conservative: a control character other than tab, CR and LF also makes a
// line unclean, which only sends it through appendRelaxedLine, which keeps
// it. It looks at eight bytes at a time (every byte of every body line
// passes through it); the tests hold it to a byte-at-a-time version.
func cleanLine(content []byte) bool {
	n := len(content)
	if n == 0 {
		return true
	}
	if content[n-1] == ' ' {
		return false
	}
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	var carry uint64 // bit 7 set when the previous word ended in a space
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(content[i:])
		// 0x80 in each byte below 0x21: (x|0x80)-0x21 never borrows
		// across bytes, and the &^x drops the bytes of 0x80 and above.
		ctl := ^((x | hi) - 0x21*lo) &^ x & hi
		if ctl == 0 {
			carry = 0
			continue
		}
		sp := zeroBytes(x ^ 0x20*lo)
		if ctl != sp || sp&(sp<<8|carry) != 0 {
			return false // another control byte, or two spaces in a row
		}
		carry = sp >> 56
	}
	for ; i < n; i++ {
		if c := content[i]; c < '!' && (c != ' ' || i > 0 && content[i-1] == ' ') {
			return false
		}
	}
	return true
}

// zeroBytes returns 0x80 in each byte of x that is zero and 0 in the others
// (exactly: no carry between bytes).
func zeroBytes(x uint64) uint64 {
	const low7, hi = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	return ^((x&low7 + low7) | x) & hi
}

// appendRelaxedLine appends the relaxed form of one line, without its line
// break: runs of white space become one space, white space before a CR or
// the end is dropped. A trailing LF (a bare line break) is dropped too; the
// caller writes CRLF.
func appendRelaxedLine(dst, content []byte) []byte {
	content = bytes.TrimSuffix(content, []byte("\n"))
	space := false
	for _, c := range content {
		switch c {
		case ' ', '\t':
			space = true
		case '\r':
			space = false
			dst = append(dst, c)
		default:
			if space {
				dst = append(dst, ' ')
				space = false
			}
			dst = append(dst, c)
		}
	}
	return dst
}

// headerKeys is the h= list for a message with fields: the configured
// headers, then those of ifPresent that the message holds, in its order.
func (s *DKIMSigner) headerKeys(fields []headerField) []string {
	keys := make([]string, len(s.headers), len(s.headers)+len(s.ifPresent))
	copy(keys, s.headers)
	var found [16]bool // indexes of ifPresent; it holds fewer than 16
	for _, f := range fields {
		for i, h := range s.ifPresent {
			if i < len(found) && !found[i] && equalFoldName(f.name, h) {
				found[i] = true
				keys = append(keys, canonicalHeaderName(h))
			}
		}
	}
	return keys
}

// canonicalHeaderName spells a lower-case name of DKIMHeadersIfPresent as
// Herald writes it, for a readable h= tag (names compare without case).
func canonicalHeaderName(lower string) string {
	for _, h := range DKIMHeadersIfPresent() {
		if strings.EqualFold(h, lower) {
			return h
		}
	}
	return lower
}

// DKIMTransport is a Transport that DKIM-signs every message before handing
// it to the next transport: it encodes the Email (AppendTo), signs the
// bytes, and passes on a copy of the Email that encodes as the signature
// followed by those bytes, so that the next transport sends exactly what
// was signed. It must be the last step that changes a message: headers
// added to the Email after signing make it encode afresh, unsigned. Fields
// that are not in the message (ReturnPath, the envelope sender) may still
// change.
type DKIMTransport struct {
	next   Transport
	signer *DKIMSigner
	bufs   sync.Pool // *[]byte encoding buffers
}

// NewDKIMTransport returns a transport signing with signer and sending
// through next.
func NewDKIMTransport(next Transport, signer *DKIMSigner) *DKIMTransport {
	return &DKIMTransport{next: next, signer: signer}
}

// Send signs e and sends it through the next transport. A message that
// cannot be encoded or signed fails with a permanent *SendError at
// StageEncode; the next transport's errors come back unchanged.
func (t *DKIMTransport) Send(ctx context.Context, e *Email) error {
	bp, _ := t.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer t.bufs.Put(bp)
	msg, err := e.AppendTo((*bp)[:0])
	if err != nil {
		return &SendError{Stage: StageEncode, Permanent: true, Err: err}
	}
	*bp = msg
	sig, err := t.signer.Sign(msg)
	if err != nil {
		return &SendError{Stage: StageEncode, Permanent: true, Err: fmt.Errorf("dkim: %w", err)}
	}
	raw := make([]byte, 0, len(sig)+len(msg))
	raw = append(append(raw, sig...), msg...)
	signed := *e
	signed.signed = &preEncoded{raw: raw, want: *e}
	signed.signed.want.Headers = slices.Clone(e.Headers)
	return t.next.Send(ctx, &signed)
}

// Close closes the next transport.
func (t *DKIMTransport) Close() error { return t.next.Close() }

// GatesData reports whether the next transport honours a DataGate: Send
// hands its context, and the gate in it, to the next transport.
func (t *DKIMTransport) GatesData() bool {
	g, ok := t.next.(DataGater)
	return ok && g.GatesData()
}

// preEncoded ties an Email to bytes encoded for it beforehand (a signed
// message), written by AppendTo for as long as the Email's fields still
// hold what they held then.
type preEncoded struct {
	raw  []byte
	want Email
}

// matches reports whether e still holds the fields the bytes were encoded
// from. Strings that share their bytes with want compare cheaply.
func (p *preEncoded) matches(e *Email) bool {
	w := &p.want
	return e.FromName == w.FromName && e.From == w.From && e.ToName == w.ToName && e.To == w.To &&
		e.ReplyTo == w.ReplyTo && e.Subject == w.Subject && e.MessageID == w.MessageID &&
		e.Date == w.Date && e.Text == w.Text && e.HTML == w.HTML && slices.Equal(e.Headers, w.Headers) &&
		e.splice == w.splice
}
