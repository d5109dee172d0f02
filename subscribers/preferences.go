package subscribers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"herald"
)

// Activity log event kinds written by the preference page. Unsubscribing and
// coming back from it use EventUnsubscribe and EventResubscribe with the
// detail "preferences".
const (
	EventNewsletters = "newsletters" // detail: "added weekly; removed daily"
	EventNameChange  = "name_change" // detail: "set", "changed" or "cleared", never the name
	EventPause       = "pause"       // detail: "until 2026-12-06"
	EventResume      = "resume"      // a pause ended early by the reader
)

// sourcePreferences is the detail of the unsubscribe and resubscribe events
// the preference page writes.
const sourcePreferences = "preferences"

// PreferencesUpdate is everything the preference page's form says. It
// replaces the reader's choices as a whole: a field left empty is an empty
// choice, not "unchanged".
type PreferencesUpdate struct {
	// Newsletters are the newsletter ids the reader wants. None at all
	// means the reader wants nothing: they are unsubscribed, exactly as with
	// UnsubscribeAll. Unticking every box and saving says that plainly
	// enough; answering it with an error would make the reader look for
	// another button to do what they just did.
	Newsletters []string
	// Name is the reader's name; empty clears it.
	Name string
	// PauseUntil stops digests until that time. Zero, or a time not in the
	// future, means not paused; at most MaxPauseUntil(now).
	PauseUntil time.Time
	// UnsubscribeAll stops all mail and ignores every other field (the
	// "Unsubscribe from everything" button posts nothing else).
	UnsubscribeAll bool
}

// MaxPauseUntil is the furthest a reader may pause their newsletters to,
// from now: one year.
func MaxPauseUntil(now time.Time) time.Time { return now.AddDate(1, 0, 0) }

// Paused reports whether the subscriber's digests are paused at now.
func (s *Subscriber) Paused(now time.Time) bool { return s.PausedUntil.After(now) }

// CheckPreferencesToken returns the subscriber a preferences token names,
// changing nothing: ENOTFOUND when forged or the subscriber is gone, EGONE
// when expired.
func (s *Service) CheckPreferencesToken(ctx context.Context, token string) (*Subscriber, error) {
	id, err := s.signer.verify(token, signedPreferences, s.now())
	if err != nil {
		return nil, err
	}
	sub, err := s.store.FindSubscriberByID(ctx, id)
	if herald.IsCode(err, herald.ENOTFOUND) {
		return nil, notValidLink()
	} else if err != nil {
		return nil, fmt.Errorf("check preferences token: %w", err)
	}
	return sub, nil
}

func notValidLink() error {
	return herald.Errorf(herald.ENOTFOUND, "This link is not valid. Please use the link from your most recent email.")
}

// UpdatePreferences applies what a reader chose on their preference page,
// in one transaction, and returns the subscriber as saved. Each change
// (newsletters added or removed, name, pause, leaving, coming back) writes
// one activity log event.
//
// The token is the reader's authority: it was mailed to their address, so a
// reader who unsubscribed and ticks newsletters again is active again at
// once (an EventResubscribe records it), provided they confirmed their
// address once; a reader who never did gets ECONFLICT and signs up again,
// so double opt-in stays the gate to a first subscription. Pending readers
// keep their status: choices are saved, the confirmation link still
// decides. Mail to a bounced or complained address is never restarted from
// a form: ECONFLICT, except that UnsubscribeAll is a harmless no-op.
//
// Unknown newsletter ids are an EINVALID error whose message names them, a
// name NormalizeName refuses is EINVALID, a pause beyond MaxPauseUntil is
// EINVALID; nothing is written then. A forged token is ENOTFOUND, an
// expired one EGONE.
func (s *Service) UpdatePreferences(ctx context.Context, token string, p PreferencesUpdate) (*Subscriber, error) {
	now := s.now()
	id, err := s.signer.verify(token, signedPreferences, now)
	if err != nil {
		return nil, err
	}
	var (
		lists []string
		name  string
		pause time.Time
	)
	if !p.UnsubscribeAll {
		if len(p.Newsletters) > 0 {
			if lists, err = s.checkNewsletters(p.Newsletters); err != nil {
				return nil, err
			}
		}
		if name, err = NormalizeName(p.Name); err != nil {
			return nil, err
		}
		if pause, err = checkPause(p.PauseUntil, now); err != nil {
			return nil, err
		}
	}
	leave := p.UnsubscribeAll || len(lists) == 0

	var (
		sub    *Subscriber
		events []Event
	)
	err = s.store.Update(ctx, func(tx Tx) error {
		events = events[:0]
		var err error
		sub, err = tx.SubscriberByID(id)
		if herald.IsCode(err, herald.ENOTFOUND) {
			return notValidLink()
		} else if err != nil {
			return err
		}
		add := func(kind, detail string) {
			events = append(events, Event{SubscriberID: sub.ID, At: now, Kind: kind, Detail: clip(detail, 200)})
		}
		switch sub.Status {
		case StatusBounced, StatusComplained:
			if p.UnsubscribeAll {
				return nil // nothing is sent to this address already
			}
			return herald.Errorf(herald.ECONFLICT, "We no longer send newsletters to this address, so its preferences cannot be changed here. To receive newsletters again, please sign up again.")
		case StatusUnsubscribed:
			if !leave && sub.ConfirmedAt.IsZero() {
				return herald.Errorf(herald.ECONFLICT, "This subscription was never confirmed. Please sign up again and use the link in the confirmation email.")
			}
		}

		if !p.UnsubscribeAll && name != sub.Name {
			switch {
			case sub.Name == "":
				add(EventNameChange, "set")
			case name == "":
				add(EventNameChange, "cleared")
			default:
				add(EventNameChange, "changed")
			}
			sub.Name = name
		}
		if leave {
			// The newsletters are kept as they were, so that the reader
			// can come back to the same choice in one click; the status
			// alone stops the mail. A pause left running is moot.
			if sub.Status == StatusActive || sub.Status == StatusPending {
				sub.Status = StatusUnsubscribed
				add(EventUnsubscribe, sourcePreferences)
			}
		} else {
			if d := newsletterChanges(sub.Newsletters, lists); d != "" {
				add(EventNewsletters, d)
			}
			sub.Newsletters = lists
			if sub.Status == StatusUnsubscribed {
				sub.Status = StatusActive
				add(EventResubscribe, sourcePreferences+": "+strings.Join(lists, " "))
			}
			wasPaused := sub.Paused(now)
			switch {
			case !pause.IsZero() && !pause.Equal(sub.PausedUntil):
				add(EventPause, "until "+pause.Format(time.DateOnly))
			case pause.IsZero() && wasPaused:
				add(EventResume, "")
			}
			sub.PausedUntil = pause
		}
		if len(events) == 0 {
			return nil
		}
		sub.UpdatedAt = now
		if err := tx.UpdateSubscriber(sub); err != nil {
			return err
		}
		for _, e := range events {
			if err := tx.AddEvent(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if herald.ErrorCode(err) == herald.EINTERNAL {
			return nil, fmt.Errorf("update preferences: %w", err)
		}
		return nil, err
	}
	if len(events) > 0 {
		kinds := make([]string, len(events))
		for i, e := range events {
			kinds[i] = e.Kind
		}
		s.opts.Logger.InfoContext(ctx, "preferences updated", "subscriber_id", sub.ID, "changes", strings.Join(kinds, ","))
	}
	return sub, nil
}

// checkPause returns the pause end to store: zero when until is zero or not
// in the future, an EINVALID error when it is beyond MaxPauseUntil.
func checkPause(until, now time.Time) (time.Time, error) {
	if until.IsZero() || !until.After(now) {
		return time.Time{}, nil
	}
	if latest := MaxPauseUntil(now); until.After(latest) {
		return time.Time{}, herald.Errorf(herald.EINVALID, "Newsletters can be paused for at most a year: choose a date no later than %s.", latest.Format("2 January 2006"))
	}
	// The store keeps milliseconds; compare like with like next time.
	return until.UTC().Truncate(time.Millisecond), nil
}

// newsletterChanges describes the step from one sorted list of newsletter
// ids to another, e.g. "added weekly; removed daily"; "" when equal.
func newsletterChanges(before, after []string) string {
	var added, removed []string
	for _, id := range after {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	for _, id := range before {
		if !slices.Contains(after, id) {
			removed = append(removed, id)
		}
	}
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "added "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed "+strings.Join(removed, ", "))
	}
	return strings.Join(parts, "; ")
}
