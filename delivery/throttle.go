package delivery

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"herald/mailer"
)

// newLimiter returns the token bucket for perSecond sends a second, or nil
// (no limit) when perSecond is not positive. The bucket holds a tenth of a
// second's worth of tokens (at least one): enough that a worker woken a
// little late does not waste the rate, too few for a visible burst.
func newLimiter(perSecond float64) *rate.Limiter {
	if !(perSecond > 0) || math.IsInf(perSecond, 1) {
		return nil
	}
	burst := max(1, int(math.Ceil(perSecond/10)))
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// domainLimiter caps the sends in flight at once to each recipient domain.
// It keeps a semaphore only for the domains that some worker holds or waits
// for, so its map never has more entries than there are workers.
type domainLimiter struct {
	limit int

	mu      sync.Mutex
	domains map[string]*domainSlots
}

// domainSlots is one domain's semaphore and how many workers hold or wait
// for one of its slots.
type domainSlots struct {
	slots chan struct{} // one token per send in flight
	users int           // guarded by domainLimiter.mu
}

// newDomainLimiter returns a limiter allowing limit sends per domain at
// once, or nil (no limit) when limit is not positive.
func newDomainLimiter(limit int) *domainLimiter {
	if limit <= 0 {
		return nil
	}
	return &domainLimiter{limit: limit, domains: map[string]*domainSlots{}}
}

// acquire waits for a slot for domain and returns the func that gives it
// back. It returns ctx's error, holding nothing, if ctx ends first.
func (l *domainLimiter) acquire(ctx context.Context, domain string) (release func(), err error) {
	l.mu.Lock()
	d := l.domains[domain]
	if d == nil {
		d = &domainSlots{slots: make(chan struct{}, l.limit)}
		l.domains[domain] = d
	}
	d.users++
	l.mu.Unlock()

	select {
	case d.slots <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-d.slots
				l.leave(domain, d)
			})
		}, nil
	case <-ctx.Done():
		l.leave(domain, d)
		return nil, ctx.Err()
	}
}

// leave records that a worker no longer holds or waits for a slot of d, and
// forgets d when no worker does.
func (l *domainLimiter) leave(domain string, d *domainSlots) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d.users--
	if d.users == 0 {
		delete(l.domains, domain)
	}
}

// size returns how many domains the limiter keeps a semaphore for.
func (l *domainLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.domains)
}

// waitUntil waits until now() reaches until, or returns ctx's error if
// ctx ends first.
func waitUntil(ctx context.Context, now func() time.Time, until time.Time) error {
	d := until.Sub(now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// throttle waits until j may be sent under the engine's limits: first a
// slot for its recipient's domain, then a token from the rate limiter. It
// returns the func that gives the domain slot back once the send is done.
// When j should not start after all (ctx ended while waiting, its turn
// would come too late in its lease, or a pool-wide pause began meanwhile)
// it returns ok false and the Result that releases j.
func (e *Engine) throttle(ctx context.Context, j claimedJob) (done func(), res Result, ok bool) {
	done = func() {}
	if e.domains != nil {
		release, err := e.domains.acquire(ctx, mailer.AddressDomain(j.Email))
		if err != nil {
			now := e.cfg.Now()
			return nil, e.release(j.Job, now, now), false
		}
		done = release
	}
	if e.limiter != nil {
		// Reading the clock and reserving together keeps the limiter's
		// times in order: a reservation dated before the one made just
		// ahead of it would count the time in between twice.
		e.limiterMu.Lock()
		now := e.cfg.Now()
		r := e.limiter.ReserveN(now, 1) // always OK: the burst is at least 1
		e.limiterMu.Unlock()
		at := now.Add(r.DelayFrom(now))
		if at.After(e.startBy(j)) {
			// Waiting would use up the lease; the store hands the
			// message out again about when the rate would allow it.
			r.CancelAt(now)
			done()
			return nil, e.release(j.Job, now, at), false
		}
		if at.After(now) {
			if err := e.waitUntil(ctx, at); err != nil {
				now := e.cfg.Now()
				r.CancelAt(now)
				done()
				return nil, e.release(j.Job, now, now), false
			}
		}
	}
	if res, ok := e.mayStart(ctx, j, e.cfg.Now()); !ok {
		done()
		return nil, res, false
	}
	return done, Result{}, true
}
