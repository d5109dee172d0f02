package web

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// embeddedDisposable is the built-in list of disposable email domains,
// used unless Config.DisposableDomainsFile names another.
//
//go:embed disposable_domains.txt
var embeddedDisposable string

// DefaultMXTimeout bounds the MX lookup when Config.MXTimeout is zero.
const DefaultMXTimeout = 3 * time.Second

// Signup results of the address checks, as SignupObserver.Signup receives
// them.
const (
	SignupDisposable = "disposable" // the domain is on the disposable list (422)
	SignupNoMX       = "no_mx"      // the domain receives no mail (422)
)

// Messages of the address checks.
const (
	msgDisposable = "Please use a permanent email address."
	msgNoMail     = "The domain of this email address does not receive email. Please check it."
)

// MXResolver looks up where a domain's mail goes (*net.Resolver).
type MXResolver interface {
	// LookupMX returns the domain's MX records; a *net.DNSError with
	// IsNotFound when there are none or the domain does not exist.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupHost returns the domain's addresses, where mail goes when it
	// has no MX records.
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// domainSet is a set of lower-case domains.
type domainSet map[string]bool

// loadDisposable reads the list from path, or the embedded one when path is
// "".
func loadDisposable(path string) (domainSet, error) {
	if path == "" {
		return parseDomainList(strings.NewReader(embeddedDisposable))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("web: DisposableDomainsFile: %w", err)
	}
	defer f.Close()
	set, err := parseDomainList(f)
	if err != nil {
		return nil, fmt.Errorf("web: DisposableDomainsFile %s: %w", path, err)
	}
	return set, nil
}

// DisposableDomains returns the list of disposable email domains that
// Config.DisposableDomainsFile = path gives a Server ("" for the built-in
// list) as the Server uses it: lower-case, without comments, blank lines or
// repeats, sorted. Two files that differ only in those have the same list.
// Its errors are the ones New returns for that file.
func DisposableDomains(path string) ([]string, error) {
	set, err := loadDisposable(path)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// parseDomainList reads one domain a line; blank lines and "#" comments are
// skipped. A line that is not a plausible domain is an error naming it.
func parseDomainList(r io.Reader) (domainSet, error) {
	set := domainSet{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		d := strings.ToLower(strings.TrimSpace(line))
		if d == "" {
			continue
		}
		if !plainDomain(d) {
			return nil, fmt.Errorf("line %d: %q is not a domain", n, d)
		}
		set[d] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return set, nil
}

// plainDomain reports whether d looks like a domain name: dot-separated
// labels of letters, digits and hyphens.
func plainDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// has reports whether domain or one of its parents is in the set.
func (s domainSet) has(domain string) bool {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	for d != "" {
		if s[d] {
			return true
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			return false
		}
		d = rest
	}
	return false
}

// addressDomain is the part of an address after its last "@".
func addressDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// receivesMail reports whether domain can receive mail: it has MX records
// other than the null MX ("."), or no MX but an address. It fails open:
// a timeout or a DNS failure says yes, so that a slow resolver never
// refuses a reader.
func (s *Server) receivesMail(ctx context.Context, domain string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MXTimeout)
	defer cancel()
	mxs, err := s.resolver.LookupMX(ctx, domain)
	if err == nil {
		for _, mx := range mxs {
			if mx.Host != "." && mx.Host != "" {
				return true
			}
		}
		return len(mxs) == 0
	}
	if !notFound(err) {
		return true
	}
	if _, err := s.resolver.LookupHost(ctx, domain); err != nil && notFound(err) {
		return false
	}
	return true
}

func notFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// checkDomain refuses an address at a disposable domain, or, with CheckMX,
// at a domain that receives no mail. It returns the SignupObserver result
// and the message, or "" when the address may sign up. The answer says
// nothing about whether the address is subscribed.
func (s *Server) checkDomain(ctx context.Context, addr string) (result, msg string) {
	d := addressDomain(addr)
	if s.disposable.has(d) {
		return SignupDisposable, msgDisposable
	}
	if s.cfg.CheckMX && !s.receivesMail(ctx, d) {
		return SignupNoMX, msgNoMail
	}
	return "", ""
}
