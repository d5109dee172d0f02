package subscribers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"herald"
	"herald/subscribers"
)

// events returns the subscriber's activity log as "kind detail" lines.
func (e *env) events(t *testing.T, id int64) []string {
	t.Helper()
	evs, err := e.db.SubscriberEvents(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, strings.TrimSpace(ev.Kind+" "+ev.Detail))
	}
	return out
}

// newEvents returns the events written since the log had n lines.
func (e *env) newEvents(t *testing.T, id int64, n int) []string {
	t.Helper()
	return e.events(t, id)[n:]
}

func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func (e *env) byID(t *testing.T, id int64) *subscribers.Subscriber {
	t.Helper()
	sub, err := e.db.FindSubscriberByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestCheckPreferencesToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "reader@example.org")
	tok := e.svc.PreferencesToken(sub.ID)
	n := len(e.events(t, sub.ID))

	got, err := e.svc.CheckPreferencesToken(ctx, tok)
	if err != nil || got.ID != sub.ID || got.Email != "reader@example.org" {
		t.Fatalf("check = %+v, %v", got, err)
	}
	wantEvents(t, e.newEvents(t, sub.ID, n))

	for _, bad := range []string{"", "forged", tok + "x", e.svc.UnsubscribeToken(sub.ID), e.svc.PreferencesToken(sub.ID + 1000)} {
		if _, err := e.svc.CheckPreferencesToken(ctx, bad); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("CheckPreferencesToken(%q) = %v, want not_found", bad, err)
		}
		if _, err := e.svc.UpdatePreferences(ctx, bad, subscribers.PreferencesUpdate{UnsubscribeAll: true}); !herald.IsCode(err, herald.ENOTFOUND) {
			t.Errorf("UpdatePreferences(%q) = %v, want not_found", bad, err)
		}
	}

	e.now = e.now.Add(subscribers.PreferencesTokenTTL + time.Second)
	if _, err := e.svc.CheckPreferencesToken(ctx, tok); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("expired check: %v, want gone", err)
	}
	if _, err := e.svc.UpdatePreferences(ctx, tok, subscribers.PreferencesUpdate{UnsubscribeAll: true}); !herald.IsCode(err, herald.EGONE) {
		t.Errorf("expired update: %v, want gone", err)
	}
	if s := e.byID(t, sub.ID); s.Status != subscribers.StatusActive {
		t.Errorf("status after expired update = %s, want active", s.Status)
	}
}

func TestUpdatePreferences(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "reader@example.org") // daily weekly, named Ana
	tok := e.svc.PreferencesToken(sub.ID)
	day := func(d int) time.Time { return time.Date(2026, 11, 22+d, 0, 0, 0, 0, time.UTC) }

	steps := []struct {
		name    string
		upd     subscribers.PreferencesUpdate
		status  subscribers.Status
		lists   string
		subName string
		paused  time.Time
		events  []string
	}{
		{"nothing changed",
			subscribers.PreferencesUpdate{Newsletters: []string{"weekly", "daily"}, Name: " Ana "},
			subscribers.StatusActive, "daily weekly", "Ana", time.Time{}, nil},
		{"drop one newsletter, rename",
			subscribers.PreferencesUpdate{Newsletters: []string{"weekly"}, Name: "Ana  Lima"},
			subscribers.StatusActive, "weekly", "Ana Lima", time.Time{}, []string{"name_change changed", "newsletters removed daily"}},
		{"swap newsletters",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana Lima"},
			subscribers.StatusActive, "daily", "Ana Lima", time.Time{}, []string{"newsletters added daily; removed weekly"}},
		{"pause two weeks",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana Lima", PauseUntil: day(14)},
			subscribers.StatusActive, "daily", "Ana Lima", day(14), []string{"pause until 2026-12-06"}},
		{"same pause again",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana Lima", PauseUntil: day(14)},
			subscribers.StatusActive, "daily", "Ana Lima", day(14), nil},
		{"a past date ends the pause",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana Lima", PauseUntil: day(-3)},
			subscribers.StatusActive, "daily", "Ana Lima", time.Time{}, []string{"resume"}},
		{"pause a year to the day",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "", PauseUntil: subscribers.MaxPauseUntil(e.now)},
			subscribers.StatusActive, "daily", "", subscribers.MaxPauseUntil(e.now), []string{"name_change cleared", "pause until 2027-11-22"}},
		{"unpause",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana"},
			subscribers.StatusActive, "daily", "Ana", time.Time{}, []string{"name_change set", "resume"}},
		{"no newsletter unsubscribes, keeping the choice for a comeback",
			subscribers.PreferencesUpdate{Name: "Ana"},
			subscribers.StatusUnsubscribed, "daily", "Ana", time.Time{}, []string{"unsubscribe preferences"}},
		{"resubscribe through the preference link",
			subscribers.PreferencesUpdate{Newsletters: []string{"daily", "weekly"}, Name: "Ana"},
			subscribers.StatusActive, "daily weekly", "Ana", time.Time{}, []string{"newsletters added weekly", "resubscribe preferences: daily weekly"}},
		{"unsubscribe from everything ignores the rest",
			subscribers.PreferencesUpdate{UnsubscribeAll: true, Name: "Someone Else", Newsletters: []string{"weekly"}},
			subscribers.StatusUnsubscribed, "daily weekly", "Ana", time.Time{}, []string{"unsubscribe preferences"}},
		{"unsubscribe twice",
			subscribers.PreferencesUpdate{UnsubscribeAll: true},
			subscribers.StatusUnsubscribed, "daily weekly", "Ana", time.Time{}, nil},
	}
	for _, st := range steps {
		n := len(e.events(t, sub.ID))
		got, err := e.svc.UpdatePreferences(ctx, tok, st.upd)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		stored := e.byID(t, sub.ID)
		for _, s := range []*subscribers.Subscriber{got, stored} {
			if s.Status != st.status || strings.Join(s.Newsletters, " ") != st.lists || s.Name != st.subName || !s.PausedUntil.Equal(st.paused) {
				t.Errorf("%s: subscriber = %+v, want %s [%s] %q paused until %v", st.name, s, st.status, st.lists, st.subName, st.paused)
			}
		}
		wantEvents(t, e.newEvents(t, sub.ID, n), st.events...)
		for _, ev := range e.events(t, sub.ID) {
			if strings.Contains(ev, "@") {
				t.Errorf("%s: event %q holds an address", st.name, ev)
			}
		}
		e.now = e.now.Add(time.Minute)
	}
}

func TestUpdatePreferencesRejectsBadInputAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := activate(t, e, "reader@example.org")
	tok := e.svc.PreferencesToken(sub.ID)
	n := len(e.events(t, sub.ID))

	tests := []struct {
		name  string
		upd   subscribers.PreferencesUpdate
		frags []string
	}{
		{"unknown newsletters", subscribers.PreferencesUpdate{Newsletters: []string{"daily", "sports", "weather"}}, []string{`"sports"`, `"weather"`}},
		{"CRLF in name", subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Eve\r\nBcc: x"}, []string{"name"}},
		{"long name", subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: strings.Repeat("n", 101)}, []string{"name"}},
		{"pause beyond a year", subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, PauseUntil: subscribers.MaxPauseUntil(e.now).Add(time.Millisecond)}, []string{"at most a year", "22 November 2027"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.UpdatePreferences(ctx, tok, tt.upd)
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("err = %v, want invalid", err)
			}
			for _, f := range tt.frags {
				if msg := herald.ErrorMessage(err); !strings.Contains(msg, f) {
					t.Errorf("message %q does not name %q", msg, f)
				}
			}
		})
	}
	got := e.byID(t, sub.ID)
	if got.Status != subscribers.StatusActive || strings.Join(got.Newsletters, " ") != "daily weekly" || got.Name != "Ana" || !got.PausedUntil.IsZero() {
		t.Errorf("subscriber after refused updates = %+v", got)
	}
	wantEvents(t, e.newEvents(t, sub.ID, n))
}

func TestUpdatePreferencesByStatus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	daily := subscribers.PreferencesUpdate{Newsletters: []string{"daily"}, Name: "Ana"}

	// A pending reader keeps waiting for their confirmation.
	if err := e.svc.Signup(ctx, signup("pending@example.org")); err != nil {
		t.Fatal(err)
	}
	pending := e.subscriber(t, "pending@example.org")
	got, err := e.svc.UpdatePreferences(ctx, e.svc.PreferencesToken(pending.ID), daily)
	if err != nil || got.Status != subscribers.StatusPending || strings.Join(got.Newsletters, " ") != "daily" {
		t.Errorf("pending: %+v, %v", got, err)
	}

	// A reader who never confirmed cannot be subscribed by the link.
	if _, err := e.svc.Unsubscribe(ctx, e.svc.UnsubscribeToken(pending.ID), "page"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdatePreferences(ctx, e.svc.PreferencesToken(pending.ID), daily); !herald.IsCode(err, herald.ECONFLICT) {
		t.Errorf("never confirmed, resubscribing: %v, want conflict", err)
	}
	if s := e.byID(t, pending.ID); s.Status != subscribers.StatusUnsubscribed {
		t.Errorf("never confirmed: status = %s, want unsubscribed", s.Status)
	}

	// One who unsubscribed by the email link comes back through the
	// preference link.
	sub := activate(t, e, "back@example.org")
	if _, err := e.svc.Unsubscribe(ctx, e.svc.UnsubscribeToken(sub.ID), "one-click"); err != nil {
		t.Fatal(err)
	}
	n := len(e.events(t, sub.ID))
	got, err = e.svc.UpdatePreferences(ctx, e.svc.PreferencesToken(sub.ID), subscribers.PreferencesUpdate{Newsletters: []string{"daily", "weekly"}, Name: "Ana"})
	if err != nil || got.Status != subscribers.StatusActive {
		t.Fatalf("resubscribe: %+v, %v", got, err)
	}
	wantEvents(t, e.newEvents(t, sub.ID, n), "resubscribe preferences: daily weekly")

	// Bounced and complained addresses are not restarted from a form.
	for _, status := range []subscribers.Status{subscribers.StatusBounced, subscribers.StatusComplained} {
		s := activate(t, e, string(status)+"@example.org")
		if err := e.db.Update(ctx, func(tx subscribers.Tx) error {
			s.Status = status
			return tx.UpdateSubscriber(s)
		}); err != nil {
			t.Fatal(err)
		}
		tok := e.svc.PreferencesToken(s.ID)
		if _, err := e.svc.UpdatePreferences(ctx, tok, daily); !herald.IsCode(err, herald.ECONFLICT) {
			t.Errorf("%s: %v, want conflict", status, err)
		}
		if got, err := e.svc.UpdatePreferences(ctx, tok, subscribers.PreferencesUpdate{UnsubscribeAll: true}); err != nil || got.Status != status {
			t.Errorf("%s, unsubscribe all: %+v, %v", status, got, err)
		}
	}
}
