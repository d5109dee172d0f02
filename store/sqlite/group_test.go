package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"herald"
	"herald/subscribers"
)

// TestGroupCommitIsolatesFailures: write transactions that share one commit
// keep their own outcome. Half of them insert a subscriber and then fail;
// their inserts must vanish while the other half's stay.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	errPlanned := errors.New("planned failure")
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = db.Update(ctx, func(tx subscribers.Tx) error {
				s := &subscribers.Subscriber{Email: fmt.Sprintf("g%d@example.org", i), Status: subscribers.StatusPending, Newsletters: []string{"daily"}, CreatedAt: now, UpdatedAt: now}
				if err := tx.CreateSubscriber(s); err != nil {
					return err
				}
				if i%2 == 1 {
					return errPlanned
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 && !errors.Is(err, errPlanned) {
			t.Errorf("write %d: %v, want the planned failure", i, err)
		}
		if i%2 == 0 && err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	subs, err := db.FindSubscribers(ctx, subscribers.Filter{Query: "g", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != n/2 {
		t.Fatalf("%d subscribers stored, want %d", len(subs), n/2)
	}
	for _, s := range subs {
		var i int
		fmt.Sscanf(s.Email, "g%d@", &i)
		if i%2 == 1 {
			t.Errorf("the failed write %d left its subscriber behind", i)
		}
	}

	// A conflict inside a group is that writer's error alone.
	err = db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.CreateSubscriber(&subscribers.Subscriber{Email: "g0@example.org", Status: subscribers.StatusPending, CreatedAt: now, UpdatedAt: now})
	})
	if !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("duplicate: %v, want conflict", err)
	}
}

// TestWriteAfterClose answers instead of hanging.
func TestWriteAfterClose(t *testing.T) {
	db := open(t)
	db.Close()
	err := db.Update(context.Background(), func(subscribers.Tx) error { return nil })
	if !herald.IsCode(err, herald.EUNAVAILABLE) {
		t.Errorf("write after close: %v, want unavailable", err)
	}
}

// A panic inside one write transaction fails that transaction alone; the
// write loop lives on and serves the next writers.
func TestGroupCommitSurvivesAPanic(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	err := db.Update(ctx, func(tx subscribers.Tx) error {
		if err := tx.CreateSubscriber(&subscribers.Subscriber{Email: "doomed@example.org", Status: subscribers.StatusPending, CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		panic("write transaction exploded")
	})
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Update with a panic = %v, want an error saying so", err)
	}
	err = db.Update(ctx, func(tx subscribers.Tx) error {
		return tx.CreateSubscriber(&subscribers.Subscriber{Email: "after@example.org", Status: subscribers.StatusPending, CreatedAt: now, UpdatedAt: now})
	})
	if err != nil {
		t.Fatalf("the next write after a panic: %v", err)
	}
	subs, err := db.FindSubscribers(ctx, subscribers.Filter{Limit: 10})
	if err != nil || len(subs) != 1 || subs[0].Email != "after@example.org" {
		t.Errorf("stored %+v, %v; want only after@example.org", subs, err)
	}
}
