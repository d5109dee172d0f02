package mailer

import (
	"context"
	"testing"
)

// chainSend sends msgs in order on one Chain whose Next offers the message
// after the one being sent, as the delivery engine's workers do.
func chainSend(t *testing.T, tr Transport, msgs []*Email) []error {
	t.Helper()
	ch := &Chain{}
	defer ch.Release()
	errs := make([]error, len(msgs))
	for i, e := range msgs {
		asked := false
		ch.Next = func() *Email {
			if asked {
				t.Errorf("message %d: Next called twice", i)
			}
			asked = true
			if i+1 < len(msgs) {
				return msgs[i+1]
			}
			return nil
		}
		errs[i] = tr.Send(WithChain(context.Background(), ch), e)
	}
	return errs
}

func TestChainOpensNextTransactionWithTheDot(t *testing.T) {
	const n = 20
	var box inbox
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(true)
		wantCommands(t, c.lines(3), numbered(0), false)
		c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		for i := range n {
			box.add(c.data())
			if i+1 < n {
				// The next transaction came in the same group as the
				// dot: all of it is read before anything is answered.
				wantCommands(t, c.lines(3), numbered(i+1), false)
				c.reply("250 2.0.0 queued", "250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			} else {
				c.reply("250 2.0.0 queued")
			}
		}
		c.quit()
	})
	tr := r.transport()
	msgs := make([]*Email, n)
	for i := range msgs {
		msgs[i] = numbered(i)
	}
	for i, err := range chainSend(t, tr, msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_ = tr.Close()
	wantNumbered(t, &box, n)
	if a := r.accepted.Load(); a != 1 {
		t.Errorf("connections = %d, want 1", a)
	}
}

// A refusal of either message of a chained pair is that message's alone:
// the final reply ends a transaction, taken or not, and the one opened
// after it stands.
func TestChainRefusals(t *testing.T) {
	var box inbox
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(true)
		wantCommands(t, c.lines(3), numbered(0), false)
		c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		box.add(c.data())
		// Message 0 refused at the dot; message 1's recipient refused.
		wantCommands(t, c.lines(3), numbered(1), false)
		c.reply("554 5.6.0 content rejected", "250 2.1.0 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients")
		// Message 2 goes out on its own.
		wantCommands(t, c.lines(4), numbered(2), true)
		c.reply("250 2.0.0 reset", "250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		box.add(c.data())
		c.reply("250 2.0.0 queued")
		c.quit()
	})
	tr := r.transport()
	errs := chainSend(t, tr, []*Email{numbered(0), numbered(1), numbered(2)})
	if se := sendErr(t, errs[0]); se.Stage != StageData || se.Code != 554 {
		t.Errorf("message 0: %+v, want 554 at data", se)
	}
	if se := sendErr(t, errs[1]); se.Stage != StageRcpt || se.Code != 550 {
		t.Errorf("message 1: %+v, want 550 at rcpt", se)
	}
	if errs[2] != nil {
		t.Errorf("message 2: %v", errs[2])
	}
	_ = tr.Close()
	if got := len(box.all()); got != 2 {
		t.Errorf("relay read %d messages, want 2", got)
	}
	if a := r.accepted.Load(); a != 1 {
		t.Errorf("connections = %d, want 1", a)
	}
}

// A transaction opened for a message that is then not sent is dropped with
// its connection: the relay, waiting for data after its 354, takes nothing.
func TestChainReleaseDropsOpenedTransaction(t *testing.T) {
	var box inbox
	hungUp := make(chan string, 1)
	r := startRelay(t, func(n int64, c *relayConn) {
		c.greet(true)
		if n == 1 {
			wantCommands(t, c.lines(3), numbered(0), false)
			c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			box.add(c.data())
			wantCommands(t, c.lines(3), numbered(1), false)
			c.reply("250 2.0.0 queued", "250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			hungUp <- c.line() // "" once the client hangs up
			return
		}
		// Message 2, on a new connection.
		wantCommands(t, c.lines(3), numbered(2), false)
		c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
		box.add(c.data())
		c.reply("250 2.0.0 queued")
		c.quit()
	})
	tr := r.transport()
	ch := &Chain{Next: func() *Email { return numbered(1) }}
	if err := tr.Send(WithChain(context.Background(), ch), numbered(0)); err != nil {
		t.Fatal(err)
	}
	// Message 1 is not sent after all; message 2 goes instead.
	ch.Next = nil
	if err := tr.Send(WithChain(context.Background(), ch), numbered(2)); err != nil {
		t.Fatal(err)
	}
	ch.Release()
	if l := <-hungUp; l != "" {
		t.Errorf("relay read %q after the 354 of a dropped transaction, want a hang-up", l)
	}
	_ = tr.Close()
	if got := len(box.all()); got != 2 {
		t.Errorf("relay read %d messages, want 2", got)
	}
	if a := r.accepted.Load(); a != 2 {
		t.Errorf("connections = %d, want 2", a)
	}
	// Its slot came back: all of them are free.
	if n := len(tr.slots); n != 0 {
		t.Errorf("slots in use after release = %d, want 0", n)
	}
}

// Without PIPELINING nothing is chained, and Next is never asked.
func TestChainWithoutPipelining(t *testing.T) {
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(false)
		for i := range 3 {
			for _, want := range []string{"MAIL FROM:<" + numbered(i).ReturnPath + ">", "RCPT TO:<" + numbered(i).To + ">"} {
				if l := c.line(); l != want {
					t.Errorf("got %q, want %q", l, want)
				}
				c.reply("250 ok")
			}
			if l := c.line(); l != "DATA" {
				t.Errorf("got %q, want DATA", l)
			}
			c.reply("354 go ahead")
			c.data()
			c.reply("250 queued")
		}
		c.quit()
	})
	tr := r.transport()
	ch := &Chain{Next: func() *Email {
		t.Error("Next asked of a relay without PIPELINING")
		return nil
	}}
	for i := range 3 {
		if err := tr.Send(WithChain(context.Background(), ch), numbered(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ch.Release()
	_ = tr.Close()
}

// A Router never chains: the next message may go to another relay.
func TestRouterDoesNotChain(t *testing.T) {
	var box inbox
	r := startRelay(t, func(_ int64, c *relayConn) {
		c.greet(true)
		for i := range 2 {
			wantCommands(t, c.lines(3), numbered(i), false)
			c.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			box.add(c.data())
			c.reply("250 2.0.0 queued")
		}
		c.quit()
	})
	tr := r.transport()
	router := NewRouter(nil, []Weighted{{Name: "only", Transport: tr, Weight: 1}})
	for i, err := range chainSend(t, router, []*Email{numbered(0), numbered(1)}) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_ = router.Close()
	if got := len(box.all()); got != 2 {
		t.Errorf("relay read %d messages, want 2", got)
	}
}
