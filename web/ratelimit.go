package web

import (
	"math"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits of the per-IP signup limiter.
const (
	// limiterIdle is how long an entry may sit unused before it is dropped.
	// A bucket that refills perMinute tokens a minute is full again after a
	// minute, so dropping it then changes nothing.
	limiterIdle = time.Minute
	// limiterMaxEntries caps the memory a flood of distinct addresses can
	// take; past it, new addresses are refused until the next sweep.
	limiterMaxEntries = 1 << 20
)

// ipLimiter is a token bucket per client IP (per /64 for IPv6, which one
// household usually holds whole), kept in a map that sweeps itself.
type ipLimiter struct {
	perMinute int
	// key maps a client IP to the bucket it draws from.
	key func(ip string) string

	mu        sync.Mutex
	entries   map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, key: limiterKey, entries: make(map[string]*limiterEntry)}
}

// newSubnetLimiter is an ipLimiter with one bucket per subnet (subnetKey).
func newSubnetLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, key: subnetKey, entries: make(map[string]*limiterEntry)}
}

// allow takes one token for ip at now. When none is left it reports how long
// until one is. A nil limiter (a limit turned off) allows everything.
func (l *ipLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	key := l.key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	e := l.entries[key]
	if e == nil {
		if len(l.entries) >= limiterMaxEntries {
			return false, limiterIdle
		}
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.entries[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, limiterIdle
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops idle entries, at most once per limiterIdle.
func (l *ipLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < limiterIdle {
		return
	}
	l.lastSweep = now
	for k, e := range l.entries {
		if now.Sub(e.seen) >= limiterIdle {
			delete(l.entries, k)
		}
	}
}

// size is the number of addresses tracked.
func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

func limiterKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
