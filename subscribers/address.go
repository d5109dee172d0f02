package subscribers

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"herald"
)

// Limits on what a reader may type.
const (
	MaxAddressLength = 254 // RFC 5321 path limit less the angle brackets
	MaxLocalLength   = 64  // RFC 5321 4.5.3.1.1
	MaxDomainLength  = 253
	MaxNameLength    = 100 // runes
)

// NormalizeAddress validates an email address as typed by a reader and
// returns its canonical form: the domain in lower-case ASCII (IDN labels as
// punycode) and the local part lower-cased, so that one mailbox is one
// subscriber. It accepts a bare addr-spec with a dot-atom local part, the only
// form real signup forms see; quoted local parts, comments, display names,
// domain literals and non-ASCII local parts are refused with a reason.
func NormalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalidAddress("is empty")
	}
	if len(s) > MaxAddressLength*4 { // cheap guard before any work on huge input
		return "", invalidAddress("is too long")
	}
	if !utf8.ValidString(s) {
		return "", invalidAddress("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", invalidAddress("contains a control character")
		}
		if unicode.IsSpace(r) {
			return "", invalidAddress("contains a space")
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", invalidAddress("needs an @ and a domain, like name@example.org")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return "", err
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return "", err
	}
	addr := strings.ToLower(local) + "@" + d
	if len(addr) > MaxAddressLength {
		return "", invalidAddress("is longer than 254 characters")
	}
	return addr, nil
}

func invalidAddress(why string) error {
	return herald.Errorf(herald.EINVALID, "Please enter a valid email address: the address %s.", why)
}

// atext per RFC 5322 3.2.3, excluding the dot which checkLocal handles.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+/=?^_`{|}~-", c) >= 0
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return invalidAddress("has nothing before the @")
	case len(local) > MaxLocalLength:
		return invalidAddress("has more than 64 characters before the @")
	case strings.HasPrefix(local, `"`):
		return invalidAddress("uses a quoted local part, which we cannot deliver to")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return invalidAddress("has a misplaced dot before the @")
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= utf8.RuneSelf {
			return invalidAddress("has non-ASCII characters before the @")
		}
		if c != '.' && !isAtext(c) {
			return invalidAddress("has a character that is not allowed before the @: " + "'" + string(rune(c)) + "'")
		}
	}
	return nil
}

// normalizeDomain turns a typed domain into lower-case ASCII and checks it is
// a plausible public host name: LDH labels of 1-63 characters, at least two
// labels, a top-level label that is not all digits.
func normalizeDomain(domain string) (string, error) {
	if domain == "" {
		return "", invalidAddress("has no domain after the @")
	}
	if strings.HasPrefix(domain, "[") {
		return "", invalidAddress("uses an IP address literal instead of a domain")
	}
	domain = strings.TrimSuffix(domain, ".")
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", invalidAddress("has a domain that is not valid")
	}
	ascii = strings.ToLower(ascii)
	if len(ascii) > MaxDomainLength {
		return "", invalidAddress("has a domain longer than 253 characters")
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", invalidAddress("needs a full domain, like example.org")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", invalidAddress("has a domain with an empty or over-long part")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", invalidAddress("has a domain part that starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", invalidAddress("has a character that is not allowed in the domain")
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "", invalidAddress("has a domain ending in a number")
	}
	return ascii, nil
}

// NormalizeName trims a reader's name, folds runs of white space into one
// space, and refuses control characters (CR and LF above all: a name ends up
// in headers and greetings) and names over MaxNameLength runes.
func NormalizeName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", herald.Errorf(herald.EINVALID, "The name is not valid text.")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' || r == '\u2028' || r == '\u2029' {
			return "", herald.Errorf(herald.EINVALID, "The name contains a control character (such as a line break).")
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > MaxNameLength {
		return "", herald.Errorf(herald.EINVALID, "The name is longer than %d characters.", MaxNameLength)
	}
	return s, nil
}
