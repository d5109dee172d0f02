package mailer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// routerFake is a Transport that records its sends and fails as told.
type routerFake struct {
	name string

	mu     sync.Mutex
	sent   []string // recipients
	err    error    // returned by every Send while set
	closed int
}

func (f *routerFake) Send(_ context.Context, e *Email) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.sent = append(f.sent, e.To)
	return nil
}

func (f *routerFake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *routerFake) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *routerFake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

// routerClock is a clock that moves only when told to.
type routerClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *routerClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *routerClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sendTo sends a minimal email to addr through r and returns the error.
func sendTo(r *Router, addr string) error {
	return r.Send(context.Background(), &Email{From: "news@herald.test", To: addr, Subject: "s", Text: "t"})
}

// whoSent returns the name of the one fake that took the last message, by
// comparing counts before and after.
func whoSent(t *testing.T, r *Router, addr string, fakes ...*routerFake) string {
	t.Helper()
	before := make([]int, len(fakes))
	for i, f := range fakes {
		before[i] = f.count()
	}
	if err := sendTo(r, addr); err != nil {
		t.Fatalf("Send to %s: %v", addr, err)
	}
	var who []string
	for i, f := range fakes {
		if f.count() != before[i] {
			who = append(who, f.name)
		}
	}
	if len(who) != 1 {
		t.Fatalf("Send to %s went through %v, want exactly one relay", addr, who)
	}
	return who[0]
}

func TestRouterRoutesByDomain(t *testing.T) {
	ms, corp, deep, dflt := &routerFake{name: "ms"}, &routerFake{name: "corp"}, &routerFake{name: "deep"}, &routerFake{name: "default"}
	r := NewRouter([]Route{
		{Name: "ms", Domains: []string{"Outlook.com", "hotmail.com."}, Transport: ms},
		{Name: "corp", Domains: []string{"*.example.org", " example.org "}, Transport: corp},
		{Name: "deep", Domains: []string{"*.mail.example.org"}, Transport: deep},
		{Name: "late", Domains: []string{"outlook.com"}, Transport: dflt}, // a later duplicate loses
	}, []Weighted{{Name: "default", Transport: dflt, Weight: 1}})

	for _, tc := range []struct{ to, want string }{
		{"a@outlook.com", "ms"},
		{"a@OUTLOOK.COM", "ms"},
		{"a@hotmail.com.", "ms"},
		{"a@example.org", "corp"},
		{"a@news.example.org", "corp"},
		{"a@a.b.example.org", "corp"},
		{"a@x.mail.example.org", "deep"}, // the longer suffix wins
		{"a@mail.example.org", "corp"},   // *.mail.example.org is not mail.example.org
		{"a@notexample.org", "default"},
		{"a@example.org.evil.test", "default"},
		{"a@gmail.com", "default"},
	} {
		if got := whoSent(t, r, tc.to, ms, corp, deep, dflt); got != tc.want {
			t.Errorf("%s went through %s, want %s", tc.to, got, tc.want)
		}
	}
}

func TestRouterSmoothWeightedRoundRobin(t *testing.T) {
	a, b, c := &routerFake{name: "a"}, &routerFake{name: "b"}, &routerFake{name: "c"}
	r := NewRouter(nil, []Weighted{{Name: "a", Transport: a, Weight: 5}, {Name: "b", Transport: b, Weight: 1}, {Name: "c", Transport: c, Weight: 1}})
	var got []string
	for range 14 {
		got = append(got, whoSent(t, r, "x@gmail.com", a, b, c))
	}
	// nginx's smooth weighted round-robin with weights 5, 1, 1: the heavy
	// relay's turns are spread out, not bunched.
	want := strings.Split("a a b a c a a a a b a c a a", " ")
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestRouterWeightsUnderConcurrency(t *testing.T) {
	a, b := &routerFake{name: "a"}, &routerFake{name: "b"}
	r := NewRouter(nil, []Weighted{{Name: "a", Transport: a, Weight: 3}, {Name: "b", Transport: b, Weight: 0}}) // 0 counts as 1
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				if err := sendTo(r, fmt.Sprintf("r%d-%d@gmail.com", i, j)); err != nil {
					t.Errorf("Send: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if a.count() != 600 || b.count() != 200 {
		t.Errorf("a sent %d, b %d; want 600 and 200", a.count(), b.count())
	}
}

func TestRouterFailsOverAndMarksDown(t *testing.T) {
	clock := &routerClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	a, b := &routerFake{name: "a"}, &routerFake{name: "b"}
	r := NewRouter(nil, []Weighted{{Name: "a", Transport: a, Weight: 1}, {Name: "b", Transport: b, Weight: 1}})
	r.now = clock.now
	var failovers []string
	r.OnFailover = func(relay string, err *SendError) {
		failovers = append(failovers, fmt.Sprintf("%s %d", relay, err.Code))
	}

	a.setErr(&SendError{Code: 421, Stage: StageMail, Err: errors.New("4.7.0 too busy")})
	// a's turn comes first: it fails pool-wide, b takes the message.
	if got := whoSent(t, r, "1@gmail.com", a, b); got != "b" {
		t.Fatalf("first message went through %s, want b", got)
	}
	if want := []string{"a 421"}; !slices.Equal(failovers, want) {
		t.Errorf("failovers = %v, want %v", failovers, want)
	}
	a.setErr(nil)
	// a is down for RelayDownFor, even though it works again.
	for i := range 4 {
		if got := whoSent(t, r, fmt.Sprintf("%d@gmail.com", i+2), a, b); got != "b" {
			t.Errorf("message %d went through %s while a is down", i+2, got)
		}
	}
	clock.advance(RelayDownFor)
	var got []string
	for i := range 4 {
		got = append(got, whoSent(t, r, fmt.Sprintf("%d@gmail.com", i+6), a, b))
	}
	if !slices.Contains(got, "a") || !slices.Contains(got, "b") {
		t.Errorf("after the mark expired: %v, want both relays used", got)
	}
}

func TestRouterErrors(t *testing.T) {
	clock := &routerClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	a, b, routed := &routerFake{name: "a"}, &routerFake{name: "b"}, &routerFake{name: "routed"}
	r := NewRouter([]Route{{Name: "routed", Domains: []string{"example.org"}, Transport: routed}},
		[]Weighted{{Name: "a", Transport: a}, {Name: "b", Transport: b}})
	r.now = clock.now

	// A message's own error is the caller's: no failover, the relay named.
	bounce := &SendError{Code: 550, Stage: StageRcpt, Permanent: true, Err: errors.New("5.1.1 no such user")}
	a.setErr(bounce)
	err := sendTo(r, "x@gmail.com")
	var re *RelayError
	var se *SendError
	if !errors.As(err, &re) || re.Relay != "a" || !errors.As(err, &se) || se != bounce {
		t.Fatalf("Send = %v, want a's bounce named a", err)
	}
	if b.count() != 0 {
		t.Errorf("a bounce was tried on b")
	}
	if !strings.Contains(err.Error(), "relay a: rcpt: 550") {
		t.Errorf("error text %q", err)
	}

	// Every default down: the last relay's error, then a fast pool-wide
	// error until a mark expires.
	a.setErr(&SendError{Stage: StageDial, Err: errors.New("connection refused")})
	b.setErr(&SendError{Code: 421, Stage: StageHello, Err: errors.New("closing")})
	err = sendTo(r, "y@gmail.com") // b's turn first, then a
	if !errors.As(err, &re) || re.Relay != "a" || !errors.As(err, &se) || !se.PoolWide() {
		t.Errorf("Send with every relay failing = %v, want a's pool-wide error", err)
	}
	err = sendTo(r, "z@gmail.com")
	if !errors.Is(err, ErrRelaysDown) || !errors.As(err, &se) || !se.PoolWide() {
		t.Errorf("Send with every relay down = %v, want a pool-wide ErrRelaysDown", err)
	}
	// Routed domains do not depend on the defaults.
	if err := sendTo(r, "w@example.org"); err != nil || routed.count() != 1 {
		t.Errorf("routed Send = %v (%d sent), want it through the route", err, routed.count())
	}
	// A cancelled send neither fails over nor marks the relay down.
	c, d := &routerFake{name: "c"}, &routerFake{name: "d"}
	r2 := NewRouter(nil, []Weighted{{Name: "c", Transport: c}, {Name: "d", Transport: d}})
	c.setErr(&SendError{Stage: StageDial, Err: context.Canceled}) // how SMTPTransport reports it
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r2.Send(ctx, &Email{To: "v@gmail.com"}); !errors.As(err, &re) || re.Relay != "c" {
		t.Errorf("Send with a cancelled context = %v, want c's error", err)
	}
	if d.count() != 0 {
		t.Errorf("a cancelled send failed over to d")
	}
	c.setErr(nil)
	if got := []string{whoSent(t, r2, "1@gmail.com", c, d), whoSent(t, r2, "2@gmail.com", c, d)}; !slices.Contains(got, "c") {
		t.Errorf("after a cancelled send: %v, want c still in turn", got)
	}

	// No route and no default: temporary, not pool-wide.
	lone := NewRouter([]Route{{Name: "routed", Domains: []string{"example.org"}, Transport: routed}}, nil)
	err = sendTo(lone, "x@gmail.com")
	if !errors.Is(err, ErrNoRoute) || !errors.As(err, &se) || se.Permanent || se.PoolWide() {
		t.Errorf("Send without a route = %v, want a temporary ErrNoRoute", err)
	}
}

func TestRouterCloseOnce(t *testing.T) {
	shared, other := &routerFake{name: "shared"}, &routerFake{name: "other"}
	r := NewRouter(
		[]Route{{Name: "r1", Domains: []string{"a.test"}, Transport: shared}, {Name: "r2", Domains: []string{"b.test"}, Transport: shared}},
		[]Weighted{{Name: "d1", Transport: shared}, {Name: "d2", Transport: other}},
	)
	for range 2 {
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if shared.closed != 1 || other.closed != 1 {
		t.Errorf("closed shared %d times, other %d; want once each", shared.closed, other.closed)
	}
}

func TestNewRouterPanicsWithoutTransport(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("NewRouter with a nil transport did not panic")
		}
	}()
	NewRouter(nil, []Weighted{{Name: "broken"}})
}

func TestAddressDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a@Example.ORG":      "example.org",
		"a@example.org.":     "example.org",
		`"a@b"@example.org`:  "example.org",
		"no-at":              "",
		"a@":                 "",
		"a@xn--bcher-kva.ch": "xn--bcher-kva.ch",
	} {
		if got := AddressDomain(in); got != want {
			t.Errorf("AddressDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// A Router honours a DataGate only when every one of its relays does.
func TestRouterGatesData(t *testing.T) {
	smtpA := NewSMTPTransport(SMTPConfig{Host: "127.0.0.1", Port: 1})
	smtpB := NewSMTPTransport(SMTPConfig{Host: "127.0.0.1", Port: 2})
	defer smtpA.Close()
	defer smtpB.Close()
	if r := NewRouter([]Route{{Name: "b", Domains: []string{"example.org"}, Transport: smtpB}},
		[]Weighted{{Name: "a", Transport: smtpA, Weight: 1}}); !r.GatesData() {
		t.Error("a Router of SMTP relays does not gate data")
	}
	if r := NewRouter([]Route{{Name: "other", Domains: []string{"example.org"}, Transport: &routerFake{name: "other"}}},
		[]Weighted{{Name: "a", Transport: smtpA, Weight: 1}}); r.GatesData() {
		t.Error("a Router with a relay that does not gate data says it does")
	}
}
