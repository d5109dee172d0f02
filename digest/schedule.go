package digest

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a 5-field cron expression evaluated in a time zone, so that
// "0 7 * * 1-5" in America/New_York means 7:00 local time on both sides of a
// daylight-saving change.
type Schedule struct {
	expr string
	loc  *time.Location
	spec cron.Schedule
}

// ParseSchedule parses a standard 5-field cron expression (minute hour
// day-of-month month day-of-week) in the IANA time zone tz ("" is UTC).
func ParseSchedule(expr, tz string) (*Schedule, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %w", tz, err)
		}
		loc = l
	}
	// Five fields only: no descriptor (@daily) and no CRON_TZ= prefix,
	// which would override the configured time zone.
	if len(strings.Fields(expr)) != 5 || strings.Contains(expr, "@") || strings.Contains(expr, "=") {
		return nil, fmt.Errorf("schedule %q: want five fields (minute hour day-of-month month day-of-week)", expr)
	}
	spec, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", expr, err)
	}
	if _, ok := spec.(*cron.SpecSchedule); !ok {
		return nil, fmt.Errorf("schedule %q: want five fields, not a descriptor", expr)
	}
	return &Schedule{expr: expr, loc: loc, spec: spec}, nil
}

// String returns the expression and its time zone.
func (s *Schedule) String() string { return s.expr + " (" + s.loc.String() + ")" }

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first slot strictly after t.
//
// Across daylight-saving changes it follows robfig/cron, with one
// exception. When clocks spring forward, a slot whose local time does not
// exist that day ("30 2 * * *" in America/New_York on 2026-03-08) is
// skipped: the next issue carries what is new, as Build works from each
// reader's last issue. When clocks fall back, robfig would fire twice at a
// local time that occurs twice ("30 1 * * *" on 2026-11-01 at 01:30 EDT and
// 01:30 EST); here the second occurrence is not a slot, so a daily
// newsletter still sends once a day (and an hourly one skips an hour).
func (s *Schedule) Next(t time.Time) time.Time {
	next := s.spec.Next(t.In(s.loc))
	for !next.IsZero() && repeatedWallClock(next) {
		next = s.spec.Next(next)
	}
	return next
}

// repeatedWallClock reports whether the local time shown by t was already
// shown a little earlier: t is in the hour (or half hour, or two hours)
// that clocks fell back over, on its second pass.
func repeatedWallClock(t time.Time) bool {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		u := t.Add(-back)
		y2, mo2, d2 := u.Date()
		h2, mi2, sec2 := u.Clock()
		if y == y2 && mo == mo2 && d == d2 && h == h2 && mi == mi2 && sec == sec2 {
			return true
		}
	}
	return false
}

// Prev returns the latest slot at or before t, or the zero time when there
// is none in the year before t.
func (s *Schedule) Prev(t time.Time) time.Time {
	t = t.In(s.loc)
	// Look back over growing windows, so that a per-minute schedule costs a
	// few steps and a yearly one still finds its slot.
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		slot := s.Next(t.Add(-back))
		if slot.After(t) || slot.IsZero() {
			continue
		}
		for {
			next := s.Next(slot)
			if next.After(t) || next.IsZero() {
				return slot
			}
			slot = next
		}
	}
	return time.Time{}
}
