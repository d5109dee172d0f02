package mailer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptRelay is a scripted SMTP server: each connection runs serve, which says
// exactly what the relay reads and answers, so that tests can hold replies
// back until a whole pipelined group has arrived, refuse one command, or
// hang up in the middle.
type scriptRelay struct {
	host     string
	port     int
	accepted atomic.Int64
}

// inbox keeps what a relay received; the relay's goroutines write it
// while the test reads it.
type inbox struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (b *inbox) add(m []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) all() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

// relayConn is one connection of a relay.
type relayConn struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

// startRelay listens on 127.0.0.1 and runs serve(n, c) for the nth
// connection (from 1). The listener closes, and every connection with it,
// when the test ends.
func startRelay(t *testing.T, serve func(n int64, c *relayConn)) *scriptRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &scriptRelay{host: "127.0.0.1", port: ln.Addr().(*net.TCPAddr).Port}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			n := r.accepted.Add(1)
			wg.Go(func() {
				defer nc.Close()
				serve(n, &relayConn{t: t, nc: nc, tp: textproto.NewConn(nc)})
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, nc := range conns {
			_ = nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return r
}

func (r *scriptRelay) transport() *SMTPTransport {
	return NewSMTPTransport(SMTPConfig{Host: r.host, Port: r.port, TLS: TLSNone, HeloName: "herald.test", Timeout: 5 * time.Second})
}

// greet says 220, reads EHLO and answers it, offering PIPELINING or not.
func (c *relayConn) greet(pipelining bool) {
	c.reply("220 mx.test ESMTP")
	if l := c.line(); !strings.HasPrefix(l, "EHLO ") {
		c.t.Errorf("first command %q, want EHLO", l)
	}
	if pipelining {
		c.reply("250-mx.test", "250-PIPELINING", "250 ENHANCEDSTATUSCODES")
	} else {
		c.reply("250-mx.test", "250 ENHANCEDSTATUSCODES")
	}
}

// line reads one command line; "" when the client hung up.
func (c *relayConn) line() string {
	l, err := c.tp.ReadLine()
	if err != nil {
		return ""
	}
	return l
}

// lines reads n command lines; the relay has not answered any of them, so
// a client that waits for replies between commands never gets here.
func (c *relayConn) lines(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = c.line()
	}
	return out
}

func (c *relayConn) reply(lines ...string) {
	for _, l := range lines {
		if _, err := c.nc.Write([]byte(l + "\r\n")); err != nil {
			return
		}
	}
}

// data reads a message up to the lone dot, undoing dot-stuffing, with LF
// line endings.
func (c *relayConn) data() []byte {
	b, err := c.tp.ReadDotBytes()
	if err != nil {
		c.t.Errorf("reading the message: %v", err)
	}
	return b
}

// quit answers the QUIT that Close sends, if it comes.
func (c *relayConn) quit() {
	if l := c.line(); l == "QUIT" {
		c.reply("221 2.0.0 bye")
	}
}

// wantCommands compares the commands read with the transaction for e.
func wantCommands(t *testing.T, got []string, e *Email, rset bool) {
	t.Helper()
	want := []string{"MAIL FROM:<" + e.ReturnPath + ">", "RCPT TO:<" + e.To + ">", "DATA"}
	if rset {
		want = append([]string{"RSET"}, want...)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

// lf turns CRLF into LF, as ReadDotBytes does.
func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

func sendErr(t *testing.T, err error) *SendError {
	t.Helper()
	var se *SendError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SendError", err)
	}
	return se
}

func TestSMTPPipelinedManyOnOneConnection(t *testing.T) {
	const n = 50
	var box inbox
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(true)
		for i := range n {
			// Nothing is answered before the whole group is in.
			wantCommands(t, c.lines(3), numbered(i), false)
			c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			box.add(c.data())
			c.reply("250 2.0.0 queued")
		}
		c.quit()
	})
	tr := r.transport()
	for i := range n {
		if err := tr.Send(context.Background(), numbered(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_ = tr.Close()
	wantNumbered(t, &box, n)
	if a := r.accepted.Load(); a != 1 {
		t.Errorf("connections = %d, want 1", a)
	}
}

// wantNumbered checks that box holds numbered(0) to numbered(n-1), in
// order, byte for byte as WriteTo writes them.
func wantNumbered(t *testing.T, box *inbox, n int) {
	t.Helper()
	got := box.all()
	if len(got) != n {
		t.Fatalf("relay got %d messages, want %d", len(got), n)
	}
	for i, b := range got {
		if want := lf(encode(t, numbered(i))); !bytes.Equal(b, want) {
			t.Errorf("message %d: relay got other bytes than WriteTo writes", i)
		}
	}
}

func TestSMTPPipelinedRefusals(t *testing.T) {
	for _, tc := range []struct {
		name         string
		replies      []string // to MAIL, RCPT, DATA
		stage        string
		code         int
		permanent    bool
		bounce       bool
		poolWide     bool
		emptyMessage bool // the relay took DATA anyway: the client ends it with a lone dot
	}{
		{name: "rcpt unknown user", replies: []string{"250 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients"},
			stage: StageRcpt, code: 550, permanent: true, bounce: true},
		{name: "rcpt mailbox busy", replies: []string{"250 ok", "450 4.2.1 try later", "554 5.5.1 no valid recipients"},
			stage: StageRcpt, code: 450},
		{name: "rcpt policy", replies: []string{"250 ok", "554 5.7.1 relay access denied", "503 5.5.1 no valid recipients"},
			stage: StageRcpt, code: 554, permanent: true, poolWide: true},
		{name: "rcpt refused but data taken", replies: []string{"250 ok", "550 5.1.1 no such user", "354 go ahead"},
			stage: StageRcpt, code: 550, permanent: true, bounce: true, emptyMessage: true},
		{name: "mail refused", replies: []string{"553 5.1.8 sender refused", "503 5.5.1 need MAIL", "503 5.5.1 need RCPT"},
			stage: StageMail, code: 553, permanent: true, poolWide: true},
		{name: "data refused", replies: []string{"250 ok", "250 ok", "451 4.3.0 try later"},
			stage: StageData, code: 451},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var box inbox
			r := startRelay(t, func(_ int64, c *relayConn) {
				c.greet(true)
				wantCommands(t, c.lines(3), numbered(1), false)
				c.reply(tc.replies...)
				if tc.emptyMessage {
					if b := c.data(); len(b) != 0 {
						t.Errorf("after a refused RCPT the client sent %d bytes of message, want a lone dot", len(b))
					}
					c.reply("554 5.5.1 no valid recipients")
				}
				// The next transaction starts clean, on the same connection.
				wantCommands(t, c.lines(4), numbered(2), true)
				c.reply("250 reset", "250 ok", "250 ok", "354 go ahead")
				box.add(c.data())
				c.reply("250 queued")
				c.quit()
			})
			tr := r.transport()
			se := sendErr(t, tr.Send(context.Background(), numbered(1)))
			if se.Stage != tc.stage || se.Code != tc.code || se.Permanent != tc.permanent ||
				se.Bounce() != tc.bounce || se.PoolWide() != tc.poolWide {
				t.Errorf("got stage=%s code=%d permanent=%v bounce=%v poolWide=%v, want %s %d %v %v %v (%v)",
					se.Stage, se.Code, se.Permanent, se.Bounce(), se.PoolWide(),
					tc.stage, tc.code, tc.permanent, tc.bounce, tc.poolWide, se)
			}
			if err := tr.Send(context.Background(), numbered(2)); err != nil {
				t.Fatalf("next message: %v", err)
			}
			_ = tr.Close()
			if got := box.all(); len(got) != 1 || !bytes.Equal(got[0], lf(encode(t, numbered(2)))) {
				t.Errorf("the next message did not arrive intact")
			}
			if a := r.accepted.Load(); a != 1 {
				t.Errorf("connections = %d, want 1", a)
			}
		})
	}
}

func TestSMTPPipelined421(t *testing.T) {
	r := startRelay(t, func(n int64, c *relayConn) {
		c.greet(true)
		c.lines(3)
		if n == 1 {
			c.reply("250 ok", "421 4.3.2 shutting down")
			return
		}
		c.reply("250 ok", "250 ok", "354 go ahead")
		c.data()
		c.reply("250 queued")
		c.quit()
	})
	tr := r.transport()
	defer tr.Close()
	se := sendErr(t, tr.Send(context.Background(), numbered(1)))
	if se.Stage != StageRcpt || se.Code != 421 || !se.PoolWide() || se.Permanent {
		t.Errorf("err = %v, want a pool-wide 421 at rcpt", se)
	}
	if err := tr.Send(context.Background(), numbered(2)); err != nil {
		t.Fatalf("next message: %v", err)
	}
	if a := r.accepted.Load(); a != 2 {
		t.Errorf("connections = %d, want 2 (a 421 closes the first)", a)
	}
}

func TestSMTPPipelinedDrop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(c *relayConn)
		stage string
	}{
		{"after the MAIL reply", func(c *relayConn) { c.lines(3); c.reply("250 ok") }, StageRcpt},
		{"after the 354", func(c *relayConn) { c.lines(3); c.reply("250 ok", "250 ok", "354 go ahead") }, StageData},
		{"mid-message", func(c *relayConn) {
			c.lines(3)
			c.reply("250 ok", "250 ok", "354 go ahead")
			c.line()
		}, StageData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(n int64, c *relayConn) {
				c.greet(true)
				if n == 1 {
					tc.serve(c)
					return // hangs up
				}
				c.lines(3)
				c.reply("250 ok", "250 ok", "354 go ahead")
				c.data()
				c.reply("250 queued")
				c.quit()
			})
			tr := r.transport()
			defer tr.Close()
			se := sendErr(t, tr.Send(context.Background(), numbered(1)))
			if se.Stage != tc.stage || se.Code != 0 || se.Permanent {
				t.Errorf("err = %v, want a temporary %s error without code", se, tc.stage)
			}
			if err := tr.Send(context.Background(), numbered(1)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if a := r.accepted.Load(); a != 2 {
				t.Errorf("connections = %d, want 2", a)
			}
		})
	}
}

// A relay that closes an idle connection (silently, or with a 421) costs
// the next message nothing: it goes on a new connection without an error.
func TestSMTPReusedConnectionClosedByRelay(t *testing.T) {
	for _, goodbye := range []string{"", "421 4.4.2 idle timeout"} {
		t.Run("goodbye "+goodbye, func(t *testing.T) {
			var delivered atomic.Int64
			r := startRelay(t, func(n int64, c *relayConn) {
				c.greet(true)
				c.lines(3)
				c.reply("250 ok", "250 ok", "354 go ahead")
				c.data()
				delivered.Add(1)
				c.reply("250 queued")
				if n == 1 {
					if goodbye != "" {
						c.reply(goodbye)
					}
					return
				}
				c.quit()
			})
			tr := r.transport()
			defer tr.Close()
			for i := range 2 {
				if err := tr.Send(context.Background(), numbered(i)); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			if d, a := delivered.Load(), r.accepted.Load(); d != 2 || a != 2 {
				t.Errorf("delivered %d on %d connections, want 2 on 2", d, a)
			}
		})
	}
}

// Without PIPELINING each command waits for its reply, and a refused
// command ends the transaction there.
func TestSMTPWithoutPipelining(t *testing.T) {
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(false)
		step := func(want, answer string) {
			l := c.line()
			if l != want {
				t.Errorf("command %q, want %q", l, want)
			}
			if n := c.tp.R.Buffered(); n != 0 {
				t.Errorf("after %q the client had sent %d more bytes before the reply", l, n)
			}
			c.reply(answer)
		}
		e := numbered(1)
		step("MAIL FROM:<"+e.ReturnPath+">", "250 ok")
		step("RCPT TO:<"+e.To+">", "550 5.1.1 no such user")
		e = numbered(2)
		step("RSET", "250 ok")
		step("MAIL FROM:<"+e.ReturnPath+">", "250 ok")
		step("RCPT TO:<"+e.To+">", "250 ok")
		step("DATA", "354 go ahead")
		if b := c.data(); !bytes.Equal(b, lf(encode(t, e))) {
			t.Errorf("the message arrived altered")
		}
		c.reply("250 queued")
		c.quit()
	})
	tr := r.transport()
	se := sendErr(t, tr.Send(context.Background(), numbered(1)))
	if se.Stage != StageRcpt || !se.Bounce() {
		t.Errorf("err = %v, want a bounce at rcpt", se)
	}
	if err := tr.Send(context.Background(), numbered(2)); err != nil {
		t.Fatal(err)
	}
	_ = tr.Close()
}

func TestAppendDotStuffed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{".a\r\n..b\r\nc.\r\n.\r\n", "..a\r\n...b\r\nc.\r\n..\r\n.\r\n"},
		{"no final line break", "no final line break\r\n.\r\n"},
		{"", ".\r\n"},
	} {
		if got := string(appendDotStuffed([]byte("x"), []byte(tc.in))); got != "x"+tc.want {
			t.Errorf("appendDotStuffed(%q) = %q, want %q", tc.in, got, "x"+tc.want)
		}
	}
}

// TestSMTPDataGate: under WithDataGate the relay receives the commands and
// the message, but takes it only once the gate's Ready is closed; a send
// whose context ends at the gate fails as temporary, and the relay took
// nothing. Without a gate, or with one already open, nothing waits.
func TestSMTPDataGate(t *testing.T) {
	be := &backend{}
	srv := startServer(t, be, "none")
	tr := NewSMTPTransport(srv.config(TLSNone))
	defer tr.Close()
	if !tr.GatesData() {
		t.Fatal("SMTPTransport.GatesData = false")
	}

	ready := make(chan struct{})
	var waited atomic.Int64
	g := &DataGate{Ready: ready, Waiting: func() { waited.Add(1) }}
	done := make(chan error, 1)
	go func() { done <- tr.Send(WithDataGate(context.Background(), g), numbered(1)) }()
	time.Sleep(200 * time.Millisecond)
	if n := len(be.messages()); n != 0 {
		t.Fatalf("the relay took %d messages before the gate opened", n)
	}
	if waited.Load() != 1 {
		t.Errorf("Waiting called %d times, want 1", waited.Load())
	}
	close(ready)
	if err := <-done; err != nil {
		t.Fatalf("gated send: %v", err)
	}
	if n := len(be.messages()); n != 1 {
		t.Fatalf("the relay took %d messages once the gate opened, want 1", n)
	}

	// An open gate: sent at once, Waiting not called.
	if err := tr.Send(WithDataGate(context.Background(), g), numbered(2)); err != nil || waited.Load() != 1 {
		t.Fatalf("send through an open gate: %v, Waiting called %d times", err, waited.Load())
	}

	// A gate that never opens: the send gives up when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := tr.Send(WithDataGate(ctx, &DataGate{Ready: make(chan struct{})}), numbered(3))
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageData || se.Permanent {
		t.Fatalf("send at a closed gate past its deadline: %v, want a temporary data error", err)
	}
	if err := tr.Send(context.Background(), numbered(4)); err != nil {
		t.Fatalf("the next send: %v", err)
	}
	got := be.messages()
	if len(got) != 3 {
		t.Fatalf("the relay took %d messages, want 3 (not the one abandoned at the gate)", len(got))
	}
}
