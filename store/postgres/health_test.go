package postgres_test

import (
	"strings"
	"testing"

	"herald/store/postgres"
)

// ServerSettings reads what the server says, whatever it says: the same
// values SHOW gives on another connection.
func TestServerSettingsReadsTheServer(t *testing.T) {
	requireServer(t)
	db := openIn(t, newSchema(t))
	got, err := db.ServerSettings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	defer conn.Close(t.Context())
	var want postgres.ServerSettings
	if err := conn.QueryRow(t.Context(), `SHOW autovacuum`).Scan(&want.Autovacuum); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(t.Context(), `SHOW track_counts`).Scan(&want.TrackCounts); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("ServerSettings = %+v, SHOW says %+v", got, want)
	}
	for _, v := range []string{got.Autovacuum, got.TrackCounts} {
		if v != "on" && v != "off" {
			t.Errorf("setting value %q, want on or off", v)
		}
	}
	// This machine's server runs with autovacuum off; whatever it runs
	// with, the warnings follow what was read.
	if off := got.Autovacuum == "off"; off != containsWarning(got.Warnings(), "autovacuum setting is off") {
		t.Errorf("autovacuum %s, warnings %q", got.Autovacuum, got.Warnings())
	}
}

// Warnings names each setting that is off, says why it matters and where
// to read more; settings that are on give none.
func TestServerSettingsWarnings(t *testing.T) {
	tests := []struct {
		name string
		s    postgres.ServerSettings
		want []string // a fragment of each warning, in order
	}{
		{"both on", postgres.ServerSettings{Autovacuum: "on", TrackCounts: "on"}, nil},
		{"autovacuum off", postgres.ServerSettings{Autovacuum: "off", TrackCounts: "on"}, []string{"autovacuum setting is off"}},
		{"track_counts off", postgres.ServerSettings{Autovacuum: "on", TrackCounts: "off"}, []string{"track_counts setting is off"}},
		{"both off", postgres.ServerSettings{Autovacuum: "off", TrackCounts: "off"},
			[]string{"autovacuum setting is off", "track_counts setting is off"}},
		{"other spelling", postgres.ServerSettings{Autovacuum: "False", TrackCounts: "true"}, []string{"autovacuum setting is off"}},
		{"unknown", postgres.ServerSettings{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.s.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings() = %q, want %d warnings", got, len(tt.want))
			}
			for i, w := range got {
				for _, frag := range []string{tt.want[i], "outbox", "claims slow down", "docs/scale-out.md"} {
					if !strings.Contains(w, frag) {
						t.Errorf("warning %q lacks %q", w, frag)
					}
				}
			}
		})
	}
}

func containsWarning(ws []string, frag string) bool {
	for _, w := range ws {
		if strings.Contains(w, frag) {
			return true
		}
	}
	return false
}
