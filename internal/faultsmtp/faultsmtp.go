// Package faultsmtp is an SMTP relay for tests: it records every message it
// accepts (envelope recipient and Message-ID) so that a test can check that
// each reader got a message exactly once, and it can misbehave the way real
// relays do: temporary 4xx replies at MAIL, RCPT or DATA, connections that
// drop in the middle of DATA, slow replies, and 5xx refusals of chosen
// recipients. Faults are drawn from a seeded generator, so a failing run can
// be repeated with its seed.
//
// What counts as accepted is decided the way a relay decides it: a message
// is recorded only once its terminating dot has been read. A connection
// dropped mid-DATA loses the message (the sender's retry is not a repeat);
// Faults.DropAfterAccept keeps the message and then hangs up before the 250
// reaches the sender, the one case where a retry is a genuine repeat.
package faultsmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Faults says how often, and how, the relay misbehaves. Probabilities are per
// command (MAIL, RCPT, DATA) and lie in [0, 1]; the zero value is a relay
// that accepts everything at once.
type Faults struct {
	// MailTempFail, RcptTempFail and DataTempFail are the probabilities of
	// a 4xx reply to MAIL FROM, RCPT TO and the end of DATA. A DATA
	// refused this way is read in full and not kept.
	MailTempFail, RcptTempFail, DataTempFail float64
	// DropMidData is the probability that the connection is closed while
	// the message is being read: the message is not kept.
	DropMidData float64
	// DropAfterAccept is the probability that a message is kept and the
	// connection then closed before the 250 is written: the sender cannot
	// know it was delivered, and its retry is a repeat.
	DropAfterAccept float64
	// MaxReplyDelay delays each reply to MAIL, RCPT and DATA by a random
	// time in [0, MaxReplyDelay).
	MaxReplyDelay time.Duration
	// DataDelay delays every DATA by this long before the message is
	// read: it slows the relay down evenly, e.g. so that a test can kill
	// a sender in the middle of a send.
	DataDelay time.Duration
	// Bounce, if set, reports the recipients refused at RCPT with 550
	// 5.1.1 (no such user), on every attempt.
	Bounce func(rcpt string) bool
}

// Config configures a Server.
type Config struct {
	// Seed seeds the generator that draws the faults.
	Seed uint64
	// Faults are the faults injected; the zero value injects none.
	Faults Faults
}

// Message is one message the relay accepted.
type Message struct {
	From      string   // MAIL FROM
	To        []string // RCPT TO, in order
	MessageID string   // the Message-ID header, angle brackets included; "" if none
	Size      int      // bytes of DATA
	// Unacknowledged is set when the connection was closed after the
	// message was kept but before the 250 was sent (Faults.DropAfterAccept).
	Unacknowledged bool
}

// Stats counts what the relay did.
type Stats struct {
	Accepted        int // messages kept, Unacknowledged included
	Unacknowledged  int // messages kept without a 250 (DropAfterAccept)
	MailTempFails   int
	RcptTempFails   int
	DataTempFails   int
	DropsMidData    int
	Bounces         int // RCPT refused with 550 5.1.1
	Sessions        int // connections accepted
	ReadErrors      int // DATA that ended before its terminating dot (sender gone)
	ReplyDelayTotal time.Duration
}

// Server is a running relay on a loopback port. It is safe for concurrent
// use.
type Server struct {
	srv *smtp.Server
	ln  net.Listener
	cfg Config

	mu       sync.Mutex
	rnd      *rand.Rand
	messages []Message
	stats    Stats
	arrived  chan struct{} // signalled (without blocking) on each accepted message
}

// Start runs a relay on 127.0.0.1 with a free port.
func Start(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:      ln,
		cfg:     cfg,
		rnd:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		arrived: make(chan struct{}, 1),
	}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "relay.test"
	s.srv.ReadTimeout, s.srv.WriteTimeout = time.Minute, time.Minute
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.MaxRecipients = 100
	// Senders that vanish mid-session are what these tests are about:
	// go-smtp would log each one.
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = s.srv.Serve(ln) }() // returns when Close closes the listener
	return s, nil
}

// Port returns the port the relay listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Addr returns the relay's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the relay and closes its connections.
func (s *Server) Close() error { return s.srv.Close() }

// Messages returns a copy of the messages accepted so far, in the order they
// were accepted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	copy(out, s.messages)
	return out
}

// Count returns how many messages were accepted so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

// Stats returns the relay's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Arrived is signalled, without blocking, after each accepted message: a
// test waiting for mail selects on it with a timeout and looks again.
func (s *Server) Arrived() <-chan struct{} { return s.arrived }

// chance draws from the seeded generator: true with probability p.
func (s *Server) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rnd.Float64() < p
}

// replyDelay sleeps for a random time below Faults.MaxReplyDelay.
func (s *Server) replyDelay() {
	max := s.cfg.Faults.MaxReplyDelay
	if max <= 0 {
		return
	}
	s.mu.Lock()
	d := time.Duration(s.rnd.Int64N(int64(max)))
	s.stats.ReplyDelayTotal += d
	s.mu.Unlock()
	time.Sleep(d)
}

// count adds one to the counter f picks, under the lock.
func (s *Server) count(f func(*Stats) *int) {
	s.mu.Lock()
	*f(&s.stats)++
	s.mu.Unlock()
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.count(func(st *Stats) *int { return &st.Sessions })
	return &session{s: s, conn: c}, nil
}

// tempFail is the 4xx reply of an injected temporary failure. Its enhanced
// code is neither x.7.x (policy) nor a 421, so that the sender treats it as
// a problem of this one message rather than of the relay as a whole.
func tempFail(stage string) error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Injected temporary failure at " + stage}
}

// errDropped is returned by Data after the connection was closed on purpose.
var errDropped = errors.New("faultsmtp: connection dropped")

// session is one connection's state.
type session struct {
	s    *Server
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.replyDelay()
	if ss.s.chance(ss.s.cfg.Faults.MailTempFail) {
		ss.s.count(func(st *Stats) *int { return &st.MailTempFails })
		return tempFail("MAIL")
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.replyDelay()
	if b := ss.s.cfg.Faults.Bounce; b != nil && b(to) {
		ss.s.count(func(st *Stats) *int { return &st.Bounces })
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	if ss.s.chance(ss.s.cfg.Faults.RcptTempFail) {
		ss.s.count(func(st *Stats) *int { return &st.RcptTempFails })
		return tempFail("RCPT")
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	f := ss.s.cfg.Faults
	if f.DataDelay > 0 {
		time.Sleep(f.DataDelay)
	}
	if ss.s.chance(f.DropMidData) {
		// Read a little of the message, as a relay that crashes or loses
		// its network half-way would, then hang up: nothing is kept.
		_, _ = io.CopyN(io.Discard, r, 256)
		ss.s.count(func(st *Stats) *int { return &st.DropsMidData })
		_ = ss.conn.Conn().Close()
		return errDropped
	}
	b, err := io.ReadAll(r)
	if err != nil {
		// The sender went away (or was killed) before the final dot:
		// the message is not complete and is not kept.
		ss.s.count(func(st *Stats) *int { return &st.ReadErrors })
		return err
	}
	ss.s.replyDelay()
	if ss.s.chance(f.DataTempFail) {
		ss.s.count(func(st *Stats) *int { return &st.DataTempFails })
		return tempFail("DATA")
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), MessageID: messageID(b), Size: len(b)}
	drop := ss.s.chance(f.DropAfterAccept)
	m.Unacknowledged = drop
	ss.s.mu.Lock()
	ss.s.messages = append(ss.s.messages, m)
	ss.s.stats.Accepted++
	if drop {
		ss.s.stats.Unacknowledged++
	}
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	if drop {
		_ = ss.conn.Conn().Close()
		return errDropped
	}
	return nil
}

// messageID returns the Message-ID header of a message, or "".
func messageID(msg []byte) string {
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(string(msg))))
	h, err := tp.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}

// Check is the accounting of a send against what the relay accepted.
type Check struct {
	// Want are the recipients who should have received a message.
	Want []string
	// MessageIDPrefix, if set, restricts the check to messages whose
	// Message-ID header starts with it, angle bracket included (e.g.
	// "<herald.digest.7." for one digest issue's).
	MessageIDPrefix string
}

// Tally is what a Server received, per recipient, for the messages a Check
// selects.
type Tally struct {
	// Received maps each recipient to the Message-IDs it received, one
	// entry per copy.
	Received map[string][]string
	// Repeats is the number of copies beyond the first, over all
	// recipients.
	Repeats int
	// Problems lists what breaks "every wanted recipient exactly once,
	// repeats only with the same Message-ID, nobody else": missing
	// recipients, strangers, repeats with a different Message-ID.
	Problems []string
}

// Tally counts what the relay received against c.
func (s *Server) Tally(c Check) Tally {
	t := Tally{Received: map[string][]string{}}
	for _, m := range s.Messages() {
		if !strings.HasPrefix(m.MessageID, c.MessageIDPrefix) {
			continue
		}
		for _, rcpt := range m.To {
			t.Received[rcpt] = append(t.Received[rcpt], m.MessageID)
		}
	}
	want := make(map[string]bool, len(c.Want))
	for _, w := range c.Want {
		want[w] = true
		if len(t.Received[w]) == 0 {
			t.Problems = append(t.Problems, fmt.Sprintf("%s received nothing", w))
		}
	}
	for rcpt, ids := range t.Received {
		if !want[rcpt] {
			t.Problems = append(t.Problems, fmt.Sprintf("%s received %d messages and should have none", rcpt, len(ids)))
		}
		t.Repeats += len(ids) - 1
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Problems = append(t.Problems, fmt.Sprintf("%s received two different messages: %s and %s", rcpt, ids[0], id))
				break
			}
		}
	}
	return t
}
