package delivery_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/delivery"
	"herald/mailer"
	"herald/store/sqlite"
	"herald/subscribers"
)

// rejected is the one address the test relay refuses at RCPT.
const rejected = "nobody@example.com"

// relay is an in-process SMTP server that counts the messages it accepts by
// Message-ID.
type relay struct {
	mu       sync.Mutex
	byID     map[string]int
	received chan string
}

func (r *relay) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{r: r}, nil }

type session struct {
	r  *relay
	to []string
}

func (s *session) Mail(string, *smtp.MailOptions) error { return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == rejected {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, m.Body); err != nil {
		return err
	}
	id := strings.Trim(m.Header.Get("Message-Id"), "<>")
	s.r.mu.Lock()
	s.r.byID[id]++
	s.r.mu.Unlock()
	s.r.received <- id
	return nil
}

func (s *session) Reset()        { s.to = nil }
func (s *session) Logout() error { return nil }

// startRelay serves SMTP on a loopback port until the test ends.
func startRelay(t *testing.T) (*relay, int) {
	t.Helper()
	r := &relay{byID: map[string]int{}, received: make(chan string, 1000)}
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r, l.Addr().(*net.TCPAddr).Port
}

// openStore opens a migrated SQLite database in the test's directory.
func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// welcomeRenderer renders every job as a minimal welcome email.
type welcomeRenderer struct{}

func (welcomeRenderer) Render(_ context.Context, j delivery.Job) (*mailer.Email, error) {
	return &mailer.Email{
		FromName:  "Herald",
		From:      "news@herald.test",
		ToName:    j.Name,
		To:        j.Email,
		Subject:   "Welcome",
		MessageID: j.MessageID,
		Date:      time.Now(),
		Text:      "Welcome aboard.",
	}, nil
}

// enqueue creates one active subscriber per address, each with a welcome
// message queued, and returns the Message-IDs by address.
func enqueue(t *testing.T, db *sqlite.DB, addrs ...string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	now := time.Now()
	err := db.Update(context.Background(), func(tx subscribers.Tx) error {
		for _, a := range addrs {
			s := &subscribers.Subscriber{Email: a, Name: "Reader", Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
			mid := fmt.Sprintf("welcome.%d@herald.test", s.ID)
			if err := tx.Enqueue(subscribers.OutboxMessage{Kind: subscribers.KindWelcome, SubscriberID: s.ID, MessageID: mid, CreatedAt: now}); err != nil {
				return err
			}
			ids[a] = mid
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return ids
}

func addresses(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("reader%d@example.com", i))
	}
	return out
}

func TestEngineDeliversThroughSQLiteAndSMTP(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	relay, port := startRelay(t)
	transport := mailer.NewSMTPTransport(mailer.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: mailer.TLSNone, Connections: 3})
	t.Cleanup(func() { _ = transport.Close() })

	want := enqueue(t, db, append(addresses(0, 40), rejected)...)
	bouncedID := want[rejected]
	delete(want, rejected)

	e := delivery.New(db, welcomeRenderer{}, transport, delivery.Config{
		Workers:      3,
		BatchSize:    16, // several full batches: claims follow each other without waiting
		PollInterval: time.Hour,
		SettleEvery:  5 * time.Millisecond,
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	waitReceived(t, relay, 40)
	// Queued after the engine went idle: only Wake brings it out before the
	// hour-long poll.
	maps.Copy(want, enqueue(t, db, addresses(40, 50)...))
	e.Wake()
	waitReceived(t, relay, 10)

	waitCounts(t, db, map[string]int{"sent": 50, "bounced": 1})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	relay.mu.Lock()
	defer relay.mu.Unlock()
	for addr, mid := range want {
		if n := relay.byID[mid]; n != 1 {
			t.Errorf("%s (%s) received %d times, want once", mid, addr, n)
		}
	}
	if len(relay.byID) != len(want) || relay.byID[bouncedID] != 0 {
		t.Errorf("relay received %d distinct messages, want %d and none for the refused address", len(relay.byID), len(want))
	}
	if s := e.Stats(); s.Sent != 50 || s.Bounced != 1 || s.Claimed != 51 || s.Released != 0 {
		t.Errorf("Stats = %+v, want 51 claimed, 50 sent, 1 bounced", s)
	}
	found, err := db.FindSubscribers(ctx, subscribers.Filter{Status: subscribers.StatusBounced, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Email != rejected {
		t.Errorf("bounced subscribers = %d, want the refused address alone", len(found))
	}
}

// waitReceived waits until the relay has accepted n more messages.
func waitReceived(t *testing.T, r *relay, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-r.received:
		case <-timeout:
			t.Fatalf("relay received %d of %d messages", i, n)
		}
	}
}

// waitCounts waits until the outbox rows are in exactly the given statuses.
func waitCounts(t *testing.T, db *sqlite.DB, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := db.CountMessages(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox statuses = %v, want %v", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// chainRelay is a raw SMTP relay offering PIPELINING that, before it answers
// a message's final dot, waits up to 200 ms for the sender's next command:
// a sender that chains (mailer.Chain) has sent its next transaction with
// the dot, one that does not waits for the answer. It counts both.
type chainRelay struct {
	mu              sync.Mutex
	chained, waited int
	ids             map[string]int
	// peek is how long the relay waits for the next command before it
	// counts a message as sent alone; default 200 ms. A chained message's
	// next command comes in the same write as its dot.
	peek time.Duration
}

func (r *chainRelay) serve(nc net.Conn) {
	defer nc.Close()
	tp := textproto.NewConn(nc)
	reply := func(l string) { _ = tp.PrintfLine("%s", l) }
	reply("220 relay.test ESMTP")
	for {
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		l, err := tp.ReadLine()
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(l, "EHLO"):
			reply("250-relay.test")
			reply("250 PIPELINING")
		case strings.HasPrefix(l, "MAIL"), strings.HasPrefix(l, "RCPT"), l == "RSET":
			reply("250 ok")
		case l == "DATA":
			reply("354 go ahead")
			msg, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m, err := mail.ReadMessage(bytes.NewReader(msg))
			if err != nil {
				return
			}
			// Is the next command already here?
			peek := r.peek
			if peek == 0 {
				peek = 200 * time.Millisecond
			}
			_ = nc.SetReadDeadline(time.Now().Add(peek))
			_, peekErr := tp.R.Peek(1)
			r.mu.Lock()
			r.ids[strings.Trim(m.Header.Get("Message-Id"), "<>")]++
			if peekErr == nil {
				r.chained++
			} else {
				r.waited++
			}
			r.mu.Unlock()
			reply("250 queued")
		case l == "QUIT":
			reply("221 bye")
			return
		default:
			reply("500 what")
		}
	}
}

// sendChained delivers n queued messages with workers workers, each with a
// relay connection of its own, through a chainRelay that waits peek for
// the next command (0: its default), and checks that every message arrived
// once. It returns the relay, whose counts say how many were chained.
func sendChained(t *testing.T, workers, n int, peek time.Duration) *chainRelay {
	t.Helper()
	db := openStore(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	r := &chainRelay{ids: map[string]int{}, peek: peek}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go r.serve(nc)
		}
	}()
	transport := mailer.NewSMTPTransport(mailer.SMTPConfig{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		TLS: mailer.TLSNone, Connections: workers})
	t.Cleanup(func() { _ = transport.Close() })

	want := enqueue(t, db, addresses(0, n)...)
	e := delivery.New(db, welcomeRenderer{}, transport, delivery.Config{Workers: workers, BatchSize: 100, PollInterval: time.Hour})
	runCtx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	waitCounts(t, db, map[string]int{"sent": n})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mid := range want {
		if r.ids[mid] != 1 {
			t.Errorf("%s received %d times, want once", mid, r.ids[mid])
		}
	}
	if r.chained+r.waited != n {
		t.Errorf("chained %d and waited %d of %d messages", r.chained, r.waited, n)
	}
	return r
}

// The engine opens each message's transaction with the last one's final
// dot when it has its next job at hand: a worker and its connection send a
// queue back to back, one round trip a message.
func TestEngineChainsTransactions(t *testing.T) {
	const n = 30
	r := sendChained(t, 1, n, 0)
	// All but the last message of the queue carry the next one's commands
	// with their dot.
	if r.chained != n-1 || r.waited != 1 {
		t.Errorf("chained %d, waited %d; want %d and 1", r.chained, r.waited, n-1)
	}
}

// With many workers each one still has its next job at hand when its dot
// goes out: the jobs of a claimed batch wait for the workers in a buffer,
// where a worker that cannot wait for one (it takes it while its message
// is being sent) finds it. Only a few messages go out alone: each worker's
// last, and those sent while the buffer was dry (the next batch is being
// claimed), a few percent of them. Before the buffer, a fifth to a quarter
// of them went alone in this test.
func TestEngineChainsTransactionsAcrossWorkers(t *testing.T) {
	const n = 3000
	r := sendChained(t, 16, n, 2*time.Millisecond)
	if r.waited > n/10 {
		t.Errorf("chained %d, waited %d; want at most %d of %d messages sent alone", r.chained, r.waited, n/10, n)
	}
}
