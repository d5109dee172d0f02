package mailer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimKeys generates one key of each kind a DKIMSigner takes, once per
// test binary run would be nicer, but keys generated per test keep tests
// independent; RSA-2048 generation takes well under a second.
func dkimKeys(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"rsa-2048": rsaKey, "ed25519": edKey}
}

func testSigner(t testing.TB, key crypto.Signer, headers []string) *DKIMSigner {
	t.Helper()
	s, err := NewDKIMSigner(DKIMConfig{Domain: "passblue.example", Selector: "herald2026", Key: key, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifyDKIM checks raw with go-msgauth's verifier, answering its DNS query
// with the signer's own record, and returns the single verification.
func verifyDKIM(t *testing.T, s *DKIMSigner, raw []byte) *dkim.Verification {
	t.Helper()
	name, value := s.DNSRecord()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != name {
				return nil, fmt.Errorf("unexpected DNS query for %s", domain)
			}
			return []string{value}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 {
		t.Fatalf("%d signatures, want 1", len(vs))
	}
	return vs[0]
}

// captureTransport keeps the bytes each message encodes to.
type captureTransport struct {
	mu     sync.Mutex
	emails []*Email
	raw    [][]byte
}

func (c *captureTransport) Send(_ context.Context, e *Email) error {
	b, err := e.AppendTo(nil)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.emails = append(c.emails, e)
	c.raw = append(c.raw, b)
	return nil
}

func (c *captureTransport) Close() error { return nil }

// dkimTestEmails are a confirmation, a welcome and a spliced digest.
func dkimTestEmails(t *testing.T) map[string]*Email {
	t.Helper()
	c := testComposer(t)
	out := map[string]*Email{}
	for _, kind := range []string{KindConfirmation, KindWelcome} {
		d := testData()
		d.MessageID = kind + ".42@passblue.example"
		e, err := c.Compose(kind, d)
		if err != nil {
			t.Fatal(err)
		}
		out[kind] = e
	}
	e := prepare(t, c).Email(testReader(), sendDate)
	if e.splice == nil {
		t.Fatal("the digest Email is not spliced")
	}
	out["digest"] = e
	return out
}

func TestDKIMSignedMessagesVerify(t *testing.T) {
	for keyName, key := range dkimKeys(t) {
		s := testSigner(t, key, nil)
		for kind, e := range dkimTestEmails(t) {
			t.Run(keyName+"/"+kind, func(t *testing.T) {
				// Through a real relay: what arrives is what must verify.
				be := &backend{}
				srv := startServer(t, be, TLSNone)
				tr := NewDKIMTransport(NewSMTPTransport(srv.config(TLSNone)), s)
				defer tr.Close()
				unsigned := encode(t, e)
				if err := tr.Send(context.Background(), e); err != nil {
					t.Fatal(err)
				}
				msgs := be.messages()
				if len(msgs) != 1 {
					t.Fatalf("the relay got %d messages", len(msgs))
				}
				raw := msgs[0].data
				if !bytes.HasPrefix(raw, []byte("DKIM-Signature: ")) {
					t.Fatalf("the message does not start with its signature:\n%.300s", raw)
				}
				if !bytes.HasSuffix(raw, unsigned) {
					t.Error("the signed message is not the signature followed by the unsigned encoding")
				}
				v := verifyDKIM(t, s, raw)
				if v.Err != nil {
					t.Fatalf("verification failed: %v\n%.1200s", v.Err, raw)
				}
				if v.Domain != "passblue.example" {
					t.Errorf("d= %q", v.Domain)
				}
				for _, h := range append(DefaultDKIMHeaders(), "List-Id", "MIME-Version", "Content-Type") {
					if kind != "digest" && h == "List-Id" {
						if !bytes.Contains(raw, []byte("\r\nList-Id: ")) {
							continue
						}
					}
					if !slices.ContainsFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, h) }) {
						t.Errorf("h= %v lacks %s", v.HeaderKeys, h)
					}
				}
				if slices.ContainsFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, "Feedback-ID") }) {
					t.Errorf("h= %v lists Feedback-ID, which the message lacks", v.HeaderKeys)
				}
				if !bytes.Contains(raw, []byte("c=relaxed/relaxed")) {
					t.Error("the canonicalization is not relaxed/relaxed")
				}
			})
		}
	}
}

// tamper returns raw with the first occurrence of old replaced by new, and
// fails if there is none.
func tamper(t *testing.T, raw []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(raw, []byte(old)) {
		t.Fatalf("nothing to tamper: %q not found", old)
	}
	return bytes.Replace(raw, []byte(old), []byte(new), 1)
}

func TestDKIMTamperingBreaksVerification(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["rsa-2048"], nil)
	var capt captureTransport
	tr := NewDKIMTransport(&capt, s)
	e := dkimTestEmails(t)["digest"]
	if err := tr.Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	raw := capt.raw[0]
	if v := verifyDKIM(t, s, raw); v.Err != nil {
		t.Fatalf("the untouched message does not verify: %v", v.Err)
	}
	cases := map[string][]byte{
		"subject":          tamper(t, raw, "Subject: ", "Subject: Re: "),
		"to":               tamper(t, raw, "<ana@example.org>", "<eve@example.org>"),
		"list-unsubscribe": tamper(t, raw, "List-Unsubscribe: <https://", "List-Unsubscribe: <http://"),
		"list-id":          tamper(t, raw, "List-Id: ", "List-Id: x"),
		"body":             tamper(t, raw, "Ana", "Eve"),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			v := verifyDKIM(t, s, bad)
			if v.Err == nil {
				t.Fatal("a tampered message verifies")
			}
		})
	}
	// Relaxed canonicalization forgives what relays do to white space.
	t.Run("refolded white space", func(t *testing.T) {
		ok := tamper(t, raw, "Subject: ", "Subject:   ")
		if v := verifyDKIM(t, s, ok); v.Err != nil {
			t.Fatalf("relaxed canonicalization should ignore added white space: %v", v.Err)
		}
	})
	// A relay may add fields the signature does not cover (Received, an
	// ESP's own Feedback-ID); the signature stands.
	t.Run("added unsigned field", func(t *testing.T) {
		ok := tamper(t, raw, "\r\nMIME-Version:", "\r\nX-Relay: added\r\nMIME-Version:")
		if v := verifyDKIM(t, s, ok); v.Err != nil {
			t.Fatalf("an added unsigned field broke the signature: %v", v.Err)
		}
	})
}

func TestDKIMChangedEmailIsEncodedAfresh(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["ed25519"], nil)
	var capt captureTransport
	tr := NewDKIMTransport(&capt, s)
	e := dkimTestEmails(t)[KindWelcome]
	if err := tr.Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	signed := capt.emails[0]
	// The envelope may change: it is not in the signed bytes.
	signed.ReturnPath = "bounces+x@passblue.example"
	if b, _ := signed.AppendTo(nil); !bytes.Equal(b, capt.raw[0]) {
		t.Error("changing ReturnPath dropped the signature")
	}
	// A header added after signing would break the signature; the Email
	// is encoded afresh, unsigned, instead.
	signed.Headers = append(slices.Clone(signed.Headers), Header{Name: "X-Late", Value: "1"})
	b, err := signed.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("DKIM-Signature")) || !bytes.Contains(b, []byte("X-Late: 1")) {
		t.Errorf("a changed Email still encodes as the signed bytes")
	}
	// The caller's Email is left as it was.
	if e.signed != nil {
		t.Error("Send changed the caller's Email")
	}
}

func TestDKIMHeaderKeys(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["ed25519"], []string{"From", "Subject", "List-Id"})
	e := testEmail()
	e.Headers = append(e.Headers,
		Header{Name: "Feedback-ID", Value: "318:digest:daily:passblue"},
		Header{Name: "CFBL-Address", Value: "fbl@passblue.example; report=arf"},
	)
	var capt captureTransport
	if err := NewDKIMTransport(&capt, s).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	v := verifyDKIM(t, s, capt.raw[0])
	if v.Err != nil {
		t.Fatal(v.Err)
	}
	got := strings.Join(v.HeaderKeys, ":")
	// List-Id is configured, so it is listed even though absent (its
	// absence is signed) and not repeated among the optional ones, which
	// follow in the message's order.
	want := "From:Subject:List-Id:Reply-To:MIME-Version:Feedback-ID:CFBL-Address:Content-Type"
	if got != want {
		t.Errorf("h=%s\nwant %s", got, want)
	}
}

func TestNewDKIMSignerErrors(t *testing.T) {
	keys := dkimKeys(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := DKIMConfig{Domain: "passblue.example", Selector: "s1", Key: keys["ed25519"]}
	cases := map[string]struct {
		edit func(*DKIMConfig)
		want string
	}{
		"no domain":     {func(c *DKIMConfig) { c.Domain = "" }, "domain"},
		"no selector":   {func(c *DKIMConfig) { c.Selector = "" }, "selector"},
		"bad selector":  {func(c *DKIMConfig) { c.Selector = "a; b" }, "selector"},
		"no key":        {func(c *DKIMConfig) { c.Key = nil }, "no key"},
		"ecdsa":         {func(c *DKIMConfig) { c.Key = ec }, "unsupported key type"},
		"no From":       {func(c *DKIMConfig) { c.Headers = []string{"To", "Subject"} }, "must include From"},
		"twice":         {func(c *DKIMConfig) { c.Headers = []string{"From", "to", "To"} }, "listed twice"},
		"bad name":      {func(c *DKIMConfig) { c.Headers = []string{"From", "Sub ject"} }, "not a header field name"},
		"in transit":    {func(c *DKIMConfig) { c.Headers = []string{"From", "Return-Path"} }, "in transit"},
		"own signature": {func(c *DKIMConfig) { c.Headers = []string{"From", "dkim-signature"} }, "in transit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := NewDKIMSigner(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewDKIMSigner(good); err != nil {
		t.Fatal(err)
	}
}

func TestParseDKIMKey(t *testing.T) {
	keys := dkimKeys(t)
	rsaKey := keys["rsa-2048"].(*rsa.PrivateKey)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok := map[string][]byte{
		"pkcs1 rsa": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"pkcs8 rsa": pkcs8(rsaKey),
		"pkcs8 ed":  pkcs8(keys["ed25519"]),
	}
	for name, p := range ok {
		t.Run(name, func(t *testing.T) {
			k, err := ParseDKIMKey(p)
			if err != nil {
				t.Fatal(err)
			}
			s := testSigner(t, k, nil)
			if _, v := s.DNSRecord(); !strings.HasPrefix(v, "v=DKIM1; k=") {
				t.Errorf("DNS record %q", v)
			}
		})
	}
	bad := map[string][]byte{
		"empty":       nil,
		"not pem":     []byte("hello"),
		"certificate": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"broken":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"ecdsa":       pkcs8(ec),
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseDKIMKey(p); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestDKIMTransportEncodeError(t *testing.T) {
	keys := dkimKeys(t)
	var capt captureTransport
	tr := NewDKIMTransport(&capt, testSigner(t, keys["ed25519"], nil))
	e := testEmail()
	e.To = "not an address"
	err := tr.Send(context.Background(), e)
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageEncode || !se.Permanent || !errors.Is(err, ErrInvalidEmail) {
		t.Fatalf("err = %v, want a permanent encode error", err)
	}
	if len(capt.raw) != 0 {
		t.Error("an invalid message reached the next transport")
	}
}

func TestDKIMTransportConcurrent(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["ed25519"], nil)
	var capt captureTransport
	tr := NewDKIMTransport(&capt, s)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if err := tr.Send(context.Background(), numbered(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, raw := range capt.raw {
		if v := verifyDKIM(t, s, raw); v.Err != nil {
			t.Errorf("message %d: %v", i, v.Err)
		}
	}
}

// msgauthBodyHash returns the bh= that go-msgauth's own signer computes for
// msg (relaxed/relaxed), an independent implementation of the body
// canonicalization.
func msgauthBodyHash(t testing.TB, key crypto.Signer, msg []byte) string {
	t.Helper()
	sig, err := msgauthSign(key, msg)
	if err != nil {
		t.Fatal(err)
	}
	return tagValue(sig, "bh")
}

func msgauthSign(key crypto.Signer, msg []byte) (string, error) {
	sg, err := dkim.NewSigner(&dkim.SignOptions{
		Domain: "passblue.example", Selector: "herald2026", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             DefaultDKIMHeaders(),
	})
	if err != nil {
		return "", err
	}
	if _, err := sg.Write(msg); err != nil {
		_ = sg.Close()
		return "", err
	}
	if err := sg.Close(); err != nil {
		return "", err
	}
	return sg.Signature(), nil
}

// tagValue returns the value of tag name in a DKIM-Signature field, white
// space removed.
func tagValue(field, name string) string {
	_, v, _ := strings.Cut(field, ":")
	for part := range strings.SplitSeq(v, ";") {
		k, val, _ := strings.Cut(part, "=")
		if strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(val), "")
		}
	}
	return ""
}

func TestDKIMBodyHashAgreesWithMsgauth(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["ed25519"], nil)
	for kind, e := range dkimTestEmails(t) {
		t.Run(kind, func(t *testing.T) {
			msg := encode(t, e)
			sig, err := s.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tagValue(string(sig), "bh"), msgauthBodyHash(t, keys["ed25519"], msg); got != want {
				t.Errorf("bh=%s, go-msgauth computes %s", got, want)
			}
		})
	}
}

// FuzzDKIMSign signs messages with odd white space in a header and the body
// and checks them with go-msgauth: the signature verifies, and the body
// hash is the one go-msgauth computes.
func FuzzDKIMSign(f *testing.F) {
	f.Add("Hello", "a  b\r\n\r\n")
	f.Add(" spaced \t out ", "line \r\n\ttabbed\r\n  \r\n\r\n")
	f.Add("x", "")
	f.Add("folded\r\n continuation", "bare\nLF\n")
	f.Add("y", "cr\ralone \r\r\nend")
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	s := testSigner(f, key, nil)
	f.Fuzz(func(t *testing.T, subject, body string) {
		// A header value may be folded (CRLF then white space) but holds
		// no other line break; the body is anything.
		subject = strings.ReplaceAll(subject, "\r\n ", "\x00")
		if strings.ContainsAny(subject, "\r\n") || strings.ContainsAny(subject, ":") {
			t.Skip()
		}
		subject = strings.ReplaceAll(subject, "\x00", "\r\n ")
		msg := []byte("From: <news@passblue.example>\r\nTo: <ana@example.org>\r\nSubject: " + subject +
			"\r\nDate: Wed, 04 Mar 2026 07:00:12 +0000\r\nMessage-ID: <m@passblue.example>\r\n\r\n" + body)
		sig, err := s.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tagValue(string(sig), "bh"), msgauthBodyHash(t, key, msg); got != want {
			t.Fatalf("bh=%s, go-msgauth computes %s", got, want)
		}
		v := verifyDKIM(t, s, append(sig, msg...))
		if v.Err != nil {
			t.Fatalf("does not verify: %v\n%q", v.Err, append(sig, msg...))
		}
	})
}

// reportCPU runs f for each iteration of b and reports, beside the wall
// time, the process's CPU time per iteration (cpu-ns/op): on a shared
// machine the wall time also counts the time other processes held the
// core, and work that blocks (go-msgauth's pipe) gets more of it than work
// that does not.
func reportCPU(b *testing.B, f func()) {
	b.Helper()
	start := processCPU()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	if used := processCPU() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

// BenchmarkDKIMSign measures the CPU cost of one signature of a spliced
// ~10 KB digest, by key type: the hashing of header and body plus the
// public-key operation. The delivery rate with in-app signing is bounded by
// cores / this figure (read cpu-ns/op: see reportCPU).
func BenchmarkDKIMSign(b *testing.B) {
	c := testComposer(b)
	msg, err := prepare(b, c).Email(testReader(), sendDate).AppendTo(nil)
	if err != nil {
		b.Fatal(err)
	}
	keys := dkimKeys(b)
	for _, name := range []string{"rsa-2048", "ed25519"} {
		s := testSigner(b, keys[name], nil)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			reportCPU(b, func() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	for _, name := range []string{"rsa-2048", "ed25519"} {
		// go-msgauth's signer on the same message, for comparison: its
		// byte-at-a-time canonicalization and pipe cost more than the key.
		key := keys[name]
		b.Run("msgauth-"+name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			reportCPU(b, func() {
				if _, err := msgauthSign(key, msg); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("rsa-2048-key-only-parallel", func(b *testing.B) {
		// The machine's signing ceiling: bare RSA-2048 signatures on every
		// core at once; 1e9 / ns/op is signatures per second.
		k := keys["rsa-2048"]
		start := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			sum := make([]byte, 32)
			for pb.Next() {
				if _, err := k.Sign(rand.Reader, sum, crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
			}
		})
		if used := processCPU() - start; used > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	})
	b.Run("rsa-2048-key-only", func(b *testing.B) {
		// The bare RSA signature of a SHA-256 digest, for comparison.
		k := keys["rsa-2048"]
		sum := make([]byte, 32)
		reportCPU(b, func() {
			if _, err := k.Sign(rand.Reader, sum, crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkRSACeiling is the machine's RSA signing ceiling, as
// bench/dkim.sh compares Herald's delivery rate with DKIM against it:
// RSA-2048 PKCS #1 v1.5 signatures of a SHA-256 digest on every core at
// once (run with -cpu set to the number of cores), with nothing else done
// per signature. sigs/s is signatures per second of wall time; cpu-ns/op is
// the process's CPU time per signature. The key is the PEM file named by
// HERALD_BENCH_DKIM_KEY (the one the delivery run signs with), else a
// fresh one.
func BenchmarkRSACeiling(b *testing.B) {
	var key crypto.Signer
	if path := os.Getenv("HERALD_BENCH_DKIM_KEY"); path != "" {
		pemBytes, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if key, err = ParseDKIMKey(pemBytes); err != nil {
			b.Fatal(err)
		}
	} else {
		key = dkimKeys(b)["rsa-2048"]
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		b.Fatalf("%T is not an RSA key", key)
	}
	start, cpu := time.Now(), processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sum := sha256.Sum256([]byte("a header hash"))
		for pb.Next() {
			if _, err := key.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sigs/s")
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkDKIMTransport is the per-message cost of DKIMTransport.Send on
// spliced digests for distinct readers, as the delivery engine calls it
// from many workers: encoding, signing and the signed copy, everything but
// the SMTP write (the next transport encodes into a reused buffer, as
// SMTPTransport does). Compare cpu-ns/op with BenchmarkRSACeiling's.
func BenchmarkDKIMTransport(b *testing.B) {
	c := testComposer(b)
	t := prepare(b, c)
	for _, name := range []string{"rsa-2048", "ed25519"} {
		s := testSigner(b, dkimKeys(b)[name], nil)
		b.Run(name, func(b *testing.B) {
			tr := NewDKIMTransport(discardTransport{}, s)
			var n atomic.Int64
			b.ReportAllocs()
			start, cpu := time.Now(), processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := testReader()
					r.MessageID = fmt.Sprintf("%d.digest@passblue.example", n.Add(1))
					if err := tr.Send(context.Background(), t.Email(r, sendDate)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// discardTransport encodes each message into a reused buffer and drops it.
type discardTransport struct{}

func (discardTransport) Send(_ context.Context, e *Email) error {
	bp := discardBufs.Get().(*[]byte)
	defer discardBufs.Put(bp)
	b, err := e.AppendTo((*bp)[:0])
	*bp = b
	return err
}

func (discardTransport) Close() error { return nil }

var discardBufs = sync.Pool{New: func() any { return new([]byte) }}

// TestDKIMDigestReadersVerify signs one prepared digest for many readers,
// as a send does, through DKIMTransport from several goroutines: every
// reader's message verifies with go-msgauth, its body hash is the one
// go-msgauth computes, and what follows the signature is exactly that
// reader's spliced message.
func TestDKIMDigestReadersVerify(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["rsa-2048"], nil)
	dt := prepare(t, testComposer(t))
	names := []string{"Ana Núñez", "", "Bo", "  Spaced   Out  ", "Zoë O'Brien-Łukasiewicz", "Li Wei 李伟", "Dr. Jane Q. Public, Jr.", "x"}
	readers := make([]DigestReader, 24)
	for i := range readers {
		r := testReader()
		r.MessageID = fmt.Sprintf("issue.318.sub.%d@passblue.example", i)
		r.To = fmt.Sprintf("reader%d@example%d.org", i, i%5)
		r.Name = names[i%len(names)]
		r.UnsubscribeURL += strings.Repeat("u", i)
		r.PreferencesURL += fmt.Sprint(i)
		readers[i] = r
	}
	var capt captureTransport
	tr := NewDKIMTransport(&capt, s)
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Go(func() {
			if err := tr.Send(context.Background(), dt.Email(r, sendDate)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(capt.raw) != len(readers) {
		t.Fatalf("%d messages signed, want %d", len(capt.raw), len(readers))
	}
	for i, raw := range capt.raw {
		e := capt.emails[i]
		if v := verifyDKIM(t, s, raw); v.Err != nil {
			t.Errorf("%s: %v", e.MessageID, v.Err)
		}
		var r DigestReader
		for _, rr := range readers {
			if rr.MessageID == e.MessageID {
				r = rr
			}
		}
		want, err := dt.AppendTo(nil, r, sendDate)
		if err != nil {
			t.Fatal(err)
		}
		sigLen := len(raw) - len(want)
		if sigLen <= 0 || !bytes.Equal(raw[sigLen:], want) || !bytes.HasPrefix(raw, []byte("DKIM-Signature: ")) {
			t.Errorf("%s: the signed message is not its signature and the reader's spliced message", e.MessageID)
			continue
		}
		if got, want := tagValue(string(raw[:sigLen]), "bh"), msgauthBodyHash(t, keys["ed25519"], raw[sigLen:]); got != want {
			t.Errorf("%s: bh=%s, go-msgauth computes %s", e.MessageID, got, want)
		}
	}
}

// TestDKIMSignerPrecomputesKey gives the signer an RSA key without its CRT
// values (as a key assembled from its numbers has none): the signer works
// on a copy that has them, leaves the caller's key alone, and signs
// messages that verify.
func TestDKIMSignerPrecomputesKey(t *testing.T) {
	full := dkimKeys(t)["rsa-2048"].(*rsa.PrivateKey)
	bare := &rsa.PrivateKey{PublicKey: full.PublicKey, D: full.D, Primes: full.Primes}
	s := testSigner(t, bare, nil)
	if k := s.key.(*rsa.PrivateKey); k == bare || k.Precomputed.Dp == nil || k.Precomputed.Qinv == nil {
		t.Error("the signer's key has no precomputed CRT values")
	}
	if bare.Precomputed.Dp != nil {
		t.Error("NewDKIMSigner changed the caller's key")
	}
	var capt captureTransport
	if err := NewDKIMTransport(&capt, s).Send(context.Background(), dkimTestEmails(t)["digest"]); err != nil {
		t.Fatal(err)
	}
	if v := verifyDKIM(t, s, capt.raw[0]); v.Err != nil {
		t.Fatalf("does not verify: %v", v.Err)
	}

	broken := &rsa.PrivateKey{PublicKey: full.PublicKey, D: new(big.Int).Add(full.D, big.NewInt(2)), Primes: full.Primes}
	if _, err := NewDKIMSigner(DKIMConfig{Domain: "passblue.example", Selector: "s", Key: broken}); err == nil ||
		!strings.Contains(err.Error(), "RSA key is not valid") {
		t.Errorf("an inconsistent RSA key: err = %v, want one saying the key is not valid", err)
	}
}

// cleanLineSlow is cleanLine a byte at a time: the reference it must agree
// with.
func cleanLineSlow(content []byte) bool {
	for i, c := range content {
		if c < '!' && (c != ' ' || i == len(content)-1 || i > 0 && content[i-1] == ' ') {
			return false
		}
	}
	return true
}

func TestCleanLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"", true},
		{"a", true},
		{" a", true},
		{"a ", false},
		{"a b c d e f g h i j", true},
		{"1234567  0", false},      // two spaces across the first word boundary
		{"1234567 90 bcdef", true}, // one space at the boundary
		{"12345678 abc", true},
		{"abcdefgh\tabcdefgh", false},
		{"abcdefghabcdefg\x01", false},
		{"=C3=A9t=C3=A9 <td class=3D\"x\">", true},
		{"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 \xff\xfe", true},
		{"abcdefghijklmno\r", false},
	} {
		if got := cleanLine([]byte(tc.line)); got != tc.want {
			t.Errorf("cleanLine(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
	// Every length to past three words, with white space and control
	// bytes at every position and next to every word boundary.
	alphabet := []byte{'a', ' ', '\t', '\r', '\n', 0x01, 0x20, 0x21, 0x80, 0xa0, 0xff, '='}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for n := 0; n <= 40; n++ {
		for range 2000 {
			line := make([]byte, n)
			for i := range line {
				line[i] = 'x'
				if rng.IntN(3) == 0 {
					line[i] = alphabet[rng.IntN(len(alphabet))]
				}
			}
			if got, want := cleanLine(line), cleanLineSlow(line); got != want {
				t.Fatalf("cleanLine(%q) = %v, the byte-at-a-time test says %v", line, got, want)
			}
		}
	}
}

// FuzzCleanLine checks cleanLine against cleanLineSlow.
func FuzzCleanLine(f *testing.F) {
	f.Add([]byte("1234567  0"))
	f.Add([]byte("abcdefgh\tabcdefgh "))
	f.Fuzz(func(t *testing.T, line []byte) {
		if got, want := cleanLine(line), cleanLineSlow(line); got != want {
			t.Fatalf("cleanLine(%q) = %v, the byte-at-a-time test says %v", line, got, want)
		}
	})
}

func TestEqualFoldName(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"From", "From", true},
		{"from", "FROM", true},
		{"List-Unsubscribe-Post", "list-unsubscribe-post", true},
		{"From", "Fro", false},
		{"To", "Tp", false},
		{"X-[", "X-{", false}, // differ by 0x20 but are not letters
		{"@", "`", false},
	} {
		if got := equalFoldName([]byte(tc.a), tc.b); got != tc.want {
			t.Errorf("equalFoldName(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// DKIMTransport hands its context on, DataGate and Chain with it: it gates
// data when the transport behind it does, and signed messages chain.
func TestDKIMTransportGatesAndChains(t *testing.T) {
	keys := dkimKeys(t)
	s := testSigner(t, keys["ed25519"], nil)
	if NewDKIMTransport(&captureTransport{}, s).GatesData() {
		t.Error("DKIM over a transport that does not gate data says it does")
	}
	var box inbox
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(true)
		wantCommands(t, c.lines(3), numbered(0), false)
		c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		box.add(c.data())
		wantCommands(t, c.lines(3), numbered(1), false) // in the dot's group
		c.reply("250 2.0.0 queued", "250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		box.add(c.data())
		c.reply("250 2.0.0 queued")
		c.quit()
	})
	smtpTr := r.transport()
	tr := NewDKIMTransport(smtpTr, s)
	if !tr.GatesData() {
		t.Error("DKIM over SMTP does not gate data")
	}
	for i, err := range chainSend(t, tr, []*Email{numbered(0), numbered(1)}) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_ = tr.Close()
	got := box.all()
	if len(got) != 2 {
		t.Fatalf("relay got %d messages, want 2", len(got))
	}
	for i, raw := range got {
		raw = bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
		if v := verifyDKIM(t, s, raw); v.Err != nil {
			t.Errorf("message %d: signature does not verify: %v", i, v.Err)
		}
	}
}
