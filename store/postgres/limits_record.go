package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Instances sharing a database share the signup limits' counters
// (SignupLimits), so they must judge them by the same limits.* settings.
// Each records its settings in the settings table, one row per instance
// named limitsRecordPrefix + its instance id, and refreshes the row while
// it runs, so that an instance can tell when another one that is running
// judges by other settings.

// limitsRecordPrefix starts the names of the instances' limits records in
// the settings table. The prefix holds no LIKE wildcard.
const limitsRecordPrefix = "limits_settings:"

// limitsRecordTTL is how long the record of an instance that is no longer
// heard from is kept (one that crashed, or was killed, without forgetting
// it).
const limitsRecordTTL = time.Hour

// LimitsRecord is the limits.* settings one instance recorded.
type LimitsRecord struct {
	// Instance is the id the instance recorded under.
	Instance string
	// Settings is what it recorded, in the encoding its caller chose.
	Settings string
	// RecordedAt is when it last recorded them.
	RecordedAt time.Time
}

// RecordLimits records, at now, that instance runs with settings (an
// encoding of its limits.* settings, the same string for the same
// settings), forgets the records of instances not heard from for an hour,
// and returns the records of the other instances made since now minus
// within whose settings differ, oldest first. One transaction.
func (db *DB) RecordLimits(ctx context.Context, instance, settings string, now time.Time, within time.Duration) ([]LimitsRecord, error) {
	var out []LimitsRecord
	err := db.inTx(ctx, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			limitsRecordPrefix+instance, settings, now); err != nil {
			return translate(err, "record limits settings", "setting")
		}
		if _, err := t.Exec(ctx, `DELETE FROM settings WHERE starts_with(name, $1) AND updated_at < $2`,
			limitsRecordPrefix, now.Add(-limitsRecordTTL)); err != nil {
			return translate(err, "forget old limits settings", "setting")
		}
		rows, err := t.Query(ctx, `SELECT substr(name, length($1) + 1), value, updated_at FROM settings
            WHERE starts_with(name, $1) AND name <> $2 AND value <> $3 AND updated_at >= $4
            ORDER BY updated_at, name`,
			limitsRecordPrefix, limitsRecordPrefix+instance, settings, now.Add(-within))
		if err != nil {
			return translate(err, "read limits settings", "setting")
		}
		var r LimitsRecord
		_, err = pgx.ForEachRow(rows, []any{&r.Instance, &r.Settings, &r.RecordedAt}, func() error {
			out = append(out, r)
			return nil
		})
		return translate(err, "read limits settings", "setting")
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ForgetLimits deletes instance's limits record, as it stops.
func (db *DB) ForgetLimits(ctx context.Context, instance string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM settings WHERE name = $1`, limitsRecordPrefix+instance)
	return translate(err, "forget limits settings", "setting")
}
