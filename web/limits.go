package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"sync"
	"time"
)

// SignupLimits keeps the counts behind the signup defences where every
// Herald instance on one database sees them (Deps.Limits): the per-IP and
// per-subnet counts, the site-wide signup rate and the end of attack mode,
// and the proof-of-work solutions already spent. Keys are keyed hashes of
// what they stand for, never a client's address.
type SignupLimits interface {
	// Hit counts one event at now against each counter in turn, kinds[i]
	// and keys[i] under limits[i] (0: no limit), and stops at the first
	// whose events over the last minute have reached its limit: the
	// counters before it count the event, it and those after do not. It
	// returns that counter's index (-1 when every counter counted the
	// event) and how long until it would count one, and the events over
	// the last minute of the last counter that counted, this one included.
	Hit(ctx context.Context, now time.Time, kinds []string, keys [][]byte, limits []int) (refused, n int, wait time.Duration, err error)
	// Add counts n events at now against the counter (kind, key), without
	// a limit, and returns the events over the last minute, these
	// included.
	Add(ctx context.Context, now time.Time, kind string, key []byte, n int) (int, error)
	// AttackUntil returns when attack mode ends; zero when it never was on.
	AttackUntil(ctx context.Context) (time.Time, error)
	// ExtendAttack makes attack mode last at least until until, and
	// returns when it now ends.
	ExtendAttack(ctx context.Context, until time.Time) (time.Time, error)
	// Spend records the solution id as spent until expires. It reports
	// false when it already was.
	Spend(ctx context.Context, id []byte, expires time.Time) (bool, error)
}

// The kinds of counter the signup defences keep in SignupLimits.
const (
	limitIP     = "ip"     // signups per client IP (per IPv6 /64)
	limitSubnet = "subnet" // signups per IPv4 /24, IPv6 /48
	limitRate   = "rate"   // every signup, for attack mode
)

const (
	// limitsTimeout bounds each call to the shared limits. Past it, or on
	// any error, the signup is judged by this instance's own counts: a
	// slow database must not make the signup form slow or fail.
	limitsTimeout = 500 * time.Millisecond
	// limitsRetry is how long after a failure of the shared limits this
	// instance keeps to its own counts before it asks the database again,
	// so that a database that is down costs each signup no timeout.
	limitsRetry = 10 * time.Second
	// attackRecheck is how often an instance asks the shared limits
	// whether another instance has turned attack mode on, when its own
	// signups have not told it.
	attackRecheck = time.Second
	// attackWriteStep is the least an instance moves the shared end of
	// attack mode by: during a spike every signup would move it, and one
	// write a second is enough.
	attackWriteStep = time.Second
	// rateFlushEvery is how often an instance adds the signups it has
	// counted for attack mode to the shared rate. The rate is one row
	// that every instance writes; written by every signup during a spike,
	// its dead versions would pile up faster than they are pruned
	// whenever a long transaction holds them.
	rateFlushEvery = time.Second
)

// signupLimits runs the per-IP and per-subnet limits and attack mode's
// count, and spends proof-of-work solutions: in this process (local), or
// through shared for every instance, with local standing in while shared
// fails.
type signupLimits struct {
	perIP, perSubnet int
	// countRate is set when attack mode can turn on (AltchaAttack).
	countRate bool
	threshold int
	cooldown  time.Duration

	local  *localLimits
	shared SignupLimits // nil: in this process only
	// key keys the hashes that stand for addresses in shared.
	key []byte
	log *slog.Logger

	mu sync.Mutex
	// attackUntil is the latest end of attack mode this instance knows of.
	attackUntil time.Time
	// attackChecked is when shared was last asked about attack mode, and
	// attackWritten the end this instance last wrote there.
	attackChecked, attackWritten time.Time
	// downUntil: until then shared is not asked (it failed); down is set
	// from a failure until the next success, so each is logged once.
	downUntil time.Time
	down      bool
	// ratePending are the signups counted here since ratePendingSince,
	// not yet added to the shared rate, and rateShared the shared rate
	// as of that last addition.
	ratePending      int
	rateShared       int
	ratePendingSince time.Time
}

func newSignupLimits(cfg Config, mode string, threshold int, cooldown time.Duration, shared SignupLimits, key []byte, log *slog.Logger) *signupLimits {
	l := &signupLimits{
		perIP:     cfg.SignupPerIP,
		perSubnet: cfg.SignupPerSubnet,
		countRate: mode == AltchaAttack,
		threshold: threshold,
		cooldown:  cooldown,
		local:     &localLimits{used: make(map[string]time.Time)},
		shared:    shared,
		key:       key,
		log:       log,
	}
	if cfg.SignupPerIP > 0 {
		l.local.ip = newIPLimiter(cfg.SignupPerIP)
	}
	if cfg.SignupPerSubnet > 0 {
		l.local.subnet = newSubnetLimiter(cfg.SignupPerSubnet)
	}
	return l
}

// take counts one signup attempt from ip at now. It returns "" when the
// attempt may go on, else the signup result of the limit that refused it
// (SignupRateLimited, SignupSubnetLimited) and how long to wait. An attempt
// that passes both limits counts towards attack mode.
func (l *signupLimits) take(ctx context.Context, ip string, now time.Time) (string, time.Duration) {
	if l.useShared(now) {
		result, wait, err := l.takeShared(ctx, ip, now)
		if err == nil {
			l.up()
			return result, wait
		}
		l.fail(now, err)
	}
	if ok, wait := l.local.ip.allow(ip, now); !ok {
		return SignupRateLimited, wait
	}
	if ok, wait := l.local.subnet.allow(ip, now); !ok {
		return SignupSubnetLimited, wait
	}
	if l.countRate && l.local.record(now) > l.threshold {
		l.mu.Lock()
		l.attackUntil = later(l.attackUntil, now.Add(l.cooldown))
		l.mu.Unlock()
	}
	return "", 0
}

func (l *signupLimits) takeShared(ctx context.Context, ip string, now time.Time) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limitsTimeout)
	defer cancel()
	// One call counts the signup against each limit in turn: the per-IP
	// limit first, so that one client refused by it does not use up its
	// neighbours' subnet.
	var kinds [2]string
	var keys [2][]byte
	var limits [2]int
	var results [2]string
	k := 0
	if l.perIP > 0 {
		kinds[k], keys[k], limits[k], results[k] = limitIP, l.hash(limiterKey(ip)), l.perIP, SignupRateLimited
		k++
	}
	if l.perSubnet > 0 {
		kinds[k], keys[k], limits[k], results[k] = limitSubnet, l.hash(subnetKey(ip)), l.perSubnet, SignupSubnetLimited
		k++
	}
	if k > 0 {
		refused, _, wait, err := l.shared.Hit(ctx, now, kinds[:k], keys[:k], limits[:k])
		if err != nil {
			return "", 0, err
		}
		if refused >= 0 {
			return results[refused], wait, nil
		}
	}
	if !l.countRate {
		return "", 0, nil
	}
	// The signup counts towards attack mode here at once, and in the
	// shared rate at the next addition, at most rateFlushEvery later.
	l.mu.Lock()
	l.ratePending++
	n := l.rateShared + l.ratePending
	add := 0
	if now.Sub(l.ratePendingSince) >= rateFlushEvery || now.Before(l.ratePendingSince) {
		add, l.ratePending, l.ratePendingSince = l.ratePending, 0, now
	}
	l.mu.Unlock()
	if add > 0 {
		total, err := l.shared.Add(ctx, now, limitRate, []byte{}, add)
		l.mu.Lock()
		if err != nil {
			l.ratePending += add
			l.mu.Unlock()
			return "", 0, err
		}
		l.rateShared = total
		n = total + l.ratePending
		l.mu.Unlock()
	}
	// The count says nothing of attack mode turned on by another
	// instance, so attackChecked stays: attackOn asks on its own.
	l.mu.Lock()
	write := false
	if n > l.threshold {
		until := now.Add(l.cooldown)
		l.attackUntil = later(l.attackUntil, until)
		write = until.Sub(l.attackWritten) >= attackWriteStep
	}
	l.mu.Unlock()
	if write {
		return "", 0, l.extendAttack(ctx, now.Add(l.cooldown))
	}
	return "", 0, nil
}

func (l *signupLimits) extendAttack(ctx context.Context, until time.Time) error {
	got, err := l.shared.ExtendAttack(ctx, until)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.attackWritten = until
	l.attackUntil = later(l.attackUntil, got)
	l.mu.Unlock()
	return nil
}

// attackOn reports whether attack mode is on at now, here or, on shared
// limits, on any instance (as of at most attackRecheck ago).
func (l *signupLimits) attackOn(now time.Time) bool {
	l.mu.Lock()
	on := now.Before(l.attackUntil)
	stale := now.Sub(l.attackChecked) >= attackRecheck || now.Before(l.attackChecked)
	l.mu.Unlock()
	if on || !stale || !l.useShared(now) {
		return on
	}
	ctx, cancel := context.WithTimeout(context.Background(), limitsTimeout)
	defer cancel()
	until, err := l.shared.AttackUntil(ctx)
	if err != nil {
		l.fail(now, err)
		return false
	}
	l.up()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attackChecked = now
	l.attackUntil = later(l.attackUntil, until)
	return now.Before(l.attackUntil)
}

// spend records a solution (its signature) as spent until expires: false
// when it already was.
func (l *signupLimits) spend(ctx context.Context, sig string, now, expires time.Time) bool {
	if l.useShared(now) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limitsTimeout)
		defer cancel()
		ok, err := l.shared.Spend(ctx, l.hash(sig), expires)
		if err == nil {
			l.up()
			return ok
		}
		l.fail(now, err)
	}
	return l.local.spend(sig, now, expires)
}

// hash is what stands for s (an address, a network, a signature) in the
// shared limits: a keyed hash, so that the database holds no addresses and
// a copy of it cannot be checked against a guessed one.
func (l *signupLimits) hash(s string) []byte {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte(s))
	return m.Sum(nil)[:16]
}

// useShared reports whether the shared limits are there and not resting
// after a failure.
func (l *signupLimits) useShared(now time.Time) bool {
	if l.shared == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !now.Before(l.downUntil)
}

// fail notes a failure of the shared limits: this instance keeps to its own
// counts for limitsRetry. Only the first failure in a row is logged.
func (l *signupLimits) fail(now time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downUntil = now.Add(limitsRetry)
	if !l.down {
		l.down = true
		l.log.Warn("the shared signup limits do not answer; this instance counts signups on its own until they do", "error", err)
	}
}

// up notes a success of the shared limits, logging the first after a
// failure.
func (l *signupLimits) up() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		l.down = false
		l.log.Info("the shared signup limits answer again")
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// localLimits are the signup defences' counts in this process.
type localLimits struct {
	ip, subnet *ipLimiter // nil when that limit is off

	mu sync.Mutex
	// window counts signups per second over the last minute: window[i]
	// holds second secs[i].
	window [60]int
	secs   [60]int64
	// used maps the signature of each accepted solution to its expiry, so
	// that one solution buys one signup.
	used map[string]time.Time
}

// record counts one signup at now and returns the signups of the last
// minute, this one included.
func (l *localLimits) record(now time.Time) int {
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	i := int(sec % 60)
	if i < 0 {
		i += 60
	}
	if l.secs[i] != sec {
		l.secs[i], l.window[i] = sec, 0
	}
	l.window[i]++
	total := 0
	for j := range l.window {
		if sec-l.secs[j] < 60 {
			total += l.window[j]
		}
	}
	return total
}

func (l *localLimits) spend(sig string, now, expires time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.used) >= altchaMaxUsed {
		for s, exp := range l.used {
			if now.After(exp) {
				delete(l.used, s)
			}
		}
	}
	if _, spent := l.used[sig]; spent || len(l.used) >= altchaMaxUsed {
		return false
	}
	l.used[sig] = expires
	return true
}
