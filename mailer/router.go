package mailer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// RelayDownFor is how long a Router's weighted picker skips a default relay
// after it failed with a pool-wide error (SendError.PoolWide).
const RelayDownFor = 30 * time.Second

// ErrNoRoute is the cause of a Router's error for a recipient that matches
// no route when the Router has no default relay. The SendError carrying it
// is temporary, so the message is retried once the configuration is fixed.
var ErrNoRoute = errors.New("no relay for the recipient's domain")

// ErrRelaysDown is the cause of a Router's error when every default relay
// failed with a pool-wide error less than RelayDownFor ago. The SendError
// carrying it is pool-wide (stage dial), so the engine backs off.
var ErrRelaysDown = errors.New("every relay is down")

// Route sends the mail for some recipient domains through one relay.
type Route struct {
	// Name names the relay in errors (RelayError) and metrics.
	Name string
	// Domains are matched case-insensitively against the recipient's
	// domain: "example.org" matches that domain only, "*.example.org" any
	// subdomain of it (a.example.org, a.b.example.org) but not
	// example.org itself. An exact match wins over a suffix, a longer
	// suffix over a shorter one, and an earlier route over a later one.
	Domains []string
	// Transport sends the route's mail. It must not be nil.
	Transport Transport
}

// Weighted is a default relay: it takes a share, in proportion to Weight,
// of the mail that no Route matches.
type Weighted struct {
	// Name names the relay in errors (RelayError) and metrics.
	Name string
	// Transport sends the relay's share. It must not be nil.
	Transport Transport
	// Weight is the relay's share relative to the others; values below 1
	// count as 1.
	Weight int
}

// RelayError is a send error annotated with the name of the relay that
// returned it. Router wraps every error of its relays in one; errors.As
// still finds the *SendError inside.
type RelayError struct {
	Relay string
	Err   error
}

// Error implements error.
func (e *RelayError) Error() string { return "relay " + e.Relay + ": " + e.Err.Error() }

// Unwrap returns the relay's error.
func (e *RelayError) Unwrap() error { return e.Err }

// Router is a Transport over several relays. A recipient whose domain
// matches a Route goes through that route's relay; any other goes through a
// default relay picked by smooth weighted round-robin (deterministic: with
// weights 2 and 1 the order is a, b, a, a, b, a, ...). When a default relay
// fails with a pool-wide error (SendError.PoolWide: 421, no connection,
// TLS or AUTH failure) the message is tried on the next one, and the relay
// is skipped for RelayDownFor. Router is safe for concurrent use.
type Router struct {
	exact    map[string]*relay
	suffixes []suffixRoute // longest suffix first
	defaults []*relay
	all      []Transport // every distinct transport, for Close

	// OnFailover, when set, is called with the error of a default relay
	// that the Router moves past to try another one: errors that never
	// reach the caller. Set it before the first Send.
	OnFailover func(relay string, err *SendError)

	now func() time.Time

	mu sync.Mutex // guards the picker state of defaults

	closeOnce sync.Once
	closeErr  error
}

// relay is one transport in a Router.
type relay struct {
	name string
	t    Transport

	// The picker's state, guarded by Router.mu.
	weight    int
	current   int
	downUntil time.Time
}

// suffixRoute is a "*.example.org" route, kept as ".example.org".
type suffixRoute struct {
	suffix string
	relay  *relay
}

// NewRouter returns a Router sending through routes and defaults. It panics
// if a Route or Weighted has no Transport, a wiring mistake.
func NewRouter(routes []Route, defaults []Weighted) *Router {
	r := &Router{exact: map[string]*relay{}, now: time.Now}
	for i, rt := range routes {
		if rt.Transport == nil {
			panic(fmt.Sprintf("mailer: NewRouter: route %d (%q) has no transport", i, rt.Name))
		}
		p := &relay{name: rt.Name, t: rt.Transport}
		r.addTransport(rt.Transport)
		for _, d := range rt.Domains {
			d = normalizeDomain(d)
			if suffix, ok := strings.CutPrefix(d, "*."); ok {
				if suffix != "" && !r.hasSuffix("."+suffix) {
					r.suffixes = append(r.suffixes, suffixRoute{suffix: "." + suffix, relay: p})
				}
			} else if _, dup := r.exact[d]; d != "" && !dup {
				r.exact[d] = p
			}
		}
	}
	// Stable: among equal lengths the earlier route stays first (and
	// duplicates were dropped above).
	slices.SortStableFunc(r.suffixes, func(a, b suffixRoute) int { return len(b.suffix) - len(a.suffix) })
	for i, w := range defaults {
		if w.Transport == nil {
			panic(fmt.Sprintf("mailer: NewRouter: default relay %d (%q) has no transport", i, w.Name))
		}
		r.defaults = append(r.defaults, &relay{name: w.Name, t: w.Transport, weight: max(1, w.Weight)})
		r.addTransport(w.Transport)
	}
	return r
}

// hasSuffix reports whether a route for suffix exists already.
func (r *Router) hasSuffix(suffix string) bool {
	for _, s := range r.suffixes {
		if s.suffix == suffix {
			return true
		}
	}
	return false
}

// addTransport remembers t for Close, once even if several relays share it.
func (r *Router) addTransport(t Transport) {
	for _, u := range r.all {
		if sameTransport(t, u) {
			return
		}
	}
	r.all = append(r.all, t)
}

// sameTransport reports whether a and b are the same transport. Values of
// types that cannot be compared are never the same.
func sameTransport(a, b Transport) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// AddressDomain returns the domain of addr (the part after its last @),
// lowercased and without a trailing dot; "" when addr has no @.
func AddressDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return normalizeDomain(addr[at+1:])
}

// normalizeDomain lowercases d and trims spaces and a trailing dot.
func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// route returns the relay a Route assigns to a recipient in domain, or nil.
func (r *Router) route(domain string) *relay {
	if p, ok := r.exact[domain]; ok {
		return p
	}
	for _, s := range r.suffixes {
		if strings.HasSuffix(domain, s.suffix) {
			return s.relay
		}
	}
	return nil
}

// GatesData reports whether every relay of the Router honours a DataGate.
func (r *Router) GatesData() bool {
	for _, t := range r.all {
		if g, ok := t.(DataGater); !ok || !g.GatesData() {
			return false
		}
	}
	return len(r.all) > 0
}

// Send sends e through the relay for its recipient. Errors are
// *RelayError wrapping the relay's error (a *SendError when the relay says
// why), or a *SendError carrying ErrNoRoute or ErrRelaysDown.
func (r *Router) Send(ctx context.Context, e *Email) error {
	// Each message picks its relay: the next one's transaction cannot be
	// opened on this one's connection.
	ctx = withoutChain(ctx)
	if p := r.route(AddressDomain(e.To)); p != nil {
		return p.send(ctx, e)
	}
	if len(r.defaults) == 0 {
		return &SendError{Stage: StageMail, Err: ErrNoRoute}
	}

	var tried []bool // allocated on the first failover
	var failed *relay
	var failedErr *SendError
	for {
		i := r.pick(tried)
		if i < 0 {
			break
		}
		if failed != nil && r.OnFailover != nil {
			r.OnFailover(failed.name, failedErr)
		}
		p := r.defaults[i]
		err := p.send(ctx, e)
		var se *SendError
		if err == nil || ctx.Err() != nil || !errors.As(err, &se) || !se.PoolWide() {
			return err
		}
		r.markDown(p)
		if tried == nil {
			tried = make([]bool, len(r.defaults))
		}
		tried[i] = true
		failed, failedErr = p, se
	}
	if failed != nil {
		return &RelayError{Relay: failed.name, Err: failedErr}
	}
	return &SendError{Stage: StageDial, Err: ErrRelaysDown}
}

// send sends e through p, naming p in the error.
func (p *relay) send(ctx context.Context, e *Email) error {
	if err := p.t.Send(ctx, e); err != nil {
		return &RelayError{Relay: p.name, Err: err}
	}
	return nil
}

// pick chooses the next default relay by smooth weighted round-robin among
// those neither down nor tried, and returns its index, or -1 if none is
// left. Each pick adds every candidate's weight to its current score, takes
// the highest score and subtracts the candidates' total from it.
func (r *Router) pick(tried []bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	best, total := -1, 0
	for i, p := range r.defaults {
		if (tried != nil && tried[i]) || now.Before(p.downUntil) {
			continue
		}
		p.current += p.weight
		total += p.weight
		if best < 0 || p.current > r.defaults[best].current {
			best = i
		}
	}
	if best >= 0 {
		r.defaults[best].current -= total
	}
	return best
}

// markDown makes the picker skip p for RelayDownFor.
func (r *Router) markDown(p *relay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.downUntil = r.now().Add(RelayDownFor)
}

// Close closes every relay's transport, once even if several relays share
// one, and returns their errors joined. Later calls return the same error.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for _, t := range r.all {
			errs = append(errs, t.Close())
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
