package postgres_test

import (
	"testing"
	"time"

	"herald/store/postgres"
)

// RecordLimits tells an instance which other instances, heard from within
// the window, run with other limits settings; instances with the same
// settings, itself, and instances not heard from lately are not reported,
// and those silent for an hour are forgotten. Other settings rows are left
// alone.
func TestRecordLimits(t *testing.T) {
	requireServer(t)
	db := open(t)
	ctx := t.Context()
	const within = 5 * time.Minute
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := db.SetSetting(ctx, "admin_password", "hash", t0); err != nil {
		t.Fatal(err)
	}
	record := func(instance, settings string, at time.Time) []postgres.LimitsRecord {
		t.Helper()
		got, err := db.RecordLimits(ctx, instance, settings, at, within)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := func(got []postgres.LimitsRecord, want ...postgres.LimitsRecord) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		for i := range got {
			if got[i].Instance != want[i].Instance || got[i].Settings != want[i].Settings || !got[i].RecordedAt.Equal(want[i].RecordedAt) {
				t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
			}
		}
	}

	want(record("a", "fp1 signup_per_ip=10", t0))
	want(record("b", "fp1 signup_per_ip=10", t0.Add(time.Second)))
	// c differs from a and b, which both ran within the window.
	want(record("c", "fp2 signup_per_ip=3", t0.Add(2*time.Second)),
		postgres.LimitsRecord{Instance: "a", Settings: "fp1 signup_per_ip=10", RecordedAt: t0},
		postgres.LimitsRecord{Instance: "b", Settings: "fp1 signup_per_ip=10", RecordedAt: t0.Add(time.Second)})
	// a, refreshing, learns of c; its own earlier record is never reported.
	want(record("a", "fp1 signup_per_ip=10", t0.Add(time.Minute)),
		postgres.LimitsRecord{Instance: "c", Settings: "fp2 signup_per_ip=3", RecordedAt: t0.Add(2 * time.Second)})
	// c, once stopped, is not reported.
	if err := db.ForgetLimits(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	want(record("a", "fp1 signup_per_ip=10", t0.Add(2*time.Minute)))
	// d differs, but b and c are stale by then: only a, refreshed, counts.
	want(record("d", "fp3", t0.Add(2*time.Minute+within)),
		postgres.LimitsRecord{Instance: "a", Settings: "fp1 signup_per_ip=10", RecordedAt: t0.Add(2 * time.Minute)})
	// After an hour of silence a, b and d are forgotten.
	want(record("e", "fp4", t0.Add(3*time.Hour)))
	if n, err := db.QueryInt(ctx, `SELECT count(*) FROM settings WHERE name LIKE 'limits_settings:%'`); err != nil || n != 1 {
		t.Errorf("%d limits records left (%v), want e's alone", n, err)
	}
	if v, err := db.Setting(ctx, "admin_password"); err != nil || v != "hash" {
		t.Errorf("admin_password = %q, %v: another setting was touched", v, err)
	}
}
