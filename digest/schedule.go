package digest

import (
	"fmt"
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
func (s *Schedule) Next(t time.Time) time.Time {
	return s.spec.Next(t.In(s.loc))
}

// Prev returns the latest slot at or before t, or the zero time when there
// is none in the year before t.
func (s *Schedule) Prev(t time.Time) time.Time {
	t = t.In(s.loc)
	// Look back over growing windows, so that a per-minute schedule costs a
	// few steps and a yearly one still finds its slot.
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		slot := s.spec.Next(t.Add(-back))
		if slot.After(t) {
			continue
		}
		for {
			next := s.spec.Next(slot)
			if next.After(t) || next.IsZero() {
				return slot
			}
			slot = next
		}
	}
	return time.Time{}
}
