package mailer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/jhillyerd/enmime/v2"
)

// received is one message the test server accepted.
type received struct {
	from, to string
	data     []byte
	tls      bool
	user     string
}

// backend is an in-process SMTP server's backend with fault hooks.
type backend struct {
	users map[string]string // when set, AUTH PLAIN is offered and required

	rcpt func(to string) error                 // fault at RCPT
	data func(c *smtp.Conn, r io.Reader) error // replaces the DATA handling

	mu       sync.Mutex
	msgs     []received
	sessions atomic.Int64 // NewSession calls
	logouts  atomic.Int64
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.sessions.Add(1)
	return &session{be: b, conn: c}, nil
}

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	be       *backend
	conn     *smtp.Conn
	from, to string
	user     string
}

func (s *session) AuthMechanisms() []string {
	if s.be.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if want, ok := s.be.users[username]; !ok || want != password {
			return errors.New("invalid credentials")
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.be.users != nil && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.be.rcpt != nil {
		if err := s.be.rcpt(to); err != nil {
			return err
		}
	}
	s.to = to
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.be.data != nil {
		return s.be.data(s.conn, r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.be.mu.Lock()
	s.be.msgs = append(s.be.msgs, received{from: s.from, to: s.to, data: b, tls: isTLS, user: s.user})
	s.be.mu.Unlock()
	return nil
}

func (s *session) Reset() { s.from, s.to = "", "" }

func (s *session) Logout() error {
	s.be.logouts.Add(1)
	return nil
}

// countingListener counts accepted connections: one per SMTP connection,
// whatever STARTTLS does to sessions.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// testServer is a running in-process SMTP server.
type testServer struct {
	host string
	port int
	ln   *countingListener
	pool *x509.CertPool // trusts the server's certificate
}

// startServer runs be on 127.0.0.1 with mode "none", "starttls" or "tls".
func startServer(t testing.TB, be *backend, mode string) *testServer {
	t.Helper()
	cert, pool := testCertificate(t)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = true // the client, not the server, must refuse PLAIN without TLS
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	var ln net.Listener = inner
	switch mode {
	case "tls":
		ln = tls.NewListener(inner, tlsConfig)
	case "starttls":
		srv.TLSConfig = tlsConfig
	}
	cl := &countingListener{Listener: ln}
	go func() { _ = srv.Serve(cl) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := inner.Addr().(*net.TCPAddr)
	return &testServer{host: "127.0.0.1", port: addr.Port, ln: cl, pool: pool}
}

func (s *testServer) config(mode string) SMTPConfig {
	return SMTPConfig{
		Host:      s.host,
		Port:      s.port,
		TLS:       mode,
		HeloName:  "herald.test",
		Timeout:   5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: s.pool},
	}
}

// testCertificate makes a self-signed certificate for 127.0.0.1 and
// localhost.
func testCertificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// numbered returns test emails with distinct Message-IDs.
func numbered(i int) *Email {
	e := testEmail()
	e.MessageID = "m" + strconv.Itoa(i) + "@passblue.example"
	e.To = "reader" + strconv.Itoa(i) + "@example.org"
	e.ReturnPath = "bounces@passblue.example"
	return e
}

func checkDelivered(t *testing.T, r received, e *Email) {
	t.Helper()
	if r.from != e.ReturnPath || r.to != e.To {
		t.Errorf("envelope = %s -> %s, want %s -> %s", r.from, r.to, e.ReturnPath, e.To)
	}
	want := encode(t, e)
	if !bytes.Equal(bytes.TrimRight(r.data, "\r\n"), bytes.TrimRight(want, "\r\n")) {
		t.Errorf("the relay received different bytes than WriteTo writes")
	}
	env, err := enmime.ReadEnvelope(bytes.NewReader(r.data))
	if err != nil {
		t.Fatal(err)
	}
	if got := env.GetHeader("Message-ID"); got != "<"+e.MessageID+">" {
		t.Errorf("Message-ID = %q", got)
	}
}

func TestSMTPModes(t *testing.T) {
	for _, mode := range []string{TLSNone, TLSStartTLS, TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			be := &backend{}
			srv := startServer(t, be, mode)
			tr := NewSMTPTransport(srv.config(mode))
			defer tr.Close()
			e := numbered(1)
			if err := tr.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			msgs := be.messages()
			if len(msgs) != 1 {
				t.Fatalf("received %d messages", len(msgs))
			}
			checkDelivered(t, msgs[0], e)
			if got, want := msgs[0].tls, mode != TLSNone; got != want {
				t.Errorf("TLS = %v, want %v", got, want)
			}
		})
	}
}

// A digest goes out without dot-stuffing (its encoding has no line that
// starts with a dot, though its style sheet and this reader's name do), and
// the relay receives exactly the encoded message; an ordinary message with
// such lines, which goes through the dot-stuffing, arrives intact too.
func TestSMTPDotLines(t *testing.T) {
	be := &backend{}
	srv := startServer(t, be, TLSNone)
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	c := testComposer(t)
	dt := prepare(t, c)
	r := testReader()
	r.Name = ".Dot"
	digest := dt.Message(r, sendDate)
	plain := numbered(2)
	plain.Text = ".first line\n..\n.\nlast"
	plain.HTML = ""
	for _, e := range []*Email{digest, plain} {
		if err := tr.Send(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	msgs := be.messages()
	if len(msgs) != 2 {
		t.Fatalf("received %d messages, want 2", len(msgs))
	}
	want, err := digest.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(want, []byte("\r\n=2E")) {
		t.Fatal("the digest has no escaped line-start dot: the test proves nothing")
	}
	if !bytes.Equal(msgs[0].data, want) {
		t.Errorf("the relay received %d bytes of the digest, not the %d encoded", len(msgs[0].data), len(want))
	}
	checkDelivered(t, msgs[1], plain)
}

func TestSMTPStartTLSRequired(t *testing.T) {
	srv := startServer(t, &backend{}, "none") // offers no STARTTLS
	tr := NewSMTPTransport(srv.config(TLSStartTLS))
	defer tr.Close()
	err := tr.Send(context.Background(), numbered(1))
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageStartTLS || !se.PoolWide() {
		t.Fatalf("err = %v, want a pool-wide starttls SendError", err)
	}
}

func TestSMTPUntrustedCertificate(t *testing.T) {
	srv := startServer(t, &backend{}, "tls")
	cfg := srv.config(TLSImplicit)
	cfg.TLSConfig = nil // the system roots do not know the test CA
	tr := NewSMTPTransport(cfg)
	defer tr.Close()
	err := tr.Send(context.Background(), numbered(1))
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageDial || !se.PoolWide() || se.Permanent {
		t.Fatalf("err = %v, want a temporary pool-wide dial SendError", err)
	}
}

func TestSMTPAuthPlain(t *testing.T) {
	for _, mode := range []string{TLSStartTLS, TLSNone} { // TLSNone: allowed because the relay is on localhost
		t.Run(mode, func(t *testing.T) {
			be := &backend{users: map[string]string{"herald": "s3cret"}}
			srv := startServer(t, be, mode)
			cfg := srv.config(mode)
			cfg.Username, cfg.Password = "herald", "s3cret"
			tr := NewSMTPTransport(cfg)
			defer tr.Close()
			if err := tr.Send(context.Background(), numbered(1)); err != nil {
				t.Fatal(err)
			}
			if msgs := be.messages(); len(msgs) != 1 || msgs[0].user != "herald" {
				t.Fatalf("messages = %+v", msgs)
			}

			cfg.Password = "wrong"
			bad := NewSMTPTransport(cfg)
			defer bad.Close()
			err := bad.Send(context.Background(), numbered(2))
			var se *SendError
			t.Logf("auth: %v", err)
			if !errors.As(err, &se) || se.Stage != StageAuth || !se.PoolWide() {
				t.Fatalf("wrong password: err = %v, want a pool-wide auth SendError", err)
			}
		})
	}
}

func TestSMTPConnectionReuse(t *testing.T) {
	be := &backend{}
	srv := startServer(t, be, "starttls")
	cfg := srv.config(TLSStartTLS)
	cfg.Connections = 2
	tr := NewSMTPTransport(cfg)
	defer tr.Close()
	const n = 20
	for i := range n {
		if err := tr.Send(context.Background(), numbered(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	msgs := be.messages()
	if len(msgs) != n {
		t.Fatalf("received %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		checkDelivered(t, m, numbered(i))
	}
	if got := srv.ln.accepted.Load(); got != 1 {
		t.Errorf("%d messages sent one after another used %d connections, want 1", n, got)
	}
}

func TestSMTPConcurrentSend(t *testing.T) {
	be := &backend{}
	srv := startServer(t, be, "none")
	cfg := srv.config(TLSNone)
	cfg.Connections = 3
	tr := NewSMTPTransport(cfg)
	defer tr.Close()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := tr.Send(context.Background(), numbered(w*each+i)); err != nil {
					t.Errorf("worker %d message %d: %v", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	msgs := be.messages()
	if len(msgs) != workers*each {
		t.Fatalf("received %d messages, want %d", len(msgs), workers*each)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.to] = true
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct recipients, want %d", len(seen), workers*each)
	}
	if got := srv.ln.accepted.Load(); got > 3 || got < 1 {
		t.Errorf("used %d connections, want at most 3", got)
	}
}

func TestSMTPRcptErrors(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		code                        int
		permanent, bounce, poolWide bool
	}{
		{"mailbox busy", 450, false, false, false},
		{"greylisted", 451, false, false, false},
		{"no such user", 550, true, true, false},
		{"relay closing", 421, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &backend{rcpt: func(to string) error {
				if to == "bad@example.org" {
					return &smtp.SMTPError{Code: tc.code, Message: tc.name}
				}
				return nil
			}}
			srv := startServer(t, be, "none")
			tr := NewSMTPTransport(srv.config(TLSNone))
			defer tr.Close()
			e := numbered(1)
			e.To = "bad@example.org"
			err := tr.Send(context.Background(), e)
			var se *SendError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SendError", err)
			}
			if se.Code != tc.code || se.Stage != StageRcpt || se.Permanent != tc.permanent ||
				se.Bounce() != tc.bounce || se.PoolWide() != tc.poolWide {
				t.Errorf("got code=%d stage=%s permanent=%v bounce=%v poolWide=%v; want %d rcpt %v %v %v (%v)",
					se.Code, se.Stage, se.Permanent, se.Bounce(), se.PoolWide(),
					tc.code, tc.permanent, tc.bounce, tc.poolWide, err)
			}
			// The next message goes through: after a plain refusal on the
			// same connection (RSET), after a 421 on a new one.
			if err := tr.Send(context.Background(), numbered(2)); err != nil {
				t.Fatalf("next message: %v", err)
			}
			wantConns := int64(1)
			if tc.code == 421 {
				wantConns = 2
			}
			if got := srv.ln.accepted.Load(); got != wantConns {
				t.Errorf("connections = %d, want %d", got, wantConns)
			}
		})
	}
}

func TestSMTPDataRejected(t *testing.T) {
	be := &backend{data: func(_ *smtp.Conn, r io.Reader) error {
		_, _ = io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 554, Message: "spam"}
	}}
	srv := startServer(t, be, "none")
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	err := tr.Send(context.Background(), numbered(1))
	var se *SendError
	if !errors.As(err, &se) || se.Code != 554 || se.Stage != StageData || !se.Permanent || se.Bounce() || se.PoolWide() {
		t.Fatalf("err = %v", err)
	}
}

func TestSMTPDropMidData(t *testing.T) {
	var drops atomic.Int64
	be := &backend{}
	be.data = func(c *smtp.Conn, r io.Reader) error {
		if drops.Add(1) == 1 {
			_, _ = io.ReadFull(r, make([]byte, 100))
			_ = c.Conn().Close()
			return errors.New("dropped")
		}
		b, err := io.ReadAll(r)
		be.mu.Lock()
		be.msgs = append(be.msgs, received{data: b})
		be.mu.Unlock()
		return err
	}
	srv := startServer(t, be, "none")
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	err := tr.Send(context.Background(), numbered(1))
	var se *SendError
	t.Logf("drop: %v", err)
	if !errors.As(err, &se) || se.Stage != StageData || se.Permanent || se.Code != 0 {
		t.Fatalf("err = %v, want a temporary data SendError without code", err)
	}
	// The broken connection was discarded: the retry dials afresh.
	if err := tr.Send(context.Background(), numbered(1)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := srv.ln.accepted.Load(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
}

func TestSMTPDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // nothing listens there now
	tr := NewSMTPTransport(SMTPConfig{Host: "127.0.0.1", Port: port, TLS: TLSNone, Timeout: time.Second})
	defer tr.Close()
	err = tr.Send(context.Background(), numbered(1))
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageDial || !se.PoolWide() || se.Permanent {
		t.Fatalf("err = %v, want a temporary pool-wide dial SendError", err)
	}
}

func TestSMTPGreeting421(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "421 4.3.2 mx.test too busy, try later\r\n")
			_ = c.Close()
		}
	}()
	tr := NewSMTPTransport(SMTPConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: TLSNone, Timeout: time.Second})
	defer tr.Close()
	err = tr.Send(context.Background(), numbered(1))
	var se *SendError
	t.Logf("greeting: %v", err)
	if !errors.As(err, &se) || se.Code != 421 || !se.PoolWide() || se.Permanent {
		t.Fatalf("err = %v, want a 421 pool-wide SendError", err)
	}
}

func TestSMTPContextCancel(t *testing.T) {
	release := make(chan struct{})
	be := &backend{data: func(_ *smtp.Conn, r io.Reader) error {
		<-release
		_, _ = io.Copy(io.Discard, r)
		return nil
	}}
	srv := startServer(t, be, "none")
	defer close(release)
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := tr.Send(ctx, numbered(1))
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Send took %v after the context expired", elapsed)
	}
	var se *SendError
	t.Logf("cancel: %v", err)
	if !errors.As(err, &se) || se.Permanent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a temporary SendError wrapping DeadlineExceeded", err)
	}
}

func TestSMTPIdleAndClose(t *testing.T) {
	be := &backend{}
	srv := startServer(t, be, "none")
	cfg := srv.config(TLSNone)
	cfg.IdleTimeout = 100 * time.Millisecond
	tr := NewSMTPTransport(cfg)
	if err := tr.Send(context.Background(), numbered(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return be.logouts.Load() == 1 }, "the idle connection to be closed")
	// The next send dials again.
	if err := tr.Send(context.Background(), numbered(2)); err != nil {
		t.Fatal(err)
	}
	if got := srv.ln.accepted.Load(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return be.logouts.Load() == 2 }, "Close to close the connection")
	var se *SendError
	if err := tr.Send(context.Background(), numbered(3)); !errors.As(err, &se) {
		t.Fatalf("Send after Close: %v", err)
	}
}

func TestSMTPInvalidEmail(t *testing.T) {
	srv := startServer(t, &backend{}, "none")
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	e := numbered(1)
	e.To = "x@example.org>\r\nRCPT TO:<victim@example.org"
	err := tr.Send(context.Background(), e)
	var se *SendError
	if !errors.As(err, &se) || !se.Permanent || se.Stage != StageEncode || !errors.Is(err, ErrInvalidEmail) {
		t.Fatalf("err = %v", err)
	}
	if got := srv.ln.accepted.Load(); got != 0 {
		t.Errorf("dialled %d times for an invalid message", got)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSendErrorString(t *testing.T) {
	for _, tc := range []struct {
		err  *SendError
		want string
	}{
		{&SendError{Stage: "rcpt", Code: 550, Err: errors.New("no such user")}, "rcpt: 550 no such user"},
		{&SendError{Stage: "dial", Err: errors.New("connection refused")}, "dial: connection refused"},
		{&SendError{Stage: "rcpt", Code: 550, Err: fmt.Errorf("550 5.1.1 no such user")}, "rcpt: 550 5.1.1 no such user"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// BenchmarkSMTPSend sends over 4 reused connections to the in-process
// relay (whose own cost dominates: compare with smtp-sink for the client's).
func BenchmarkSMTPSend(b *testing.B) {
	be := &backend{data: func(_ *smtp.Conn, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}}
	srv := startServer(b, be, "none")
	cfg := srv.config(TLSNone)
	cfg.Connections = 4
	tr := NewSMTPTransport(cfg)
	defer tr.Close()
	e := numbered(1)
	e.HTML = strings.Repeat(`<p>A paragraph of a digest, with <a href="https://x.example/story">a link</a>.</p>`+"\n", 90)
	b.SetBytes(int64(len(encode(b, e))))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Send(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
