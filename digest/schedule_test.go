package digest_test

import (
	"testing"
	"time"

	"herald/digest"
)

func mustSchedule(t *testing.T, expr, tz string) *digest.Schedule {
	t.Helper()
	s, err := digest.ParseSchedule(expr, tz)
	if err != nil {
		t.Fatalf("ParseSchedule(%q, %q): %v", expr, tz, err)
	}
	return s
}

func TestParseScheduleErrors(t *testing.T) {
	for _, tt := range []struct{ expr, tz string }{
		{"0 7 * *", ""},
		{"0 7 * * * *", ""},
		{"@daily", ""},
		{"CRON_TZ=Asia/Tokyo 0 7 * * *", ""},
		{"61 7 * * *", ""},
		{"0 7 * * *", "Mars/Olympus_Mons"},
	} {
		if _, err := digest.ParseSchedule(tt.expr, tt.tz); err == nil {
			t.Errorf("ParseSchedule(%q, %q) succeeded, want an error", tt.expr, tt.tz)
		}
	}
	if s := mustSchedule(t, "0 7 * * *", ""); s.Location() != time.UTC {
		t.Errorf("empty time zone = %v, want UTC", s.Location())
	}
}

func TestScheduleDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	local := func(y int, m time.Month, d, h, mi int) time.Time { return time.Date(y, m, d, h, mi, 0, 0, ny) }
	utc := func(y int, m time.Month, d, h, mi int) time.Time { return time.Date(y, m, d, h, mi, 0, 0, time.UTC) }
	const tz = "America/New_York"
	seven := mustSchedule(t, "0 7 * * *", tz)
	weekdays := mustSchedule(t, "0 7 * * 1-5", tz)
	twoThirty := mustSchedule(t, "30 2 * * *", tz)
	oneThirty := mustSchedule(t, "30 1 * * *", tz)
	hourly := mustSchedule(t, "0 * * * *", tz)

	tests := []struct {
		name     string
		s        *digest.Schedule
		op       string // "next" or "prev"
		at, want time.Time
	}{
		// 2026-03-08: clocks spring forward at 02:00 EST to 03:00 EDT.
		{"7:00 the day before spring forward is 12:00 UTC", seven, "next", local(2026, 3, 6, 12, 0), utc(2026, 3, 7, 12, 0)},
		{"7:00 on spring forward is 7:00 EDT, 11:00 UTC", seven, "next", local(2026, 3, 7, 12, 0), utc(2026, 3, 8, 11, 0)},
		{"prev on spring forward", seven, "prev", local(2026, 3, 8, 9, 0), utc(2026, 3, 8, 11, 0)},
		{"prev before 7:00 on spring forward is the day before", seven, "prev", local(2026, 3, 8, 6, 59), utc(2026, 3, 7, 12, 0)},
		// 2026-11-01: clocks fall back at 02:00 EDT to 01:00 EST.
		{"7:00 the day before fall back is 11:00 UTC", seven, "next", local(2026, 10, 30, 12, 0), utc(2026, 10, 31, 11, 0)},
		{"7:00 on fall back is 7:00 EST, 12:00 UTC", seven, "next", local(2026, 10, 31, 12, 0), utc(2026, 11, 1, 12, 0)},
		{"prev on fall back", seven, "prev", local(2026, 11, 1, 8, 0), utc(2026, 11, 1, 12, 0)},
		// robfig/cron skips a local time that does not exist: no 02:30
		// slot on spring forward; the issue of the 9th carries what is new.
		{"02:30 does not exist on spring forward: skipped", twoThirty, "next", local(2026, 3, 7, 12, 0), local(2026, 3, 9, 2, 30)},
		{"prev of 02:30 on spring forward is the 7th", twoThirty, "prev", local(2026, 3, 8, 12, 0), local(2026, 3, 7, 2, 30)},
		// 01:30 happens twice on fall back: one slot, the first (EDT).
		{"01:30 on fall back is 01:30 EDT", oneThirty, "next", local(2026, 10, 31, 12, 0), utc(2026, 11, 1, 5, 30)},
		{"01:30 does not come round again an hour later", oneThirty, "next", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)},
		{"prev during the repeated hour is 01:30 EDT", oneThirty, "prev", utc(2026, 11, 1, 6, 45), utc(2026, 11, 1, 5, 30)},
		{"hourly skips the repeated hour", hourly, "next", utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 7, 0)},
		// Weekdays at 7:00: after a weekend the latest slot is Friday's.
		{"prev on Monday before 7:00 is Friday", weekdays, "prev", local(2026, 3, 9, 6, 0), local(2026, 3, 6, 7, 0)},
		{"prev on Sunday is Friday", weekdays, "prev", local(2026, 3, 8, 20, 0), local(2026, 3, 6, 7, 0)},
		{"prev on Monday after 7:00 is Monday (EDT now)", weekdays, "prev", local(2026, 3, 9, 7, 0), utc(2026, 3, 9, 11, 0)},
		{"next on Friday evening is Monday", weekdays, "next", local(2026, 3, 6, 8, 0), local(2026, 3, 9, 7, 0)},
		{"prev at a slot is that slot", seven, "prev", utc(2026, 3, 8, 11, 0), utc(2026, 3, 8, 11, 0)},
		{"next at a slot is the following one", seven, "next", utc(2026, 3, 8, 11, 0), utc(2026, 3, 9, 11, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got time.Time
			if tt.op == "next" {
				got = tt.s.Next(tt.at)
			} else {
				got = tt.s.Prev(tt.at)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("%s(%v) = %v (%v), want %v (%v)", tt.op, tt.at, got, got.UTC(), tt.want, tt.want.UTC())
			}
			if got.Location().String() != tz {
				t.Errorf("slot in %v, want %s", got.Location(), tz)
			}
		})
	}
}

func TestSchedulePrevYearly(t *testing.T) {
	s := mustSchedule(t, "0 9 1 1 *", "")
	now := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	if got, want := s.Prev(now), time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("Prev = %v, want %v", got, want)
	}
	if got := mustSchedule(t, "0 9 30 2 *", "").Prev(now); !got.IsZero() {
		t.Fatalf("Prev of a schedule that never fires = %v, want zero", got)
	}
}
