package storetest

import (
	"testing"
	"time"

	"herald/subscribers"
)

// testPausedUntil: a reader's pause is stored on create, changed and
// cleared on update, and read back in UTC by every lookup.
func testPausedUntil(t *testing.T, s Store) {
	ctx := t.Context()
	sub := newSubscriber("paused@example.org", subscribers.StatusActive, "daily")
	sub.PausedUntil = at(14 * 24 * time.Hour).In(time.FixedZone("EST", -5*3600))
	create(t, s, sub)
	check := func(want time.Time) {
		t.Helper()
		got, err := s.FindSubscriberByID(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.PausedUntil.Equal(want) || !want.IsZero() && got.PausedUntil.Location() != time.UTC {
			t.Fatalf("PausedUntil = %v, want %v in UTC", got.PausedUntil, want)
		}
		update(t, s, func(tx subscribers.Tx) error {
			byEmail, err := tx.SubscriberByEmail(sub.Email)
			if err == nil && !byEmail.PausedUntil.Equal(want) {
				t.Errorf("SubscriberByEmail: PausedUntil = %v, want %v", byEmail.PausedUntil, want)
			}
			return err
		})
	}
	check(at(14 * 24 * time.Hour))

	update(t, s, func(tx subscribers.Tx) error {
		got, err := tx.SubscriberByID(sub.ID)
		if err != nil {
			return err
		}
		got.PausedUntil = at(30 * 24 * time.Hour)
		return tx.UpdateSubscriber(got)
	})
	check(at(30 * 24 * time.Hour))

	update(t, s, func(tx subscribers.Tx) error {
		got, err := tx.SubscriberByID(sub.ID)
		if err != nil {
			return err
		}
		got.PausedUntil = time.Time{}
		return tx.UpdateSubscriber(got)
	})
	check(time.Time{})
}
