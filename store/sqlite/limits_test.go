package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald/subscribers"
)

// The admin API shows at most 500 subscribers a page and asks for 501 to
// know whether another page follows: the store must return them all.
func TestFindSubscribersServesTheAPIsLargestPagePlusOne(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	if err := db.Update(ctx, func(tx subscribers.Tx) error {
		for i := 0; i < 600; i++ {
			s := &subscribers.Subscriber{Email: fmt.Sprintf("p%03d@example.org", i), Status: subscribers.StatusActive, CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateSubscriber(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindSubscribers(ctx, subscribers.Filter{Limit: 501})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 501 {
		t.Errorf("FindSubscribers(limit 501) = %d rows, want 501", len(got))
	}
}
