package migrations

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadOrdersAndRefusesBadNames(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0010_later.sql": {Data: []byte("SELECT 10;")},
		"m/0002_b.sql":     {Data: []byte("SELECT 2;")},
		"m/0001_a.sql":     {Data: []byte("SELECT 1;\r\n")},
	}
	ms, err := Load(fsys, "m/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Version != 1 || ms[1].Version != 2 || ms[2].Version != 10 || ms[2].Name != "0010_later.sql" {
		t.Fatalf("Load = %+v, want versions 1, 2, 10 in order", ms)
	}
	crlf := ms[0].Sum
	fsys["m/0001_a.sql"] = &fstest.MapFile{Data: []byte("SELECT 1;\n")}
	if ms, _ := Load(fsys, "m/*.sql"); ms[0].Sum != crlf {
		t.Error("a CRLF checkout changes the checksum")
	}

	for name, fsys := range map[string]fstest.MapFS{
		"no number":      {"m/init.sql": {Data: []byte("x")}},
		"zero":           {"m/0000_x.sql": {Data: []byte("x")}},
		"shared version": {"m/0001_a.sql": {Data: []byte("x")}, "m/01_b.sql": {Data: []byte("y")}},
	} {
		if _, err := Load(fsys, "m/*.sql"); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
}

func TestCheck(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a.sql", Sum: "aa"}, {Version: 2, Name: "0002_b.sql", Sum: "bb"}}
	tests := []struct {
		name string
		done map[int]string
		want string // fragment of the error; "" for none
	}{
		{"fresh", map[int]string{}, ""},
		{"partly applied", map[int]string{1: "aa"}, ""},
		{"edited after applied", map[int]string{1: "aa", 2: "changed"}, "0002_b.sql was edited"},
		{"downgrade", map[int]string{1: "aa", 2: "bb", 3: "cc"}, "migration 0003, unknown"},
	}
	for _, tt := range tests {
		err := Check(ms, tt.done)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
