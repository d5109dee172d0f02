package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/delivery"
)

// The share of a claim left to less urgent mail: when due messages of more
// than one priority exist, the most urgent of them takes at most
// limit - limit/4 rows of a batch (for limit >= 4), the rest going to the
// other due messages in (priority, id) order; urgent ones fill what the
// others leave.

// mixed queues one message per priority in prios, in that order (so ids
// follow the order), for one subscriber named email; message i is
// "<i>.<email>@test.example".
func mixed(t *testing.T, s Store, email string, prios ...int) {
	t.Helper()
	enqueue(t, s, email, len(prios), prios...)
}

// msgIndex returns i of a message "<i>.<email>@test.example", for a job of
// mixed's subscriber email; -1 for any other message.
func msgIndex(j delivery.Job, email string) int {
	head, ok := strings.CutSuffix(j.MessageID, "."+email+"@test.example")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(head)
	if err != nil {
		return -1
	}
	return i
}

// indexes returns the message indexes of jobs, all of mixed's subscriber
// email.
func indexes(t *testing.T, jobs []delivery.Job, email string) []int {
	t.Helper()
	out := make([]int, len(jobs))
	for k, j := range jobs {
		if out[k] = msgIndex(j, email); out[k] < 0 {
			t.Fatalf("claimed message %q, not one of %s", j.MessageID, email)
		}
	}
	return out
}

// claimDay claims like claim, with a lease of a day: the tests here move
// the clock by an hour and want their own claims to stay leased.
func claimDay(t *testing.T, s Store, owner string, now time.Time, limit int) []delivery.Job {
	t.Helper()
	jobs, err := s.ClaimMessages(t.Context(), owner, now, 24*time.Hour, limit)
	if err != nil {
		t.Fatalf("ClaimMessages(%s): %v", owner, err)
	}
	return jobs
}

// repeat returns n copies of p.
func repeat(p, n int) []int { return slices.Repeat([]int{p}, n) }

// span returns the indexes from, from+1, ..., to-1.
func span(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// shareModel is the rule as a reference: given the due messages (index to
// priority; indexes follow ids) it returns the indexes a claim of limit
// takes, ordered by (priority, index).
func shareModel(due map[int]int, limit int) []int {
	all := make([]int, 0, len(due))
	for i := range due {
		all = append(all, i)
	}
	slices.SortFunc(all, func(a, b int) int { return cmp.Or(cmp.Compare(due[a], due[b]), cmp.Compare(a, b)) })
	if len(all) == 0 {
		return nil
	}
	var urgent, others []int
	for _, i := range all {
		if due[i] == due[all[0]] {
			urgent = append(urgent, i)
		} else {
			others = append(others, i)
		}
	}
	u := min(len(urgent), max(limit-limit/4, limit-len(others)))
	o := min(len(others), limit-u)
	return append(urgent[:u:u], others[:o]...)
}

func testClaimShareTwoPriorities(t *testing.T, s Store) {
	// 100 urgent (0) and 10 bulk (10) interleaved: every eleventh is bulk.
	var prios []int
	for range 10 {
		prios = append(prios, repeat(0, 10)...)
		prios = append(prios, 10)
	}
	const email = "two@example.org"
	mixed(t, s, email, prios...)
	jobs := claimDay(t, s, "w", base(), 8)
	// 6 urgent (0..5), then the first 2 bulk (10, 21).
	if got, want := indexes(t, jobs, email), []int{0, 1, 2, 3, 4, 5, 10, 21}; !slices.Equal(got, want) {
		t.Fatalf("claim of 8 took messages %v, want %v", got, want)
	}
	// A batch not a multiple of 4: 10 - 10/4 = 8 urgent, then 2 bulk.
	jobs = claimDay(t, s, "w", base(), 10)
	if got, want := indexes(t, jobs, email), []int{6, 7, 8, 9, 11, 12, 13, 14, 32, 43}; !slices.Equal(got, want) {
		t.Fatalf("claim of 10 took messages %v, want %v", got, want)
	}
	// Below 4 the order is as it always was: urgent first.
	jobs = claimDay(t, s, "w", base(), 3)
	if got, want := indexes(t, jobs, email), []int{15, 16, 17}; !slices.Equal(got, want) {
		t.Fatalf("claim of 3 took messages %v, want %v", got, want)
	}
	wantCounts(t, s, map[string]int{"sending": 21, "queued": 89})
}

func testClaimShareFill(t *testing.T, s Store) {
	// 100 urgent, then 1 bulk, then 3 bulk that are not due yet.
	const email = "fill@example.org"
	mixed(t, s, email, append(append(repeat(1, 100), 5), 5, 5, 5)...)
	later := claim(t, s, "setup", base(), 1000)
	if len(later) != 104 {
		t.Fatalf("setup claim took %d, want 104", len(later))
	}
	var back []delivery.Result
	for _, j := range later {
		next := base()
		if msgIndex(j, email) > 100 {
			next = at(time.Hour)
		}
		back = append(back, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRelease, At: base(), NextAttemptAt: next})
	}
	settle(t, s, "setup", back...)

	// Fewer others than the share: urgent ones fill the batch.
	jobs := claimDay(t, s, "w", base(), 8)
	if got, want := indexes(t, jobs, email), append(span(0, 7), 100); !slices.Equal(got, want) {
		t.Fatalf("claim of 8 took messages %v, want %v", got, want)
	}
	// Only urgent due (the bulk ones wait for their hour): all 8 urgent.
	jobs = claimDay(t, s, "w", base(), 8)
	if got, want := indexes(t, jobs, email), span(7, 15); !slices.Equal(got, want) {
		t.Fatalf("claim of 8 with only urgent due took messages %v, want %v", got, want)
	}
	// An hour on, the three bulk ones are due again and take their share.
	jobs = claimDay(t, s, "w", at(time.Hour), 8)
	if got, want := indexes(t, jobs, email), []int{15, 16, 17, 18, 19, 20, 101, 102}; !slices.Equal(got, want) {
		t.Fatalf("claim of 8 an hour on took messages %v, want %v", got, want)
	}
}

func testClaimShareThreePriorities(t *testing.T, s Store) {
	// 0 is not due (held back an hour), so 1 is the most urgent due
	// priority; 3 and 7 share the rest in (priority, id) order.
	const email = "three@example.org"
	var prios []int
	prios = append(prios, repeat(0, 4)...)  // 0..3
	prios = append(prios, repeat(7, 5)...)  // 4..8
	prios = append(prios, repeat(1, 50)...) // 9..58
	prios = append(prios, 3)                // 59
	prios = append(prios, repeat(1, 50)...) // 60..109
	mixed(t, s, email, prios...)
	held := append(claim(t, s, "setup", base(), 3), claim(t, s, "setup", base(), 1)...)
	if got := indexes(t, held, email); !slices.Equal(got, span(0, 4)) {
		t.Fatalf("setup claim took %v, want 0..3", got)
	}
	var back []delivery.Result
	for _, j := range held {
		back = append(back, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRelease, At: base(), NextAttemptAt: at(time.Hour)})
	}
	settle(t, s, "setup", back...)

	// 12 - 12/4 = 9 urgent, then the one at 3, then two at 7.
	jobs := claimDay(t, s, "w", base(), 12)
	if got, want := indexes(t, jobs, email), append(span(9, 18), 59, 4, 5); !slices.Equal(got, want) {
		t.Fatalf("claim of 12 took messages %v, want %v", got, want)
	}
	// An hour on, 0 is due again and is now the most urgent: it has only
	// four, so 1 and 7 fill the batch in (priority, id) order.
	jobs = claimDay(t, s, "w", at(time.Hour), 12)
	if got, want := indexes(t, jobs, email), append(span(0, 4), span(18, 26)...); !slices.Equal(got, want) {
		t.Fatalf("claim of 12 an hour on took messages %v, want %v", got, want)
	}
}

func testClaimShareExpired(t *testing.T, s Store) {
	// 3 urgent and 4 bulk are claimed and their lease runs out; then 100
	// urgent and 2 bulk are queued behind them.
	const email = "expired@example.org"
	mixed(t, s, email, append(append(append(repeat(0, 3), repeat(9, 4)...), repeat(0, 100)...), 9, 9)...)
	first := claim(t, s, "lost", base(), 1000)
	var back []delivery.Result
	for _, j := range first {
		if i := msgIndex(j, email); i >= 7 {
			back = append(back, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRelease, At: base(), NextAttemptAt: base()})
		}
	}
	settle(t, s, "lost", back...)
	wantCounts(t, s, map[string]int{"sending": 7, "queued": 102})

	// Two minutes on the leases of 0..6 have expired: urgent 0..2 (expired)
	// and 7..9 (queued), then the expired bulk 3, 4.
	jobs := claimDay(t, s, "w", at(2*time.Minute), 8)
	if got, want := indexes(t, jobs, email), []int{0, 1, 2, 7, 8, 9, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("claim of 8 took messages %v, want %v", got, want)
	}
	for _, j := range jobs {
		want := 1 // released, which gave the first attempt back
		if msgIndex(j, email) < 7 {
			want = 2 // its first lease expired
		}
		if j.Attempts != want {
			t.Fatalf("message %d attempts %d, want %d", msgIndex(j, email), j.Attempts, want)
		}
	}
	// Next: urgent 10..15, then expired bulk 5, 6 (lower ids than the
	// queued bulk 107, 108).
	jobs = claimDay(t, s, "w", at(2*time.Minute), 8)
	if got, want := indexes(t, jobs, email), append(span(10, 16), 5, 6); !slices.Equal(got, want) {
		t.Fatalf("second claim of 8 took messages %v, want %v", got, want)
	}
	// Then the queued bulk.
	jobs = claimDay(t, s, "w", at(2*time.Minute), 8)
	if got, want := indexes(t, jobs, email), append(span(16, 22), 107, 108); !slices.Equal(got, want) {
		t.Fatalf("third claim of 8 took messages %v, want %v", got, want)
	}
}

func testClaimShareDrain(t *testing.T, s Store) {
	// Four priorities, some messages held back and some leases expiring,
	// drained by claims of 8: every batch follows the rule and every
	// message is claimed exactly once.
	const email = "drain@example.org"
	var prios []int
	for i := range 240 {
		switch {
		case i%9 == 4:
			prios = append(prios, 20)
		case i%13 == 7:
			prios = append(prios, 5)
		case i%31 == 3:
			prios = append(prios, 50)
		default:
			prios = append(prios, 0)
		}
	}
	mixed(t, s, email, prios...)
	// A third of the messages (every third) wait a minute; of those, the
	// ones at 20 are left leased to a worker that vanishes, until base+1m.
	// The rounds lease for a day, so that only those leases expire.
	setup := claim(t, s, "gone", base(), 1000)
	if len(setup) != len(prios) {
		t.Fatalf("setup claim took %d, want %d", len(setup), len(prios))
	}
	var back []delivery.Result
	for _, j := range setup {
		i := msgIndex(j, email)
		switch {
		case i%3 == 0 && prios[i] == 20:
		case i%3 == 0:
			back = append(back, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRelease, At: base(), NextAttemptAt: at(time.Minute)})
		default:
			back = append(back, delivery.Result{ID: j.ID, Outcome: delivery.OutcomeRelease, At: base(), NextAttemptAt: base()})
		}
	}
	settle(t, s, "gone", back...)

	seen := map[int]int{}
	due := map[int]int{}
	now := base()
	for i, p := range prios {
		if i%3 != 0 {
			due[i] = p
		}
	}
	for round := 0; ; round++ {
		if round > 100 {
			t.Fatalf("still claiming after %d rounds", round)
		}
		if round == 12 { // the waiting ones come due, the lost leases expire
			now = at(2 * time.Minute)
			for i, p := range prios {
				if i%3 == 0 {
					due[i] = p
				}
			}
		}
		want := shareModel(due, 8)
		got := indexes(t, claimDay(t, s, fmt.Sprintf("w%d", round), now, 8), email)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: claim of 8 took %v, want %v", round, got, want)
		}
		for _, i := range got {
			seen[i]++
			delete(due, i)
		}
		if len(got) == 0 && round >= 12 {
			break
		}
	}
	for i := range prios {
		if seen[i] != 1 {
			t.Fatalf("message %d claimed %d times", i, seen[i])
		}
	}
	wantCounts(t, s, map[string]int{"sending": len(prios)})
}
