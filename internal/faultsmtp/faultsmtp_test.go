package faultsmtp

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// start runs a relay for one test.
func start(t *testing.T, f Faults) *Server {
	t.Helper()
	s, err := Start(Config{Seed: 1, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// send delivers one message to rcpt with Message-ID <id> over a fresh
// connection and returns the error of the first step that failed.
func send(t *testing.T, s *Server, rcpt, id string) error {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := fmt.Sprintf("Message-ID: <%s>\r\nSubject: test\r\n\r\n%s\r\n", id, strings.Repeat("body line\r\n", 200))
	return c.SendMail("news@herald.test", []string{rcpt}, strings.NewReader(msg))
}

// code returns the SMTP reply code of err, or 0.
func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestRecordsAcceptedMessages(t *testing.T) {
	s := start(t, Faults{})
	for _, m := range []struct{ rcpt, id string }{
		{"ana@example.org", "a@herald.test"},
		{"ben@example.org", "b@herald.test"},
		{"ana@example.org", "a@herald.test"}, // an in-flight repeat
	} {
		if err := send(t, s, m.rcpt, m.id); err != nil {
			t.Fatalf("send to %s: %v", m.rcpt, err)
		}
	}
	got := s.Messages()
	if len(got) != 3 || got[0].MessageID != "<a@herald.test>" || got[0].To[0] != "ana@example.org" || got[0].From != "news@herald.test" {
		t.Fatalf("messages = %+v", got)
	}

	tally := s.Tally(Check{Want: []string{"ana@example.org", "ben@example.org", "eve@example.org"}})
	if tally.Repeats != 1 {
		t.Errorf("repeats = %d, want 1", tally.Repeats)
	}
	if len(tally.Problems) != 1 || !strings.Contains(tally.Problems[0], "eve@example.org received nothing") {
		t.Errorf("problems = %q, want eve's missing message only", tally.Problems)
	}
	if tally := s.Tally(Check{Want: []string{"ben@example.org"}, MessageIDPrefix: "<b@"}); len(tally.Problems) != 0 || len(tally.Received) != 1 {
		t.Errorf("with a prefix: %+v", tally)
	}

	// A repeat with another Message-ID is a second message, not a repeat.
	if err := send(t, s, "ben@example.org", "other@herald.test"); err != nil {
		t.Fatal(err)
	}
	tally = s.Tally(Check{Want: []string{"ana@example.org", "ben@example.org"}})
	if len(tally.Problems) != 1 || !strings.Contains(tally.Problems[0], "two different messages") {
		t.Errorf("problems = %q, want ben's two different messages", tally.Problems)
	}
}

func TestFaults(t *testing.T) {
	t.Run("bounce", func(t *testing.T) {
		s := start(t, Faults{Bounce: func(rcpt string) bool { return rcpt == "nobody@example.org" }})
		err := send(t, s, "nobody@example.org", "x@herald.test")
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("send = %v, want 550 5.1.1", err)
		}
		if s.Count() != 0 || s.Stats().Bounces != 1 {
			t.Errorf("count %d, stats %+v", s.Count(), s.Stats())
		}
	})
	for _, tc := range []struct {
		name  string
		f     Faults
		stats func(Stats) int
	}{
		{"4xx at MAIL", Faults{MailTempFail: 1}, func(s Stats) int { return s.MailTempFails }},
		{"4xx at RCPT", Faults{RcptTempFail: 1}, func(s Stats) int { return s.RcptTempFails }},
		{"4xx at DATA", Faults{DataTempFail: 1}, func(s Stats) int { return s.DataTempFails }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.f)
			if err := send(t, s, "ana@example.org", "x@herald.test"); code(err) != 451 {
				t.Errorf("send = %v, want 451", err)
			}
			if s.Count() != 0 || tc.stats(s.Stats()) != 1 {
				t.Errorf("count %d, stats %+v", s.Count(), s.Stats())
			}
		})
	}
	t.Run("drop mid-DATA loses the message", func(t *testing.T) {
		s := start(t, Faults{DropMidData: 1})
		if err := send(t, s, "ana@example.org", "x@herald.test"); err == nil || code(err) != 0 {
			t.Errorf("send = %v, want a network error", err)
		}
		if s.Count() != 0 || s.Stats().DropsMidData != 1 {
			t.Errorf("count %d, stats %+v", s.Count(), s.Stats())
		}
	})
	t.Run("drop after accept keeps the message", func(t *testing.T) {
		s := start(t, Faults{DropAfterAccept: 1})
		if err := send(t, s, "ana@example.org", "x@herald.test"); err == nil || code(err) != 0 {
			t.Errorf("send = %v, want a network error", err)
		}
		got := s.Messages()
		if len(got) != 1 || !got[0].Unacknowledged || s.Stats().Unacknowledged != 1 {
			t.Errorf("messages %+v, stats %+v", got, s.Stats())
		}
	})
}
