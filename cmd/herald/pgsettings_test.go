package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"herald/store/postgres"
	"herald/store/postgres/pgtest"
)

// fakeSettings is a PostgreSQL server with the settings a test chooses.
type fakeSettings struct {
	s   postgres.ServerSettings
	err error
}

func (f fakeSettings) ServerSettings(context.Context) (postgres.ServerSettings, error) {
	return f.s, f.err
}

// postgresWarnings logs one warning per harmful setting, naming it and
// the docs, and returns them for the dashboard; a healthy server, an
// unreadable one and SQLite log no such warning.
func TestPostgresWarnings(t *testing.T) {
	tests := []struct {
		name string
		db   any
		want []string // a fragment of each warning
	}{
		{"autovacuum off", fakeSettings{s: postgres.ServerSettings{Autovacuum: "off", TrackCounts: "on"}}, []string{"autovacuum setting is off"}},
		{"track_counts off", fakeSettings{s: postgres.ServerSettings{Autovacuum: "on", TrackCounts: "off"}}, []string{"track_counts setting is off"}},
		{"healthy", fakeSettings{s: postgres.ServerSettings{Autovacuum: "on", TrackCounts: "on"}}, nil},
		{"unreadable", fakeSettings{err: errors.New("permission denied")}, nil},
		{"not postgres", struct{}{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			got := postgresWarnings(t.Context(), tt.db, slog.New(slog.NewTextHandler(&log, nil)))
			if len(got) != len(tt.want) {
				t.Fatalf("postgresWarnings = %q, want %d; log:\n%s", got, len(tt.want), log.String())
			}
			if n := strings.Count(log.String(), "docs/scale-out.md"); n != len(tt.want) {
				t.Errorf("%d warnings pointing to the docs in the log, want %d:\n%s", n, len(tt.want), log.String())
			}
			for i, frag := range tt.want {
				if !strings.Contains(got[i], frag) || !strings.Contains(log.String(), frag) {
					t.Errorf("warning %q (log %q) lacks %q", got[i], log.String(), frag)
				}
			}
		})
	}
}

// herald migrate on the real server warns when, and only when, its
// autovacuum is off (it is off on this machine's server), without
// writing the DSN.
func TestMigrateWarnsOfAutovacuum(t *testing.T) {
	pgtest.Require(t)
	dsn := usePostgres(t)
	conn := pgtest.Admin(t)
	defer conn.Close(t.Context())
	var autovacuum string
	if err := conn.QueryRow(t.Context(), `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"migrate", "--config", testConfig(t, "")}, &stdout, &stderr); code != exitOK {
		t.Fatalf("migrate: exit %d\n%s", code, stderr.String())
	}
	warned := strings.Contains(stderr.String(), "autovacuum setting is off")
	if warned != (autovacuum == "off") {
		t.Errorf("server autovacuum %s, warned %v:\n%s", autovacuum, warned, stderr.String())
	}
	if strings.Contains(stderr.String(), dsn) {
		t.Errorf("the log holds the DSN:\n%s", stderr.String())
	}
}
