package delivery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"herald/mailer"
)

// settleTimeout bounds one SettleMessages call. Settles run on a context that
// outlives Run's, so that shutdown can record what it did.
const settleTimeout = 30 * time.Second

// Config tunes an Engine. Zero fields take the documented defaults.
type Config struct {
	// Owner names this instance in leases. Default: hostname-pid-random.
	Owner string
	// Workers is how many messages are rendered and sent at once. Default 4.
	Workers int
	// BatchSize is how many messages one claim leases, and how many results
	// one settle records at most. Default 100.
	BatchSize int
	// Lease is how long a claimed message stays ours. A claimed message is
	// only started within Lease/2 of its claim (later ones are released),
	// and a render and send together get at most Lease/4, so that a result
	// always reaches the store before another instance may claim the row.
	// Default 2m.
	Lease time.Duration
	// PollInterval is how often an idle engine looks for due messages.
	// Default 1s.
	PollInterval time.Duration
	// RetryBase is the delay after a first temporary failure; it doubles
	// with each attempt up to RetryMax, and each delay is jittered over
	// [d/2, d]. Defaults 30s and 1h.
	RetryBase, RetryMax time.Duration
	// MaxAge is how long after its creation a message may keep failing
	// temporarily before it settles as failed. Default 72h.
	MaxAge time.Duration
	// SettleEvery is how often results are written when fewer than
	// BatchSize are waiting. A sent message is written sooner instead (see
	// SettleLinger): its worker sends nothing else until it is recorded,
	// so that a crash repeats at most one message per worker. Default
	// 200ms.
	SettleEvery time.Duration
	// SettleLinger is how long the first sent result waiting for its
	// commit may wait for others to share it (a group commit): a commit
	// costs far more than the rows it writes, and a settle per handful of
	// messages spent a fifth of the CPU of a large send. The results are
	// written before that once a quarter of the workers wait for them
	// (with 4 workers or fewer: at once), or BatchSize results are
	// waiting, but never sooner than SettleLinger/10 after the last write
	// ended, so that a commit a worker waits for still gathers the results
	// that come in meanwhile. A worker that waits holds its relay
	// connection (its next message waits at its DataGate, or its next
	// transaction is open on it). Default 5ms.
	SettleLinger time.Duration
	// PauseBase is how long the engine stops claiming after a pool-wide
	// failure (421, relay unreachable); consecutive pauses without a
	// success in between double, up to PauseMax. Defaults 10s and 10m.
	PauseBase, PauseMax time.Duration
	// RatePerSecond caps how many sends start per second, across all
	// workers: a token bucket that holds a tenth of a second's worth (at
	// least one). A worker waits for its token before rendering; a job
	// whose turn would come after the first half of its lease is released,
	// due when the rate would allow it, so keep twice BatchSize (a batch
	// is claimed while the last one is still being handed out) below
	// RatePerSecond * Lease/2. Zero or less: no limit.
	RatePerSecond float64
	// PerDomainConcurrency caps the sends in flight at once to one
	// recipient domain (the part of the address after the @, lowercased).
	// A worker whose job would exceed it waits for a slot, so a batch
	// full of one domain runs at this concurrency whatever Workers is.
	// Zero or less: no limit.
	PerDomainConcurrency int
	// Observer, if set, is told of every attempt. If it also implements
	// RelayErrorObserver, it is told of every relay error.
	Observer Observer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	setDefault(&c.Workers, 4)
	setDefault(&c.BatchSize, 100)
	setDefault(&c.Lease, 2*time.Minute)
	setDefault(&c.PollInterval, time.Second)
	setDefault(&c.RetryBase, 30*time.Second)
	setDefault(&c.RetryMax, time.Hour)
	setDefault(&c.MaxAge, 72*time.Hour)
	setDefault(&c.SettleEvery, 200*time.Millisecond)
	setDefault(&c.SettleLinger, 5*time.Millisecond)
	setDefault(&c.PauseBase, 10*time.Second)
	setDefault(&c.PauseMax, 10*time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// defaultOwner names this process uniquely among the instances sharing a
// database, and across its own restarts.
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "herald"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:8])
}

// Stats are an Engine's counters since it was created.
type Stats struct {
	Claimed   int64 // messages leased
	Sent      int64
	Retried   int64
	Failed    int64
	Bounced   int64
	Cancelled int64
	Released  int64 // claimed but handed back unattempted
	// Settled counts the messages whose final outcome (sent, failed,
	// bounced or cancelled) the store has recorded: unlike Sent and the
	// others, which count attempts as they end, it moves only once a
	// settle has committed.
	Settled int64
	// PausedUntil is the end of the current pool-wide pause, or zero.
	PausedUntil time.Time
}

// Engine delivers the outbox: it claims due messages under a lease, renders
// and sends them with a bounded pool of workers, and settles the results in
// batches. Several engines, in one process or many, may share a store.
type Engine struct {
	store     Store
	renderer  Renderer
	transport mailer.Transport
	cfg       Config
	log       *slog.Logger
	rnd       func(int64) int64 // returns [0, n)
	wake      chan struct{}
	soon      chan struct{} // a worker waits at a DataGate: settle now
	running   atomic.Bool
	limiter   *rate.Limiter  // nil: no rate limit
	limiterMu sync.Mutex     // orders reservations by time
	domains   *domainLimiter // nil: no per-domain limit
	waitUntil func(ctx context.Context, until time.Time) error

	claimed, sent, retried, failed, bounced, cancelled, released, settled atomic.Int64

	mu    sync.Mutex // guards pause
	pause circuit
}

// New returns an Engine that takes its work from store, renders with r and
// sends through t. It does nothing until Run.
func New(store Store, r Renderer, t mailer.Transport, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{
		store:     store,
		renderer:  r,
		transport: t,
		cfg:       cfg,
		log:       cfg.Logger.With("owner", cfg.Owner),
		rnd:       mrand.Int64N,
		wake:      make(chan struct{}, 1),
		soon:      make(chan struct{}, 1),
		pause:     circuit{base: cfg.PauseBase, max: cfg.PauseMax},
		limiter:   newLimiter(cfg.RatePerSecond),
		domains:   newDomainLimiter(cfg.PerDomainConcurrency),
	}
	e.waitUntil = func(ctx context.Context, until time.Time) error { return waitUntil(ctx, cfg.Now, until) }
	return e
}

// Wake asks a running engine to look for due messages now rather than at its
// next poll, e.g. right after a confirmation email was queued. It never
// blocks; wakes during a pool-wide pause wait for the pause to end.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	until, paused := e.pause.pausedUntil(e.cfg.Now())
	e.mu.Unlock()
	s := Stats{
		Claimed:   e.claimed.Load(),
		Sent:      e.sent.Load(),
		Retried:   e.retried.Load(),
		Failed:    e.failed.Load(),
		Bounced:   e.bounced.Load(),
		Cancelled: e.cancelled.Load(),
		Released:  e.released.Load(),
		Settled:   e.settled.Load(),
	}
	if paused {
		s.PausedUntil = until
	}
	return s
}

// claimedJob is a job with the time its lease began.
type claimedJob struct {
	Job
	claimedAt time.Time
}

// Run delivers until ctx is cancelled. Then it stops claiming, lets the sends
// already under way finish, releases the messages it claimed but did not
// start, settles every result and returns nil; an error means the final
// settle failed, and the rows it concerned will be claimed again once their
// lease expires. Run may not be called again while it runs.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("delivery: engine already running")
	}
	defer e.running.Store(false)

	// A transport that honours a mailer.DataGate lets a worker start its
	// next message while the last one's settle commits: the transaction
	// runs up to DATA's 354, and the message waits for the commit.
	g, _ := e.transport.(mailer.DataGater)
	gates := g != nil && g.GatesData()
	// Without throttling, a worker takes its next job while it sends the
	// last, so that the transport can open the next transaction with the
	// last one's final dot (mailer.Chain). A throttled job must wait for
	// its turn first, so throttling sends one message at a time.
	chaining := e.limiter == nil && e.domains == nil
	// jobs holds a job for each worker when workers chain: takeAhead never
	// waits for a job, and from an unbuffered channel it got one only when
	// the dispatcher happened to be blocked on its send, so only a quarter
	// of the messages opened the next transaction. Otherwise it is
	// unbuffered: nothing waits in between.
	var jobs chan claimedJob
	if chaining {
		jobs = make(chan claimedJob, e.cfg.Workers)
	} else {
		jobs = make(chan claimedJob)
	}
	results := make(chan Result, e.cfg.BatchSize+e.cfg.Workers)
	settled := make(chan error, 1)
	go func() { settled <- e.settleLoop(ctx, results) }()
	var wg sync.WaitGroup
	for range e.cfg.Workers {
		wg.Go(func() {
			var gate *mailer.DataGate // the last accepted message's, until recorded
			w := worker{jobs: jobs}
			if chaining {
				w.chain = &mailer.Chain{Next: func() *mailer.Email { return e.takeAhead(ctx, &w) }}
				defer w.chain.Release()
			}
			for {
				j, ahead, ok := w.take()
				if !ok {
					break
				}
				r := e.handle(ctx, j, gate, ahead, w.chain)
				if r.Outcome != OutcomeSent {
					results <- r
					continue
				}
				// A message the relay accepted is in flight until its
				// settle is durable: were the process killed before, it
				// would be sent again. The relay takes nothing else from
				// this worker meanwhile (its next message waits at the
				// gate, or the worker waits here), so a crash repeats at
				// most one message per worker.
				durable := make(chan struct{})
				r.durable = durable
				results <- r
				if gates {
					gate = &mailer.DataGate{Ready: durable, Waiting: e.settleSoon}
				} else {
					<-durable
				}
			}
		})
	}

	// The next batch is claimed while the workers still take the jobs of
	// the last one, so that they never wait for a claim; batches is
	// unbuffered, so at most one claimed batch waits its turn.
	batches := make(chan claimedBatch)
	var dispatcher sync.WaitGroup
	dispatcher.Go(func() {
		for b := range batches {
			e.dispatch(ctx, b.jobs, b.at, jobs, results)
		}
	})
	e.claimLoop(ctx, batches)
	close(batches)
	dispatcher.Wait()
	close(jobs)
	wg.Wait()
	close(results)
	return <-settled
}

// worker is one worker's state between its jobs.
type worker struct {
	jobs   <-chan claimedJob
	closed bool          // jobs was found closed while sending
	chain  *mailer.Chain // nil when the engine does not chain
	ahead  *aheadJob     // the job taken while the last one was sent
}

// aheadJob is a job a worker took, and rendered when it could start, while
// its last message was being sent.
type aheadJob struct {
	job      claimedJob
	rendered bool
	start    time.Time // when rendering began
	email    *mailer.Email
	err      error
}

// take returns the worker's next job: the one taken ahead, else one from
// jobs; ok is false once jobs is closed and drained.
func (w *worker) take() (claimedJob, *aheadJob, bool) {
	if a := w.ahead; a != nil {
		w.ahead = nil
		return a.job, a, true
	}
	if w.closed {
		return claimedJob{}, nil, false
	}
	j, ok := <-w.jobs
	return j, nil, ok
}

// takeAhead is a worker's mailer.Chain.Next: while its message is being
// sent, it takes the next job if one is waiting, and renders it if it may
// start, so that its transaction opens with this message's final dot. It
// never waits for a job.
func (e *Engine) takeAhead(ctx context.Context, w *worker) *mailer.Email {
	if w.ahead != nil || w.closed || ctx.Err() != nil {
		return nil
	}
	var j claimedJob
	select {
	case next, ok := <-w.jobs:
		if !ok {
			w.closed = true
			return nil
		}
		j = next
	default:
		return nil
	}
	a := &aheadJob{job: j}
	w.ahead = a
	if _, ok := e.mayStart(ctx, j, e.cfg.Now()); !ok {
		return nil // handle releases it
	}
	a.rendered, a.start = true, time.Now()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Lease/4)
	a.email, a.err = e.render(rctx, j.Job)
	cancel()
	if a.err != nil {
		return nil
	}
	return a.email
}

// claimedBatch is what one claim leased, and when.
type claimedBatch struct {
	jobs []Job
	at   time.Time
}

// claimLoop claims due batches and hands them to the dispatcher until ctx is
// done. It claims again at once while batches come back full.
func (e *Engine) claimLoop(ctx context.Context, batches chan<- claimedBatch) {
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		full := false
		now := e.cfg.Now()
		if _, paused := e.pausedUntil(now); !paused {
			batch, err := e.store.ClaimMessages(ctx, e.cfg.Owner, now, e.cfg.Lease, e.cfg.BatchSize)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Error("claim messages", "error", err)
				}
			} else {
				e.claimed.Add(int64(len(batch)))
				e.prepare(ctx, batch)
				if len(batch) > 0 {
					// The dispatcher always takes it, releasing its jobs
					// once ctx is done.
					batches <- claimedBatch{jobs: batch, at: now}
				}
				full = len(batch) >= e.cfg.BatchSize
			}
		}
		if full {
			continue
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-e.wake:
		}
	}
}

// dispatch hands batch to the workers one job at a time. When ctx is done
// first, the jobs not handed over are released.
func (e *Engine) dispatch(ctx context.Context, batch []Job, claimedAt time.Time, jobs chan<- claimedJob, results chan<- Result) {
	for i, j := range batch {
		select {
		case jobs <- claimedJob{Job: j, claimedAt: claimedAt}:
		case <-ctx.Done():
			now := e.cfg.Now()
			for _, j := range batch[i:] {
				results <- e.release(j, now, now)
			}
			return
		}
	}
}

// render calls the Renderer, turning a panic into ErrUnsendable so that one
// broken message fails alone instead of taking the process down (and, after
// the lease, again on every restart).
func (e *Engine) render(ctx context.Context, j Job) (email *mailer.Email, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("renderer panicked", "job_id", j.ID, "kind", j.Kind, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			email, err = nil, fmt.Errorf("%w: panic: %v", ErrUnsendable, r)
		}
	}()
	return e.renderer.Render(ctx, j)
}

// prepare hands a claimed batch to the renderer's PrepareBatch, if it has
// one. A failure (or a panic) leaves the rest of the batch unprepared, which
// only costs each job its own lookups.
func (e *Engine) prepare(ctx context.Context, batch []Job) {
	p, ok := e.renderer.(BatchPreparer)
	if !ok || len(batch) == 0 {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("prepare claimed batch panicked", "count", len(batch), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if err := p.PrepareBatch(ctx, batch); err != nil && ctx.Err() == nil {
		e.log.Warn("prepare claimed batch", "count", len(batch), "error", err)
	}
}

// mayStart reports whether j may start at now, or returns the Result that
// releases it.
func (e *Engine) mayStart(ctx context.Context, j claimedJob, now time.Time) (Result, bool) {
	if ctx.Err() != nil {
		return e.release(j.Job, now, now), false
	}
	if until, paused := e.pausedUntil(now); paused {
		return e.release(j.Job, now, until), false
	}
	if now.After(e.startBy(j)) {
		// Too little lease left to be sure the result lands before
		// another instance may claim the row and send it again.
		return e.release(j.Job, now, now), false
	}
	return Result{}, true
}

// startBy is the latest time j may start: half-way through its lease.
func (e *Engine) startBy(j claimedJob) time.Time { return j.claimedAt.Add(e.cfg.Lease / 2) }

// handle attempts one job, or releases it when it should not start now.
// ahead, when not nil, is the job as takeAhead took it (rendered, if it
// could start then); chain, when not nil, carries the worker's connection
// from one send to the next. A transaction chain opened for j is dropped
// when j does not go out.
func (e *Engine) handle(ctx context.Context, j claimedJob, gate *mailer.DataGate, ahead *aheadJob, chain *mailer.Chain) Result {
	if res, ok := e.mayStart(ctx, j, e.cfg.Now()); !ok {
		chain.Release()
		return res
	}
	done, res, ok := e.throttle(ctx, j)
	if !ok {
		chain.Release()
		return res
	}
	defer done()

	// A send that has started is finished even if ctx is cancelled
	// meanwhile: abandoning it half-way would leave its fate unknown.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Lease/4)
	defer cancel()
	start := time.Now() // latency is measured, not scheduled: the real clock
	var sendErr error
	var email *mailer.Email
	var renderErr error
	if ahead != nil && ahead.rendered {
		start, email, renderErr = ahead.start, ahead.email, ahead.err
	} else {
		email, renderErr = e.render(sendCtx, j.Job)
	}
	if renderErr == nil {
		if gate != nil {
			sendCtx = mailer.WithDataGate(sendCtx, gate)
		}
		if chain != nil {
			sendCtx = mailer.WithChain(sendCtx, chain)
		}
		sendErr = e.transport.Send(sendCtx, email)
	} else {
		chain.Release()
	}
	latency := time.Since(start)

	now := e.cfg.Now()
	v := e.judge(j.Job, now, renderErr, sendErr)
	var until time.Time
	began := false
	e.mu.Lock()
	switch {
	case v.Outcome == OutcomeSent:
		e.pause.succeed()
	case v.poolWide:
		until, began = e.pause.trip(now)
	}
	e.mu.Unlock()
	if began {
		e.log.Warn("relay unavailable: pausing delivery", "job_id", j.ID, "code", v.code, "until", until)
	}

	e.count(v.Outcome)
	if e.cfg.Observer != nil {
		e.cfg.Observer.Observe(j.Kind, v.Outcome, latency)
	}
	if renderErr == nil && sendErr != nil {
		e.observeRelayError(sendErr)
	}
	e.logResult(j.Job, v, renderErr != nil)
	return v.Result
}

// observeRelayError tells a RelayErrorObserver of a failed send, when the
// transport said why (a *mailer.SendError) and the message itself was not
// the problem.
func (e *Engine) observeRelayError(err error) {
	o, ok := e.cfg.Observer.(RelayErrorObserver)
	if !ok {
		return
	}
	var se *mailer.SendError
	if !errors.As(err, &se) || se.Stage == mailer.StageEncode {
		return
	}
	relay := DefaultRelay
	var re *mailer.RelayError
	if errors.As(err, &re) && re.Relay != "" {
		relay = re.Relay
	}
	o.RelayError(relay, se.Code)
}

// release hands j back unattempted, due again at next.
func (e *Engine) release(j Job, now, next time.Time) Result {
	e.released.Add(1)
	return Result{ID: j.ID, SubscriberID: j.SubscriberID, Outcome: OutcomeRelease, At: now, NextAttemptAt: next}
}

// pausedUntil returns the end of the pool-wide pause in force at now, if any.
func (e *Engine) pausedUntil(now time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pause.pausedUntil(now)
}

// count adds an attempt's outcome to the stats.
func (e *Engine) count(o Outcome) {
	switch o {
	case OutcomeSent:
		e.sent.Add(1)
	case OutcomeRetry:
		e.retried.Add(1)
	case OutcomeFailed:
		e.failed.Add(1)
	case OutcomeBounced:
		e.bounced.Add(1)
	case OutcomeCancelled:
		e.cancelled.Add(1)
	}
}

// logResult logs an attempt once, where it is handled. Addresses never reach
// the log: v.Error is redacted.
func (e *Engine) logResult(j Job, v verdict, rendering bool) {
	attrs := []any{
		"job_id", j.ID, "subscriber_id", j.SubscriberID, "kind", j.Kind,
		"attempt", j.Attempts, "outcome", string(v.Outcome),
	}
	if v.code != 0 {
		attrs = append(attrs, "code", v.code)
	}
	if v.Error != "" {
		attrs = append(attrs, "error", v.Error)
	}
	switch {
	case v.Outcome == OutcomeSent || v.Outcome == OutcomeCancelled:
		e.log.Debug("message settled", attrs...)
	case rendering:
		e.log.Error("render message", attrs...)
	case v.Outcome == OutcomeRetry:
		e.log.Info("message deferred", append(attrs, "next_attempt_at", v.NextAttemptAt)...)
	default:
		e.log.Warn("message not delivered", attrs...)
	}
}

// settleLoop batches results into SettleMessages calls, until results is
// closed; then it settles what is left and reports whether that worked. It
// flushes when BatchSize are waiting, every SettleEvery, and, while workers
// wait for their sent results to be durable, SettleLinger after the first
// of them began to wait or as soon as a quarter of the workers wait (a
// group commit: the results that arrive meanwhile, and during one settle,
// go together in the next).
func (e *Engine) settleLoop(ctx context.Context, results <-chan Result) error {
	tick := time.NewTicker(e.cfg.SettleEvery)
	defer tick.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	lingering := false // linger runs for the waiters in buf
	enough := max(1, e.cfg.Workers/4)
	var buf []Result
	var waiters []chan<- struct{} // workers waiting for their results in buf
	failing := false              // after a failed settle, wait for the tick rather than hammer the store
	failures := 0                 // settles failed in a row
	hurry := false                // a worker waits at a DataGate: flush at the next waiting result
	// Commits asked for early (enough waiters, or one at its gate) are
	// spaced by at least gap: a worker that chains its sends reaches its
	// gate with every message, and committing at each would cost more than
	// the messages; within gap, more results join the commit.
	gap := e.cfg.SettleLinger / 10
	var last time.Time // when the last flush ended
	release := func() {
		for _, w := range waiters {
			close(w)
		}
		waiters = waiters[:0]
	}
	flush := func() {
		if lingering {
			linger.Stop()
			lingering = false
		}
		buf, failing = e.flush(ctx, buf, &failures)
		last = time.Now()
		// While the store fails, the waiting workers send nothing more
		// (what they sent cannot be recorded), unless Run is stopping.
		if !failing || ctx.Err() != nil {
			release()
		}
	}
	// soon flushes now, or once gap has passed since the last flush.
	soon := func() {
		if wait := gap - time.Since(last); wait > 0 {
			linger.Reset(wait)
			lingering = true
			return
		}
		flush()
	}
	for {
		// Workers held back by a failing store are let go when Run stops,
		// so that shutdown does not wait for the next tick.
		var stopping <-chan struct{}
		if failing && len(waiters) > 0 {
			stopping = ctx.Done()
		}
		select {
		case <-stopping:
			release()
		case r, ok := <-results:
			if !ok {
				if len(buf) == 0 {
					return nil
				}
				if err := e.settle(ctx, buf); err != nil {
					return fmt.Errorf("delivery: settle %d results at shutdown: %w", len(buf), err)
				}
				return nil
			}
			if r.durable != nil {
				waiters = append(waiters, r.durable)
				r.durable = nil
				if !lingering && !failing {
					linger.Reset(e.cfg.SettleLinger)
					lingering = true
				}
			}
			buf = append(buf, r)
			switch {
			case failing:
			case len(buf) >= e.cfg.BatchSize:
				hurry = false
				flush()
			case len(waiters) >= enough || hurry && len(waiters) > 0:
				hurry = false
				soon()
			}
		case <-linger.C:
			lingering = false
			if !failing && len(waiters) > 0 {
				flush()
			}
		case <-e.soon:
			// The result the worker waits for may still be on its way:
			// then it is flushed as it arrives.
			hurry = true
			if !failing && len(waiters) > 0 {
				hurry = false
				soon()
			}
		case <-tick.C:
			if len(buf) > 0 {
				flush()
			}
		}
	}
}

// settleSoon asks the settle loop to commit the waiting sent results now
// rather than linger: a worker's next message waits at its DataGate, holding
// a relay connection. It never blocks.
func (e *Engine) settleSoon() {
	select {
	case e.soon <- struct{}{}:
	default:
	}
}

// isolateAfter is how many settles may fail in a row before the results
// are settled one at a time, to find one the store refuses.
const isolateAfter = 3

// flush settles buf, returning what is still to settle and whether it
// failed; *failures counts the settles failed in a row.
//
// A result the store refuses for good (a constraint it breaks, say) would
// fail every settle it is part of, and hold every worker waiting for the
// batch it sits in. So after isolateAfter failures in a row the results
// are settled one at a time: when some of them go through, the store
// works, and the ones it refuses alone are dropped, with an error in the
// log; their leases expire and they are claimed again, and a sent one is
// sent again (a repeat, but not a stall). When none goes through, the
// store is down, and all are kept for the next flush.
func (e *Engine) flush(ctx context.Context, buf []Result, failures *int) ([]Result, bool) {
	err := e.settle(ctx, buf)
	if err == nil {
		*failures = 0
		return nil, false
	}
	*failures++
	// Kept for the next flush; if that never works the leases expire
	// and the messages are claimed again.
	e.log.Error("settle messages", "count", len(buf), "error", err)
	if *failures < isolateAfter || len(buf) < 2 {
		return buf, true
	}
	var refused []Result
	var errs []error
	for i := range buf {
		if err := e.settle(ctx, buf[i:i+1]); err != nil {
			refused = append(refused, buf[i])
			errs = append(errs, err)
		}
	}
	if len(refused) == len(buf) {
		return buf, true
	}
	for i, r := range refused {
		e.log.Error("settle message refused alone: dropped, it will be claimed again once its lease expires",
			"job_id", r.ID, "outcome", string(r.Outcome), "error", errs[i])
	}
	*failures = 0
	return nil, false
}

// settle records results on a context of its own: settles must land even
// while Run's context is being cancelled.
func (e *Engine) settle(ctx context.Context, results []Result) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := e.store.SettleMessages(sctx, e.cfg.Owner, results); err != nil {
		return err
	}
	final := 0
	for i := range results {
		if o := results[i].Outcome; o != OutcomeRetry && o != OutcomeRelease {
			final++
		}
	}
	e.settled.Add(int64(final))
	return nil
}
