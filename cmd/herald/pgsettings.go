package main

import (
	"context"
	"log/slog"

	"herald/store/postgres"
)

// settingsReader is what postgresWarnings asks of a PostgreSQL database
// (*postgres.DB).
type settingsReader interface {
	// ServerSettings reads the server settings the outbox depends on.
	ServerSettings(ctx context.Context) (postgres.ServerSettings, error)
}

// postgresWarnings checks the settings of the PostgreSQL server db is on
// (autovacuum, track_counts), logs one warning for each that will hurt
// Herald, and returns them for the admin dashboard. A database that is not
// PostgreSQL has none. A server whose settings cannot be read is logged
// and passed.
func postgresWarnings(ctx context.Context, db any, logger *slog.Logger) []string {
	sr, ok := db.(settingsReader)
	if !ok {
		return nil
	}
	s, err := sr.ServerSettings(ctx)
	if err != nil {
		logger.Warn("could not read the PostgreSQL server's autovacuum settings", "error", err)
		return nil
	}
	w := s.Warnings()
	for _, msg := range w {
		logger.Warn(msg, "autovacuum", s.Autovacuum, "track_counts", s.TrackCounts)
	}
	return w
}
