package subscribers

import (
	"strings"
	"testing"
	"unicode/utf8"

	"herald"
)

func TestNormalizeAddress(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  string // fragment of the message; "" means valid
	}{
		{in: "reader@example.org", want: "reader@example.org"},
		{in: "  Reader@Example.ORG ", want: "reader@example.org"},
		{in: "first.last+news@sub.example.co.uk", want: "first.last+news@sub.example.co.uk"},
		{in: "o'brien@example.ie", want: "o'brien@example.ie"},
		{in: "x@example.org.", want: "x@example.org"},
		{in: "user@bücher.example", want: "user@xn--bcher-kva.example"},
		{in: "user@ÉXAMPLE.fr", want: "user@xn--xample-9ua.fr"},
		{in: "a!#$%&'*+/=?^_`{|}~-z@example.org", want: "a!#$%&'*+/=?^_`{|}~-z@example.org"},
		{in: strings.Repeat("a", 64) + "@example.org", want: strings.Repeat("a", 64) + "@example.org"},

		{in: "", wantErr: "is empty"},
		{in: "reader", wantErr: "needs an @"},
		{in: "@example.org", wantErr: "nothing before the @"},
		{in: "reader@", wantErr: "no domain"},
		{in: "reader@localhost", wantErr: "full domain"},
		{in: "reader@example.123", wantErr: "ending in a number"},
		{in: "reader@[192.0.2.1]", wantErr: "IP address literal"},
		{in: "re ader@example.org", wantErr: "space"},
		{in: "reader@example.org\r\nBcc: victim@example.org", wantErr: "control character"},
		{in: "reader\x00@example.org", wantErr: "control character"},
		{in: ".reader@example.org", wantErr: "misplaced dot"},
		{in: "read..er@example.org", wantErr: "misplaced dot"},
		{in: "reader.@example.org", wantErr: "misplaced dot"},
		{in: `"quoted"@example.org`, wantErr: "quoted local part"},
		{in: "rëader@example.org", wantErr: "non-ASCII"},
		{in: "a(comment)@example.org", wantErr: "not allowed before the @"},
		{in: "Reader <reader@example.org>", wantErr: "space"},
		{in: "reader@-example.org", wantErr: "domain"},
		{in: "reader@exa_mple.org", wantErr: "not valid"},
		{in: "reader@example..org", wantErr: "empty or over-long"},
		{in: strings.Repeat("a", 65) + "@example.org", wantErr: "more than 64"},
		{in: "a@" + strings.Repeat("b", 64) + ".org", wantErr: "empty or over-long"},
		{in: "a@" + strings.Repeat(strings.Repeat("b", 60)+".", 5) + "org", wantErr: "longer than"},
		{in: "a@b@example.org", wantErr: "not allowed before the @"},
		{in: "\xff@example.org", wantErr: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeAddress(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NormalizeAddress(%q) error: %v", tt.in, err)
				}
				if got != tt.want {
					t.Errorf("NormalizeAddress(%q) = %q, want %q", tt.in, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("NormalizeAddress(%q) = %q, want an error containing %q", tt.in, got, tt.wantErr)
			}
			if !herald.IsCode(err, herald.EINVALID) {
				t.Errorf("code = %q, want invalid", herald.ErrorCode(err))
			}
			if msg := herald.ErrorMessage(err); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("message %q does not contain %q", msg, tt.wantErr)
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "  Ana   María  ", want: "Ana María"},
		{in: "", want: ""},
		{in: "Li\tWei", want: "Li Wei"},
		{in: "Eve\r\nBcc: x@example.org", wantErr: true},
		{in: "Eve\u2028Mallory", wantErr: true},
		{in: strings.Repeat("é", MaxNameLength), want: strings.Repeat("é", MaxNameLength)},
		{in: strings.Repeat("é", MaxNameLength+1), wantErr: true},
		{in: "bad\xffutf8", wantErr: true},
	}
	for _, tt := range tests {
		got, err := NormalizeName(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("NormalizeName(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzNormalizeAddress checks the invariants any accepted address keeps:
// idempotent, ASCII, no control characters or spaces, within the limits,
// exactly one @, and every rejection is a user-facing EINVALID.
func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"reader@example.org", "user@bücher.example", "a@b", "\"q\"@x.org", "a@[1.2.3.4]", "x\r\n@y.org", "é@é.é", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeAddress(in)
		if err != nil {
			if !herald.IsCode(err, herald.EINVALID) {
				t.Fatalf("NormalizeAddress(%q): error code %q, want invalid", in, herald.ErrorCode(err))
			}
			return
		}
		if len(got) > MaxAddressLength || strings.Count(got, "@") != 1 || !utf8.ValidString(got) {
			t.Fatalf("NormalizeAddress(%q) = %q breaks the limits", in, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] <= ' ' || got[i] >= 0x7f {
				t.Fatalf("NormalizeAddress(%q) = %q has byte %#x", in, got, got[i])
			}
		}
		again, err := NormalizeAddress(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
	})
}
