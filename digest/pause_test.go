package digest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"herald/subscribers"
)

// A paused reader gets no issue while paused, and the first issue after the
// pause ends brings what is new since their last one (capped as ever).
func TestPausedReaderSkippedThenCatchesUp(t *testing.T) {
	e := newEnv(t)
	e.runDue(t)
	e.clock.Set(start.Add(time.Minute))
	e.articles(t, start.Add(-2*time.Hour), start.Add(-time.Hour))
	rs := e.readers(t, 2)
	active, paused := rs[0], rs[1]

	e.clock.Set(slotAt(0))
	e.runDue(t)
	e.deliver(t) // both get the first issue

	// The second reader pauses for three days.
	if err := e.db.Update(context.Background(), func(tx subscribers.Tx) error {
		s, err := tx.SubscriberByID(paused)
		if err != nil {
			return err
		}
		s.PausedUntil = slotAt(3).Add(-time.Hour)
		return tx.UpdateSubscriber(s)
	}); err != nil {
		t.Fatal(err)
	}

	var during []int64
	for day := 1; day <= 2; day++ {
		e.clock.Set(slotAt(day).Add(-3 * time.Hour))
		during = append(during, e.articles(t, slotAt(day).Add(-4*time.Hour))...)
		e.clock.Set(slotAt(day))
		e.runDue(t)
		got := e.deliver(t)
		if _, ok := got[paused]; ok {
			t.Fatalf("day %d: the paused reader got %v", day, got[paused])
		}
		if len(got[active]) != 1 {
			t.Fatalf("day %d: the active reader got %v, want one new article", day, got[active])
		}
	}

	e.clock.Set(slotAt(3))
	e.runDue(t)
	got := e.deliver(t)
	slices.Reverse(during) // newest first
	if !slices.Equal(got[paused], during) {
		t.Errorf("back from the pause: got %v, want what was new meanwhile %v", got[paused], during)
	}
	if _, ok := got[active]; ok {
		t.Errorf("the active reader got %v with nothing new", got[active])
	}
}
