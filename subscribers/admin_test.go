package subscribers

import (
	"io"
	"strings"
	"testing"

	"herald"
)

func TestParseColumnMap(t *testing.T) {
	got, err := ParseColumnMap("email:E-mail, Name : Full Name ,newsletters:Lists")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["email"] != "E-mail" || got["name"] != "Full Name" || got["newsletters"] != "Lists" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"email", "email:", "phone:Tel", "email:a,email:b", ":x"} {
		if _, err := ParseColumnMap(bad); !herald.IsCode(err, herald.EINVALID) || !strings.HasPrefix(herald.ErrorMessage(err), "map:") {
			t.Errorf("ParseColumnMap(%q) err = %v, want EINVALID naming map", bad, err)
		}
	}
}

func TestRenameColumns(t *testing.T) {
	tests := []struct {
		name, in string
		columns  map[string]string
		want     string
		err      string
	}{
		{"renames, any case, BOM", "\ufeffE-Mail,\"Full, Name\",x\r\na@b.org,\"A, B\",1\n",
			map[string]string{"email": "e-mail", "name": "full, name"}, "email,name,x\na@b.org,\"A, B\",1\n", ""},
		{"no map", "email\n", nil, "email\n", ""},
		{"header only, no newline", "Mail", map[string]string{"email": "Mail"}, "email\n", ""},
		{"missing header", "email\n", map[string]string{"name": "Full Name"}, "", "Full Name"},
		{"empty", "", map[string]string{"email": "x"}, "", "empty"},
		{"broken header", "\"a,b\n", map[string]string{"email": "x"}, "", "header"},
		{"long header", strings.Repeat("x", 70<<10) + "\n", map[string]string{"email": "x"}, "", "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := RenameColumns(strings.NewReader(tt.in), tt.columns)
			if tt.err != "" {
				if !herald.IsCode(err, herald.EINVALID) || !strings.Contains(herald.ErrorMessage(err), tt.err) {
					t.Fatalf("err = %v, want EINVALID mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got %q, want %q", b, tt.want)
			}
		})
	}
}

// FuzzRenameColumns: whatever the input, RenameColumns either refuses it
// with EINVALID or passes everything after the header through unchanged.
func FuzzRenameColumns(f *testing.F) {
	f.Add("E-mail,Name\na@b.org,A\n", "E-mail")
	f.Add("\"E-mail\",x\r\n\"q\"\"\",y", "e-mail")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, in, header string) {
		r, err := RenameColumns(strings.NewReader(in), map[string]string{"email": header})
		if err != nil {
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("err = %v, want EINVALID", err)
			}
			return
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(in, "\n")
		if !strings.HasSuffix(string(b), rest) {
			t.Fatalf("the body after the header changed: %q -> %q", in, b)
		}
	})
}
