package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

// TLS modes of SMTPConfig.TLS.
const (
	TLSNone     = "none"     // plain text (a relay on localhost or a private network)
	TLSStartTLS = "starttls" // STARTTLS required: the send fails if the relay does not offer it
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS, usually port 465)
)

// SMTPConfig configures an SMTPTransport. Zero values take the defaults
// named on each field.
type SMTPConfig struct {
	Host     string
	Port     int    // default 25 for "none", 587 for "starttls", 465 for "tls"
	TLS      string // TLSNone, TLSStartTLS or TLSImplicit; default TLSStartTLS
	Username string // AUTH PLAIN or LOGIN when set; none when empty
	Password string
	HeloName string // the EHLO name; default "localhost"
	// Connections bounds the connections open at once; default 4.
	Connections int
	// Timeout bounds dialling and each command; default 30s.
	Timeout time.Duration
	// IdleTimeout closes a connection unused for that long; default 30s.
	IdleTimeout time.Duration
	// TLSConfig is cloned for TLS and STARTTLS; ServerName defaults to Host.
	TLSConfig *tls.Config
}

// SMTPTransport is a Transport that sends through an SMTP relay over a pool
// of reused connections. It writes the MIME itself (Email.AppendTo), uses
// go-mail's low-level client to set a connection up (greeting, EHLO,
// STARTTLS, AUTH) and runs the mail transactions itself, pipelined (RFC
// 2920) when the relay offers PIPELINING. It is safe for concurrent use.
type SMTPTransport struct {
	cfg  SMTPConfig
	addr string
	tls  *tls.Config

	// slots holds one token per connection in use; a connection is either
	// in use (its sender holds a token) or idle, so at most Connections
	// exist at once.
	slots chan struct{}

	// waiting counts the Sends waiting for a slot: while any does, a
	// Chain does not keep its connection for its next message.
	waiting atomic.Int32

	mu     sync.Mutex
	idle   []*smtpConn // most recently used last
	closed bool
	reaper *time.Timer // closes idle connections; nil when none are idle
}

// smtpConn is one connection, used by one sender at a time.
type smtpConn struct {
	raw       net.Conn // the TCP connection: deadlines are set here
	c         *smtp.Client
	idleSince time.Time
	// pipelining is set when the relay offers PIPELINING (RFC 2920).
	pipelining bool
	// dirty is set while the last transaction did not end with the
	// relay taking the message: the next one starts with RSET.
	dirty bool
	// Buffers reused from one send to the next: the encoded message, the
	// commands of a transaction, the dot-stuffed message.
	buf, cmds, out []byte
}

// NewSMTPTransport returns a transport for cfg. It connects lazily, on the
// first Send.
func NewSMTPTransport(cfg SMTPConfig) *SMTPTransport {
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if cfg.Port == 0 {
		switch cfg.TLS {
		case TLSNone:
			cfg.Port = 25
		case TLSImplicit:
			cfg.Port = 465
		default:
			cfg.Port = 587
		}
	}
	if cfg.HeloName == "" {
		cfg.HeloName = "localhost"
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	var tc *tls.Config
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	} else {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	return &SMTPTransport{
		cfg:   cfg,
		addr:  net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		tls:   tc,
		slots: make(chan struct{}, cfg.Connections),
	}
}

// errClosed is the cause of a Send after Close.
var errClosed = errors.New("smtp transport closed")

// Send delivers e to e.To with MAIL FROM e.ReturnPath (or e.From). It reuses
// an idle connection or dials a new one when fewer than Connections are
// open, and waits otherwise. A reused connection that the relay closed while
// idle is replaced silently: nothing of the message was taken. Errors are *SendError: Stage
// says where it failed, Code carries the SMTP reply, Permanent is set for 5xx
// replies and invalid messages, PoolWide for 421 replies and connection
// failures. A ctx that ends while waiting for a free connection is a
// temporary StageWait error: the relay is busy, not down.
// Cancelling ctx aborts the exchange at once.
func (t *SMTPTransport) Send(ctx context.Context, e *Email) error {
	if err := e.Validate(); err != nil {
		return &SendError{Stage: StageEncode, Permanent: true, Err: err}
	}
	ch := ChainFrom(ctx)
	var sc *smtpConn
	if ch != nil {
		// The connection the last Send on ch opened this transaction on,
		// with its slot.
		sc = ch.take(t, envelopeFrom(e), e.To)
	}
	opened := sc != nil
	if !opened {
		t.waiting.Add(1)
		select {
		case t.slots <- struct{}{}:
			t.waiting.Add(-1)
		case <-ctx.Done():
			t.waiting.Add(-1)
			return &SendError{Stage: StageWait, Err: fmt.Errorf("waiting for a connection: %w", context.Cause(ctx))}
		}
	}
	held := false // the slot went to ch with the connection
	defer func() {
		if !held {
			<-t.slots
		}
	}()

	var next func() (string, string, bool)
	var nextFrom, nextTo string // the envelope next opened
	if ch != nil && ch.Next != nil {
		next = func() (string, string, bool) {
			// Holding on to the connection is fair only while nobody
			// else waits for one.
			if t.waiting.Load() > 0 {
				return "", "", false
			}
			n := ch.Next()
			if n == nil || n.Validate() != nil {
				return "", "", false
			}
			nextFrom, nextTo = envelopeFrom(n), n.To
			return nextFrom, nextTo, true
		}
	}

	reused := opened
	if sc == nil {
		var err error
		if sc, err = t.takeIdle(); err != nil {
			return &SendError{Stage: StageDial, Err: err}
		}
		reused = sc != nil
		if !reused {
			if sc, err = t.dial(ctx); err != nil {
				return err
			}
		}
	}
	keep, unanswered, chained, err := sc.send(ctx, t.cfg.Timeout, e, opened, next)
	if !keep {
		sc.discard()
	}
	if reused && unanswered && ctx.Err() == nil {
		// The relay closed the idle connection (or said 421 and was
		// about to): nothing of the message was taken, so it goes on a
		// new connection, and the stale one is no error worth reporting.
		// (Nothing was chained either: that happens at the final dot.)
		if sc, err = t.dial(ctx); err != nil {
			return err
		}
		keep, _, chained, err = sc.send(ctx, t.cfg.Timeout, e, false, next)
		if !keep {
			sc.discard()
		}
	}
	switch {
	case keep && chained:
		ch.hold(t, sc, nextFrom, nextTo)
		held = true
	case keep:
		t.putIdle(sc)
	}
	return err
}

// Close closes the idle connections (QUIT) and makes later sends fail.
// Connections in use are closed when their send ends.
func (t *SMTPTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	idle := t.idle
	t.idle = nil
	if t.reaper != nil {
		t.reaper.Stop()
		t.reaper = nil
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, sc := range idle {
		wg.Go(func() { sc.quit(t.cfg.Timeout) })
	}
	wg.Wait()
	return nil
}

// takeIdle pops the most recently used idle connection, or returns nil.
func (t *SMTPTransport) takeIdle() (*smtpConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	for n := len(t.idle); n > 0; n = len(t.idle) {
		sc := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		if time.Since(sc.idleSince) < t.cfg.IdleTimeout {
			return sc, nil
		}
		sc.discard() // the reaper is late; the relay has likely hung up

	}
	return nil, nil
}

// putIdle returns a healthy connection to the pool and makes sure the reaper
// will close it if it stays unused.
func (t *SMTPTransport) putIdle(sc *smtpConn) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		sc.quit(t.cfg.Timeout)
		return
	}
	sc.idleSince = time.Now()
	t.idle = append(t.idle, sc)
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.cfg.IdleTimeout, t.reap)
	}
	t.mu.Unlock()
}

// reap closes the connections idle for IdleTimeout and re-arms itself for
// the oldest of the others.
func (t *SMTPTransport) reap() {
	t.mu.Lock()
	now := time.Now()
	var stale []*smtpConn
	keep := t.idle[:0]
	for _, sc := range t.idle {
		if now.Sub(sc.idleSince) >= t.cfg.IdleTimeout {
			stale = append(stale, sc)
		} else {
			keep = append(keep, sc)
		}
	}
	clear(t.idle[len(keep):])
	t.idle = keep
	switch {
	case t.closed:
	case len(keep) > 0:
		t.reaper = time.AfterFunc(t.cfg.IdleTimeout-now.Sub(keep[0].idleSince), t.reap)
	default:
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, sc := range stale {
		sc.quit(t.cfg.Timeout)
	}
}

// dial connects, reads the greeting, says EHLO, starts TLS and
// authenticates, as configured.
func (t *SMTPTransport) dial(ctx context.Context) (*smtpConn, error) {
	d := net.Dialer{Timeout: t.cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, classify(ctx, StageDial, err)
	}
	sc := &smtpConn{raw: raw}
	stop := sc.watch(ctx)
	defer stop()
	fail := func(stage string, err error) (*smtpConn, error) {
		_ = raw.Close()
		return nil, classify(ctx, stage, err)
	}

	conn := raw
	switch t.cfg.TLS {
	case TLSImplicit:
		if err := sc.arm(ctx, t.cfg.Timeout); err != nil {
			return fail(StageDial, err)
		}
		tc := tls.Client(raw, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(StageDial, fmt.Errorf("tls handshake: %w", err))
		}
		conn = tc
	case TLSNone, TLSStartTLS:
	default:
		return fail(StageDial, fmt.Errorf("unknown TLS mode %q", t.cfg.TLS))
	}

	if err := sc.arm(ctx, t.cfg.Timeout); err != nil {
		return fail(StageDial, err)
	}
	c, err := smtp.NewClient(conn, t.cfg.Host)
	if err != nil {
		return fail(StageDial, fmt.Errorf("greeting: %w", err))
	}
	sc.c = c
	// Addresses reach us in ASCII (punycode domains), and our MIME is
	// 7-bit, so neither SMTPUTF8 nor anything else is needed.
	c.SkipSMTPUTF8(true)
	if err := sc.arm(ctx, t.cfg.Timeout); err != nil {
		return fail(StageHello, err)
	}
	if err := c.Hello(t.cfg.HeloName); err != nil {
		return fail(StageHello, err)
	}

	if t.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fail(StageStartTLS, errors.New("the relay does not offer STARTTLS"))
		}
		if err := sc.arm(ctx, t.cfg.Timeout); err != nil {
			return fail(StageStartTLS, err)
		}
		if err := c.StartTLS(t.tls); err != nil {
			return fail(StageStartTLS, err)
		}
	}

	if t.cfg.Username != "" {
		if err := sc.arm(ctx, t.cfg.Timeout); err != nil {
			return fail(StageAuth, err)
		}
		if err := c.Auth(t.auth(c)); err != nil {
			return fail(StageAuth, err)
		}
	}
	// Asked after STARTTLS: the relay's second EHLO answer is the one
	// that counts.
	sc.pipelining, _ = c.Extension("PIPELINING")
	return sc, nil
}

// auth picks PLAIN, else LOGIN, among the mechanisms the relay offers. Both
// refuse to send the password over a connection without TLS unless the
// relay is on localhost.
func (t *SMTPTransport) auth(c *smtp.Client) smtp.Auth {
	_, mechs := c.Extension("AUTH")
	for m := range strings.FieldsSeq(mechs) {
		if strings.EqualFold(m, "PLAIN") {
			return smtp.PlainAuth("", t.cfg.Username, t.cfg.Password, t.cfg.Host, false)
		}
	}
	return smtp.LoginAuth(t.cfg.Username, t.cfg.Password, t.cfg.Host, false)
}

// watch makes a cancelled ctx abort any blocked read or write at once.
func (sc *smtpConn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = sc.raw.SetDeadline(time.Unix(1, 0)) })
}

// arm gives the next command timeout to complete, unless ctx is already
// done (checked after setting the deadline, so a cancellation racing with
// it still wins).
func (sc *smtpConn) arm(ctx context.Context, timeout time.Duration) error {
	_ = sc.raw.SetDeadline(time.Now().Add(timeout))
	if ctx.Err() != nil {
		_ = sc.raw.SetDeadline(time.Unix(1, 0))
		return context.Cause(ctx)
	}
	return nil
}

// send encodes e (which Send validated), dot-stuffed unless it needs none,
// and runs its mail transaction (see transact).
func (sc *smtpConn) send(ctx context.Context, timeout time.Duration, e *Email,
	opened bool, next func() (from, to string, ok bool)) (keep, unanswered, chained bool, err error) {
	var (
		dotFree bool
		encErr  error
	)
	sc.buf, dotFree, encErr = e.appendEncoded(sc.buf[:0])
	if encErr != nil {
		// A transaction opened for e is left waiting for its data: the
		// connection cannot serve another.
		return !opened, false, false, &SendError{Stage: StageEncode, Permanent: true, Err: encErr}
	}
	var data []byte
	if dotFree {
		sc.buf = appendDataEnd(sc.buf)
		data = sc.buf
	} else {
		sc.out = appendDotStuffed(sc.out[:0], sc.buf)
		data = sc.out
	}
	return sc.transact(ctx, timeout, envelopeFrom(e), e.To, data, opened, next)
}

// envelopeFrom is the MAIL FROM address of e: its ReturnPath, else From.
func envelopeFrom(e *Email) string {
	if e.ReturnPath != "" {
		return e.ReturnPath
	}
	return e.From
}

// replied reports whether err is an SMTP reply after which the connection
// stays usable: any reply except 421, which announces the relay is closing.
func replied(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Code != 0 && se.Code != 421
}

// quit says QUIT and closes, without waiting long for a relay that does not
// answer.
func (sc *smtpConn) quit(timeout time.Duration) {
	_ = sc.raw.SetDeadline(time.Now().Add(min(timeout, 5*time.Second)))
	if err := sc.c.Quit(); err != nil {
		_ = sc.c.Close()
	}
}

// discard closes a connection that is broken or in an unknown state.
func (sc *smtpConn) discard() {
	_ = sc.c.Close()
}

// classify turns an error at stage into a *SendError: the SMTP reply code
// when there is one (5xx permanent, 4xx temporary), temporary otherwise
// (network errors, timeouts, cancellation).
func classify(ctx context.Context, stage string, err error) *SendError {
	se := &SendError{Stage: stage, Err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		se.Code = te.Code
		se.Enhanced = parseEnhanced(te.Msg)
		se.Permanent = te.Code >= 500 && te.Code <= 599
		return se
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		se.Err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return se
}
