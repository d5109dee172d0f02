package postgres

import (
	"context"
	"strings"
)

// ServerSettings are the PostgreSQL server settings Herald's health on
// the database depends on, as current_setting reports them ("on", "off").
type ServerSettings struct {
	// Autovacuum is the autovacuum setting: the launcher that vacuums
	// and analyzes tables as their rows change.
	Autovacuum string
	// TrackCounts is the track_counts setting: the row-change statistics
	// autovacuum decides from. With it off, autovacuum does nothing.
	TrackCounts string
}

// ServerSettings reads the server settings the outbox's health depends
// on. Both are server-wide: a session cannot change them.
func (db *DB) ServerSettings(ctx context.Context) (ServerSettings, error) {
	var s ServerSettings
	err := db.pool.QueryRow(ctx, `SELECT current_setting('autovacuum'), current_setting('track_counts')`).
		Scan(&s.Autovacuum, &s.TrackCounts)
	if err != nil {
		return ServerSettings{}, translate(err, "read postgres settings", "")
	}
	return s, nil
}

// settingOff reports whether a boolean setting's value is off. PostgreSQL
// shows booleans as "on" and "off"; the usual other spellings of false are
// taken too.
func settingOff(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "off", "false", "no", "0":
		return true
	}
	return false
}

// Warnings returns what an operator should fix in s, one sentence each
// (nil when nothing). The outbox updates every message's row twice (claim,
// then settle), and signup limits and sessions churn rows too: without
// autovacuum the dead rows stay, the partial indexes the claims scan
// bloat, and claims slow down a little more with every send.
func (s ServerSettings) Warnings() []string {
	var w []string
	if settingOff(s.Autovacuum) {
		w = append(w, "PostgreSQL's autovacuum setting is off: the outbox updates every message's row twice, "+
			"so without autovacuum its dead rows and partial indexes grow until claims slow down. "+
			"Turn autovacuum on in postgresql.conf (see docs/scale-out.md, \"Autovacuum\").")
	}
	if settingOff(s.TrackCounts) {
		w = append(w, "PostgreSQL's track_counts setting is off: autovacuum decides from those counts and does nothing without them, "+
			"so the outbox's dead rows and partial indexes grow until claims slow down. "+
			"Turn track_counts on in postgresql.conf (see docs/scale-out.md, \"Autovacuum\").")
	}
	return w
}
