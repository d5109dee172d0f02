package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/mailer"
)

// t0 is when every test begins, on the fake clock.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// row is one outbox row of the fake store.
type row struct {
	Job
	Priority   int // lower first
	Status     string
	Next       time.Time
	Owner      string
	LeaseUntil time.Time
	LastError  string
}

// fakeStore is an in-memory outbox that claims, leases and settles the way
// the real stores must.
type fakeStore struct {
	mu         sync.Mutex
	rows       []*row
	claims     []int // sizes of the batches returned, in order
	claimed    chan int
	settleErrs int // fail this many SettleMessages calls first
	// refuse fails every SettleMessages call with a result of these
	// message ids, writing nothing (a result the store can never record).
	refuse  map[int64]bool
	ignored int // results for rows not leased by the settling owner
}

func newStore() *fakeStore { return &fakeStore{claimed: make(chan int, 1000)} }

// add queues a message due at t0 and returns its id.
func (s *fakeStore) add(kind string) int64 {
	return s.addRow(row{Job: Job{Kind: kind, CreatedAt: t0}, Next: t0})
}

func (s *fakeStore) addRow(r row) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.ID = int64(len(s.rows) + 1)
	r.SubscriberID = 100 + r.ID
	r.MessageID = fmt.Sprintf("m%d@herald.test", r.ID)
	r.Email = fmt.Sprintf("reader%d@example.com", r.ID)
	r.SubscriberStatus = "active"
	if r.Status == "" {
		r.Status = "queued"
	}
	s.rows = append(s.rows, &r)
	return r.ID
}

// row returns a copy of row id.
func (s *fakeStore) row(id int64) row {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.rows[id-1]
}

// statuses returns every row's status, by id.
func (s *fakeStore) statuses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.rows {
		out = append(out, r.Status)
	}
	return out
}

func (s *fakeStore) claimSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.claims)
}

func (s *fakeStore) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*row
	for _, r := range s.rows {
		if (r.Status == "queued" && !r.Next.After(now)) || (r.Status == "sending" && !r.LeaseUntil.After(now)) {
			due = append(due, r)
		}
	}
	slices.SortStableFunc(due, func(a, b *row) int { return a.Priority - b.Priority })
	if len(due) > limit {
		due = due[:limit]
	}
	jobs := make([]Job, 0, len(due))
	for _, r := range due {
		r.Status, r.Owner, r.LeaseUntil = "sending", owner, now.Add(lease)
		r.Attempts++
		jobs = append(jobs, r.Job)
	}
	s.claims = append(s.claims, len(jobs))
	select {
	case s.claimed <- len(jobs):
	default:
	}
	return jobs, nil
}

func (s *fakeStore) SettleMessages(ctx context.Context, owner string, results []Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settleErrs > 0 {
		s.settleErrs--
		return fmt.Errorf("database is locked")
	}
	for _, res := range results {
		if s.refuse[res.ID] {
			return fmt.Errorf("message %d: constraint failed", res.ID)
		}
	}
	for _, res := range results {
		if res.ID < 1 || int(res.ID) > len(s.rows) {
			return fmt.Errorf("no message %d", res.ID)
		}
		r := s.rows[res.ID-1]
		if r.Status != "sending" || r.Owner != owner {
			s.ignored++
			continue
		}
		r.Owner, r.LeaseUntil = "", time.Time{}
		switch res.Outcome {
		case OutcomeRelease:
			r.Status, r.Next = "queued", res.NextAttemptAt
			r.Attempts--
		case OutcomeRetry:
			r.Status, r.Next, r.LastError = "queued", res.NextAttemptAt, res.Error
		case OutcomeSent, OutcomeFailed, OutcomeBounced, OutcomeCancelled:
			r.Status, r.LastError = string(res.Outcome), res.Error
		default:
			return fmt.Errorf("message %d: unknown outcome %q", res.ID, res.Outcome)
		}
	}
	return nil
}

// fakeRenderer renders every job into a minimal email, or fails as scripted.
type fakeRenderer struct {
	mu   sync.Mutex
	errs map[int64]error // by job id
}

func (r *fakeRenderer) fail(id int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = map[int64]error{}
	}
	r.errs[id] = err
}

func (r *fakeRenderer) Render(ctx context.Context, j Job) (*mailer.Email, error) {
	r.mu.Lock()
	err := r.errs[j.ID]
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &mailer.Email{To: j.Email, From: "news@herald.test", MessageID: j.MessageID, Subject: j.Kind, Text: "hello"}, nil
}

// fakeTransport records sends and returns scripted errors.
type fakeTransport struct {
	clock *fakeClock

	mu          sync.Mutex
	script      map[string][]error // by Message-ID: one error per attempt, then success
	counts      map[string]int     // successful sends by Message-ID
	sentAt      map[string]time.Time
	inflight    int
	maxInflight int

	gate      chan struct{} // when set, sends wait for it to close
	started   chan string   // told of every send
	delivered chan string   // told of every successful send
}

func newTransport(c *fakeClock) *fakeTransport {
	return &fakeTransport{
		clock:     c,
		script:    map[string][]error{},
		counts:    map[string]int{},
		sentAt:    map[string]time.Time{},
		started:   make(chan string, 1000),
		delivered: make(chan string, 1000),
	}
}

// fail scripts the next attempts to message id to fail with errs, in turn.
func (tr *fakeTransport) fail(id int64, errs ...error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	mid := fmt.Sprintf("m%d@herald.test", id)
	tr.script[mid] = append(tr.script[mid], errs...)
}

func (tr *fakeTransport) Send(ctx context.Context, e *mailer.Email) error {
	tr.mu.Lock()
	tr.inflight++
	tr.maxInflight = max(tr.maxInflight, tr.inflight)
	gate := tr.gate
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		tr.inflight--
		tr.mu.Unlock()
	}()
	tr.started <- e.MessageID
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return &mailer.SendError{Stage: "data", Err: ctx.Err()}
		}
	}

	tr.mu.Lock()
	defer tr.mu.Unlock()
	if errs := tr.script[e.MessageID]; len(errs) > 0 {
		tr.script[e.MessageID] = errs[1:]
		if errs[0] != nil {
			return errs[0]
		}
	}
	tr.counts[e.MessageID]++
	tr.sentAt[e.MessageID] = tr.clock.Now()
	tr.delivered <- e.MessageID
	return nil
}

func (tr *fakeTransport) Close() error { return nil }

func (tr *fakeTransport) deliveries(id int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.counts[fmt.Sprintf("m%d@herald.test", id)]
}

// fakeObserver counts observations by kind and outcome.
type fakeObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *fakeObserver) Observe(kind string, outcome Outcome, latency time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[kind+"/"+string(outcome)]++
}

// logRecorder keeps every log record, rendered as text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

// matching returns the records that contain every one of subs.
func (l *logRecorder) matching(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// harness is one engine wired to fakes.
type harness struct {
	clock     *fakeClock
	store     *fakeStore
	renderer  *fakeRenderer
	transport *fakeTransport
	observer  *fakeObserver
	logs      *logRecorder
	cfg       Config
}

func newHarness() *harness {
	c := newClock()
	h := &harness{
		clock:     c,
		store:     newStore(),
		renderer:  &fakeRenderer{},
		transport: newTransport(c),
		observer:  &fakeObserver{},
		logs:      &logRecorder{},
	}
	h.cfg = Config{
		Owner:        "test-owner",
		Workers:      2,
		BatchSize:    10,
		PollInterval: time.Hour, // tests move on through Wake and full batches
		SettleEvery:  time.Millisecond,
		Observer:     h.observer,
		Now:          c.Now,
		Logger:       h.logs.logger(),
	}
	return h
}

func (h *harness) engine() *Engine {
	return New(h.store, h.renderer, h.transport, h.cfg)
}

// start runs e until the returned stop is called (or the test ends); stop
// cancels Run's context and returns Run's error.
func start(t *testing.T, e *Engine) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	var err error
	stopped := false
	halt := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if stopped {
			return // the test looked at the error itself
		}
		if err := halt(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return func() error {
		stopped = true
		return halt()
	}
}

// eventually waits for cond, failing the test after a generous deadline.
// It is a wait for an event, not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive waits for n values on ch, failing the test after a generous
// deadline, and returns them.
func receive[T any](t *testing.T, what string, ch <-chan T, n int) []T {
	t.Helper()
	var got []T
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timeout:
			t.Fatalf("timed out waiting for %s: got %d of %d", what, len(got), n)
		}
	}
	return got
}
