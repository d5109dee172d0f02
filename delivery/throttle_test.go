package delivery

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"herald/mailer"
)

// advanceTo moves the clock to t, unless it is there already.
func (c *fakeClock) advanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

// fakeWait makes e's rate-limit waits move the fake clock to the time the
// wait ends, at once, instead of sleeping.
func fakeWait(e *Engine, c *fakeClock) {
	e.waitUntil = func(ctx context.Context, until time.Time) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.advanceTo(until)
		return nil
	}
}

func TestNewLimiter(t *testing.T) {
	for _, tc := range []struct {
		perSecond float64
		burst     int // 0: no limiter
	}{
		{0, 0}, {-5, 0}, {0.5, 1}, {10, 1}, {25, 3}, {1000, 100},
	} {
		lim := newLimiter(tc.perSecond)
		switch {
		case tc.burst == 0 && lim != nil:
			t.Errorf("newLimiter(%v) = a limiter, want none", tc.perSecond)
		case tc.burst != 0 && (lim == nil || lim.Burst() != tc.burst || float64(lim.Limit()) != tc.perSecond):
			t.Errorf("newLimiter(%v) = %v, want %v/s with burst %d", tc.perSecond, lim, tc.perSecond, tc.burst)
		}
	}
}

func TestRateLimitHoldsOnTheClock(t *testing.T) {
	const n, perSecond = 40, 10.0 // burst 1
	h := newHarness()
	h.cfg.Workers = 6
	h.cfg.BatchSize = 50
	h.cfg.RatePerSecond = perSecond
	for range n {
		h.store.add("digest")
	}
	e := h.engine()
	fakeWait(e, h.clock)
	start(t, e)
	receive(t, "every delivery", h.transport.delivered, n)
	eventually(t, "all settled", settled(h.store))

	// The clock moves only when a worker waits for its token. Whatever the
	// interleaving, by any send's time at most burst + rate * elapsed
	// sends may have happened.
	h.transport.mu.Lock()
	var at []time.Duration
	for _, ts := range h.transport.sentAt {
		at = append(at, ts.Sub(t0))
	}
	h.transport.mu.Unlock()
	slices.Sort(at)
	for k, d := range at {
		if allowed := 1 + perSecond*d.Seconds() + 1e-9; float64(k+1) > allowed {
			t.Fatalf("send %d at t0+%v: more than %.1f sends by then", k+1, d, allowed)
		}
	}
	if last, earliest := at[len(at)-1], time.Duration(float64(n-1)/perSecond*float64(time.Second)); last < earliest {
		t.Errorf("last send at t0+%v, want at least t0+%v", last, earliest)
	}
	if s := e.Stats(); s.Sent != n || s.Released != 0 {
		t.Errorf("Stats = %+v, want %d sent, none released", s, n)
	}
}

func TestRateLimitReleasesJobsItCannotStartInTheLease(t *testing.T) {
	// One token every 100 s, a lease of 2 minutes: the second and third
	// jobs would start more than Lease/2 after their claim, so they go
	// back at once, due when the rate allows.
	h := newHarness()
	h.cfg.Workers = 2
	h.cfg.RatePerSecond = 0.01
	h.cfg.Lease = 2 * time.Minute
	for range 3 {
		h.store.add("digest")
	}
	e := h.engine()
	e.waitUntil = func(context.Context, time.Time) error {
		t.Error("waited for a token that comes too late")
		return nil
	}
	start(t, e)
	eventually(t, "one sent, two released", func() bool {
		s := e.Stats()
		return s.Sent == 1 && s.Released == 2 && settled(h.store)()
	})

	var sent int
	for id := int64(1); id <= 3; id++ {
		switch r := h.store.row(id); r.Status {
		case "sent":
			sent++
		case "queued":
			// Due when its token would have come: 100 s on, or 200 s
			// when the other released job reserved its token first.
			if next := r.Next.Sub(t0); r.Attempts != 0 || next < 100*time.Second || next > 200*time.Second {
				t.Errorf("row %d: attempts %d, next t0+%v; want 0, t0+[100s, 200s]", id, r.Attempts, next)
			}
		default:
			t.Errorf("row %d left %q", id, r.Status)
		}
	}
	if sent != 1 {
		t.Errorf("%d sent, want 1", sent)
	}
	if s := e.Stats(); s.Sent != 1 || s.Released != 2 {
		t.Errorf("Stats = %+v, want 1 sent, 2 released", s)
	}
}

func TestCancelReleasesJobsWaitingForTokens(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 3
	h.cfg.RatePerSecond = 1
	for range 6 {
		h.store.add("digest")
	}
	e := h.engine()
	waiting := make(chan struct{}, 10)
	e.waitUntil = func(ctx context.Context, until time.Time) error {
		waiting <- struct{}{}
		<-ctx.Done() // the token never comes
		return ctx.Err()
	}
	cancel, done := runUntilCancelled(e)
	defer cancel()

	receive(t, "the burst's one send", h.transport.delivered, 1)
	receive(t, "two workers waiting for tokens", waiting, 2)
	cancel()
	if err := receive(t, "Run to return", done, 1)[0]; err != nil {
		t.Fatalf("Run = %v", err)
	}
	checkDrained(t, h.store, 1)
	if s := e.Stats(); s.Sent != 1 || s.Released != 5 {
		t.Errorf("Stats = %+v, want 1 sent, 5 released", s)
	}
}

// checkDrained checks that after a shutdown, sent rows were sent once and
// every other row was released: queued again with no attempt counted.
func checkDrained(t *testing.T, s *fakeStore, wantSent int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := 0
	for _, r := range s.rows {
		switch {
		case r.Status == "sent" && r.Attempts == 1:
			sent++
		case r.Status == "queued" && r.Attempts == 0 && r.LastError == "":
		default:
			t.Errorf("row %d: %s, attempts %d, error %q; want sent once or released", r.ID, r.Status, r.Attempts, r.LastError)
		}
	}
	if sent != wantSent {
		t.Errorf("%d rows sent, want %d", sent, wantSent)
	}
	if s.ignored != 0 {
		t.Errorf("%d results for rows not leased by the engine", s.ignored)
	}
}

// domainTransport counts the sends in flight per recipient domain. While
// gate is open (nil or closed) sends go through.
type domainTransport struct {
	gate    chan struct{}
	started chan string

	mu       sync.Mutex
	inflight map[string]int
	max      map[string]int
	sent     int
}

func newDomainTransport(gate chan struct{}) *domainTransport {
	return &domainTransport{gate: gate, started: make(chan string, 1000), inflight: map[string]int{}, max: map[string]int{}}
}

func (tr *domainTransport) Send(ctx context.Context, e *mailer.Email) error {
	d := mailer.AddressDomain(e.To)
	tr.mu.Lock()
	tr.inflight[d]++
	tr.max[d] = max(tr.max[d], tr.inflight[d])
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		tr.inflight[d]--
		tr.sent++
		tr.mu.Unlock()
	}()
	tr.started <- d
	if tr.gate != nil {
		<-tr.gate
	}
	runtime.Gosched() // let other workers overlap this send
	return nil
}

func (tr *domainTransport) Close() error { return nil }

func (tr *domainTransport) maxInflight() map[string]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string]int{}
	for d, n := range tr.max {
		out[d] = n
	}
	return out
}

// addTo queues a message to a reader at domain.
func addTo(s *fakeStore, domain string) int64 {
	id := s.add("digest")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id-1].Email = fmt.Sprintf("reader%d@%s", id, domain)
	return id
}

// domainUsers returns how many workers hold or wait for a slot of domain.
func domainUsers(e *Engine, domain string) int {
	e.domains.mu.Lock()
	defer e.domains.mu.Unlock()
	if d := e.domains.domains[domain]; d != nil {
		return d.users
	}
	return 0
}

func TestPerDomainConcurrencyWaitsForASlot(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 4
	h.cfg.BatchSize = 50
	h.cfg.PerDomainConcurrency = 2
	for i := range 20 {
		domain := "gmail.com"
		if i >= 10 {
			domain = "yahoo.com"
		}
		addTo(h.store, domain)
	}
	gate := make(chan struct{})
	tr := newDomainTransport(gate)
	e := New(h.store, h.renderer, tr, h.cfg)
	start(t, e)

	// Four workers on the first four jobs, all to gmail.com: two send, two
	// wait for a slot (case-insensitively the same domain).
	receive(t, "two sends under way", tr.started, 2)
	eventually(t, "two more workers waiting for gmail.com", func() bool { return domainUsers(e, "gmail.com") == 4 })
	if n := len(tr.started); n != 0 {
		t.Fatalf("%d more sends started beyond the cap", n)
	}
	close(gate)
	eventually(t, "all settled", settled(h.store))
	// gmail.com had two sends held at the gate; yahoo.com's come after
	// it opened, at most two at once.
	if got := tr.maxInflight(); got["gmail.com"] != 2 || got["yahoo.com"] > 2 || len(got) != 2 {
		t.Errorf("most sends in flight per domain = %v, want gmail.com 2, yahoo.com at most 2", got)
	}
	if n := e.domains.size(); n != 0 {
		t.Errorf("%d domains still tracked when idle", n)
	}
}

func TestPerDomainConcurrencyNeverExceeded(t *testing.T) {
	const perDomain = 3
	h := newHarness()
	h.cfg.Workers = 16
	h.cfg.BatchSize = 64
	h.cfg.PerDomainConcurrency = perDomain
	domains := []string{"gmail.com", "GMail.com", "yahoo.com", "outlook.com", "example.org", "example.net"}
	for i := range 300 {
		addTo(h.store, domains[i%len(domains)])
	}
	tr := newDomainTransport(nil)
	e := New(h.store, h.renderer, tr, h.cfg)
	start(t, e)
	eventually(t, "all sent", func() bool { return e.Stats().Sent == 300 })

	for d, n := range tr.maxInflight() {
		if n > perDomain {
			t.Errorf("%d sends in flight to %s at once, cap %d", n, d, perDomain)
		}
	}
	// Slots are given back just after the result is counted.
	eventually(t, "no domain tracked when idle", func() bool { return e.domains.size() == 0 })
}

func TestCancelReleasesJobsWaitingForADomain(t *testing.T) {
	h := newHarness()
	h.cfg.Workers = 4
	h.cfg.BatchSize = 10
	h.cfg.PerDomainConcurrency = 1
	for range 10 {
		addTo(h.store, "gmail.com")
	}
	gate := make(chan struct{})
	tr := newDomainTransport(gate)
	e := New(h.store, h.renderer, tr, h.cfg)
	cancel, done := runUntilCancelled(e)
	defer cancel()

	receive(t, "one send under way", tr.started, 1)
	eventually(t, "three workers waiting for gmail.com", func() bool { return domainUsers(e, "gmail.com") == 4 })
	cancel()
	close(gate) // the send under way finishes; the waiting ones never start
	if err := receive(t, "Run to return", done, 1)[0]; err != nil {
		t.Fatalf("Run = %v", err)
	}
	checkDrained(t, h.store, 1)
	if s := e.Stats(); s.Sent != 1 || s.Released != 9 {
		t.Errorf("Stats = %+v, want 1 sent, 9 released", s)
	}
	if n := e.domains.size(); n != 0 {
		t.Errorf("%d domains still tracked after shutdown", n)
	}
}

// relayObserver is an Observer that also records relay errors.
type relayObserver struct {
	fakeObserver
	mu     sync.Mutex
	errors []string
}

func (o *relayObserver) RelayError(relay string, code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errors = append(o.errors, fmt.Sprintf("%s %d", relay, code))
}

func TestRelayErrorObserver(t *testing.T) {
	h := newHarness()
	obs := &relayObserver{}
	h.cfg.Observer = obs
	named := h.store.add("digest")
	plain := h.store.add("digest")
	network := h.store.add("digest")
	encode := h.store.add("digest")
	other := h.store.add("digest")
	rendering := h.store.add("digest")
	h.transport.fail(named, &mailer.RelayError{Relay: "backup", Err: &mailer.SendError{Code: 451, Stage: mailer.StageRcpt, Err: errors.New("4.3.0 later")}})
	h.transport.fail(plain, &mailer.SendError{Code: 552, Stage: mailer.StageData, Permanent: true, Err: errors.New("5.3.4 too big")})
	h.transport.fail(network, &mailer.SendError{Stage: mailer.StageData, Err: errors.New("connection reset")})
	h.transport.fail(encode, &mailer.SendError{Stage: mailer.StageEncode, Permanent: true, Err: errors.New("bad header")})
	h.transport.fail(other, errors.New("no idea"))
	h.renderer.fail(rendering, errors.New("template broke"))
	start(t, h.engine())
	eventually(t, "all attempted", func() bool {
		h.store.mu.Lock()
		defer h.store.mu.Unlock()
		for _, r := range h.store.rows {
			if r.Status == "sending" || r.Status == "queued" && r.Attempts == 0 {
				return false
			}
		}
		return true
	})

	obs.mu.Lock()
	defer obs.mu.Unlock()
	got := slices.Sorted(slices.Values(obs.errors))
	if want := []string{"backup 451", "default 0", "default 552"}; !slices.Equal(got, want) {
		t.Errorf("relay errors = %v, want %v", got, want)
	}
}
