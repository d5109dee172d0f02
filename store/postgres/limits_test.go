package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/store/postgres"
)

// hit1 counts one event against one counter.
func hit1(ctx context.Context, l *postgres.SignupLimits, kind string, key []byte, limit int, now time.Time) (int, bool, time.Duration, error) {
	refused, n, wait, err := l.Hit(ctx, now, []string{kind}, [][]byte{key}, []int{limit})
	return n, refused < 0, wait, err
}

func TestSignupLimitsHit(t *testing.T) {
	db := open(t)
	l := postgres.NewSignupLimits(db, nil)
	ctx := t.Context()
	// 05:06:00 plus 10 s: a sixth of the minute gone.
	now := time.Date(2026, 3, 4, 5, 6, 10, 0, time.UTC)
	key := []byte("client-a")

	for i := range 3 {
		n, ok, _, err := hit1(ctx, l, "ip", key, 3, now)
		if err != nil || !ok || n != i+1 {
			t.Fatalf("hit %d = %d, %v, %v; want %d, true", i+1, n, ok, err, i+1)
		}
	}
	n, ok, wait, err := hit1(ctx, l, "ip", key, 3, now)
	if err != nil || ok || n != 3 {
		t.Fatalf("fourth hit = %d, %v, %v; want 3, refused", n, ok, err)
	}
	// Refused this minute; in the next one the three weigh 3 * (1 - g),
	// under 3 as soon as the next minute starts.
	if wait < 50*time.Second || wait > 51*time.Second {
		t.Errorf("wait = %v, want about 50s (the rest of the minute)", wait)
	}
	// Refusals are not counted.
	for range 5 {
		hit1(ctx, l, "ip", key, 3, now)
	}
	// Other keys and kinds have counters of their own.
	if _, ok, _, err := hit1(ctx, l, "ip", []byte("client-b"), 3, now); !ok || err != nil {
		t.Errorf("another key refused: %v", err)
	}
	if _, ok, _, err := hit1(ctx, l, "subnet", key, 3, now); !ok || err != nil {
		t.Errorf("another kind refused: %v", err)
	}

	// 20 s into the next minute, the three weigh 3 * 40/60 = 2: one more.
	next := now.Add(70 * time.Second)
	if n, ok, _, err := hit1(ctx, l, "ip", key, 3, next); !ok || err != nil || n != 3 {
		t.Fatalf("hit in the next minute = %d, %v, %v; want 3, true", n, ok, err)
	}
	_, ok, wait, _ = hit1(ctx, l, "ip", key, 3, next)
	if ok {
		t.Fatal("a second hit 20s into the next minute was allowed")
	}
	// 1 this minute + 3 * (1 - f) < 3 once f > 1/3: 20 s into the minute,
	// so no wait at all is wrong and a whole minute too long.
	if wait <= 0 || wait > 40*time.Second {
		t.Errorf("wait = %v, want at most 40s", wait)
	}
	// Two minutes on, the old counts are gone.
	if _, ok, _, _ := hit1(ctx, l, "ip", key, 3, now.Add(3*time.Minute)); !ok {
		t.Error("refused two minutes later")
	}

	// Without a limit every hit counts and n grows. (At the time of the
	// last hit: an earlier one may be purged by then.)
	for i := range 5 {
		n, ok, _, err := hit1(ctx, l, "rate", nil, 0, now.Add(3*time.Minute))
		if err != nil || !ok || n != i+1 {
			t.Fatalf("rate hit %d = %d, %v, %v", i+1, n, ok, err)
		}
	}
}

func TestSignupLimitsAdd(t *testing.T) {
	db := open(t)
	l := postgres.NewSignupLimits(db, nil)
	ctx := t.Context()
	now := time.Date(2026, 3, 4, 5, 6, 10, 0, time.UTC)
	for _, step := range []struct {
		at        time.Time
		add, want int
	}{
		{now, 3, 3},
		{now, 2, 5},
		// Half a minute into the next: 1 + 5 * 1/2, rounded down.
		{now.Add(80 * time.Second), 1, 3},
	} {
		if got, err := l.Add(ctx, step.at, "rate", nil, step.add); err != nil || got != step.want {
			t.Errorf("Add(%d) at %v = %d, %v; want %d", step.add, step.at, got, err, step.want)
		}
	}
}

// TestSignupLimitsChain counts against three counters in one call: each
// counts until one refuses, and from there none does.
func TestSignupLimitsChain(t *testing.T) {
	db := open(t)
	l := postgres.NewSignupLimits(db, nil)
	ctx := t.Context()
	now := time.Date(2026, 3, 4, 5, 6, 10, 0, time.UTC)
	kinds := []string{"ip", "subnet", "rate"}
	take := func(ip, subnet string) (int, int) {
		t.Helper()
		refused, n, wait, err := l.Hit(ctx, now, kinds, [][]byte{[]byte(ip), []byte(subnet), nil}, []int{2, 3, 0})
		if err != nil {
			t.Fatal(err)
		}
		if (refused >= 0) != (wait > 0) {
			t.Errorf("refused %d with a wait of %v", refused, wait)
		}
		return refused, n
	}
	for i, want := range []struct{ refused, n int }{
		{-1, 1}, {-1, 2}, // a.1 twice; n is the rate's
		{0, 2},  // a.1 again: the per-IP limit, nothing else counted
		{-1, 3}, // a.2: the subnet's third
		{1, 3},  // a.3: the subnet is full
		{-1, 4}, // b.1: another subnet
	} {
		ip := []string{"a.1", "a.1", "a.1", "a.2", "a.3", "b.1"}[i]
		refused, n := take(ip, ip[:1])
		if refused != want.refused || n != want.n {
			t.Errorf("signup %d from %s: refused %d, n %d; want %d, %d", i+1, ip, refused, n, want.refused, want.n)
		}
	}
	// a.3 was refused by the subnet, but counted by its own limit first.
	if _, ok, _, _ := hit1(ctx, l, "ip", []byte("a.3"), 1, now); ok {
		t.Error("a.3's own counter did not count the attempt the subnet refused")
	}
	if _, _, _, err := l.Hit(ctx, now, nil, nil, nil); err == nil {
		t.Error("no counters: no error")
	}
}

// TestSignupLimitsConcurrent hits one counter from two instances (two
// pools) at once: exactly the limit gets through.
func TestSignupLimitsConcurrent(t *testing.T) {
	schema := newSchema(t)
	a, b := openIn(t, schema), openIn(t, schema)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)
	limits := []*postgres.SignupLimits{postgres.NewSignupLimits(a, nil), postgres.NewSignupLimits(b, nil)}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, ok, _, err := hit1(context.Background(), limits[i%2], "ip", []byte("k"), 7, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 7 {
		t.Errorf("allowed %d of 40, want 7", got)
	}
}

func TestSignupLimitsAttackAndSpend(t *testing.T) {
	db := open(t)
	l := postgres.NewSignupLimits(db, nil)
	ctx := t.Context()
	if until, err := l.AttackUntil(ctx); err != nil || !until.IsZero() {
		t.Fatalf("AttackUntil = %v, %v; want zero", until, err)
	}
	t1 := time.Date(2026, 3, 4, 5, 16, 0, 0, time.UTC)
	if got, err := l.ExtendAttack(ctx, t1); err != nil || !got.Equal(t1) {
		t.Fatalf("ExtendAttack = %v, %v", got, err)
	}
	// An earlier end does not shorten it.
	if got, err := l.ExtendAttack(ctx, t1.Add(-time.Minute)); err != nil || !got.Equal(t1) {
		t.Fatalf("ExtendAttack earlier = %v, %v; want %v", got, err, t1)
	}
	if until, err := l.AttackUntil(ctx); err != nil || !until.Equal(t1) {
		t.Fatalf("AttackUntil = %v, %v; want %v", until, err, t1)
	}

	expires := time.Now().Add(10 * time.Minute)
	if ok, err := l.Spend(ctx, []byte("sig-1"), expires); !ok || err != nil {
		t.Fatalf("first Spend = %v, %v", ok, err)
	}
	if ok, err := l.Spend(ctx, []byte("sig-1"), expires); ok || err != nil {
		t.Fatalf("second Spend = %v, %v; want false", ok, err)
	}
	// Purge drops expired solutions and dead counters, and keeps the rest.
	if _, err := l.Spend(ctx, []byte("sig-old"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hit1(ctx, l, "ip", []byte("k"), 0, now.Add(-3*time.Minute))
	hit1(ctx, l, "ip", []byte("k"), 0, now)
	if err := l.Purge(ctx, now); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM signup_spent`:    1,
		`SELECT count(*) FROM signup_counters`: 1,
	} {
		if got, err := db.QueryInt(ctx, q); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", q, got, err, want)
		}
	}
	// An expired solution, purged, could be spent again, but its challenge
	// has expired by then, which the web layer checks first.
	if ok, _ := l.Spend(ctx, []byte("sig-1"), expires); ok {
		t.Error("an unexpired solution was spent twice after a purge")
	}
}

// BenchmarkSignupLimits measures the shared limits' cost on one signup
// against its floor, one round trip (SELECT 1) on the same pool:
//
//	go test ./store/postgres/ -run '^$' -bench SignupLimits -count 5
//
// "hit" is one check (the per-IP limit) on one client's counter; "signup"
// is what a signup costs with both limits on: two checks (per IP, per
// subnet, a new client and subnet each time) in one statement; "rate" is
// the addition to attack mode's shared rate each instance makes once a
// second.
func BenchmarkSignupLimits(b *testing.B) {
	db := open(b)
	l := postgres.NewSignupLimits(db, nil)
	ctx := context.Background()
	now := time.Now()
	b.Run("select1", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.QueryInt(ctx, `SELECT 1`); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := hit1(ctx, l, "ip", []byte("client"), 0, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signup", func(b *testing.B) {
		var i int
		for b.Loop() {
			i++
			ip := []byte{byte(i), byte(i >> 8), byte(i >> 16), 1}
			refused, _, _, err := l.Hit(ctx, now, []string{"ip", "subnet"}, [][]byte{ip, ip[:3]}, []int{1000, 1000})
			if err != nil || refused >= 0 {
				b.Fatal(refused, err)
			}
		}
	})
	b.Run("rate", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.Add(ctx, now, "rate", nil, 10); err != nil {
				b.Fatal(err)
			}
		}
	})
}
