// Package migrations reads a storage engine's numbered .sql migrations and
// checks them against what a database has applied. Each engine keeps its own
// SQL (same numbers, its own dialect) and applies it in its own
// transactions; the rules about names, order and edits live here once.
package migrations

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Migration is one numbered .sql file.
type Migration struct {
	Version int
	Name    string // the file's base name
	SQL     string
	Sum     string // hex SHA-256 of the file, to catch a shipped migration edited later
}

// Load returns the migrations matching pattern in fsys (e.g.
// "migrations/*.sql"), in version order. A file's name must start with a
// positive number and "_"; two files may not share a number.
func Load(fsys fs.FS, pattern string) ([]Migration, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		// Hash without carriage returns, so a checkout that converts line
		// endings does not look like an edited migration.
		sum := sha256.Sum256([]byte(strings.ReplaceAll(string(b), "\r\n", "\n")))
		ms = append(ms, Migration{Version: v, Name: base, SQL: string(b), Sum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].Name, ms[i].Name)
		}
	}
	return ms, nil
}

// Check compares what a database applied (checksums by version) with the
// migrations this binary ships: an applied migration whose file changed, or
// one the binary does not know (a downgrade), is an error.
func Check(ms []Migration, done map[int]string) error {
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.Version] = true
		if sum, ok := done[m.Version]; ok && sum != m.Sum {
			return fmt.Errorf("migration %s was edited after it was applied; add a new migration instead", m.Name)
		}
	}
	for v := range done {
		if !known[v] {
			return fmt.Errorf("the database has migration %04d, unknown to this version of Herald (downgrade?)", v)
		}
	}
	return nil
}
