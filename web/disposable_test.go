package web

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSubscribeDisposable(t *testing.T) {
	h := newHarness(t)
	obs := observe(h, nil)
	for _, addr := range []string{"bot@mailinator.com", "bot@YOPMAIL.com", "bot@eu.guerrillamail.com", "bot@10minutemail.com"} {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", addr)))
		wantStatus(t, rec, http.StatusUnprocessableEntity)
		wantBody(t, rec, "Please use a permanent email address.", `value="`+addr+`"`)
	}
	rec := h.do(t, http.MethodPost, "/subscribe", "application/json", strings.NewReader(`{"email":"bot@temp-mail.org"}`))
	wantStatus(t, rec, http.StatusUnprocessableEntity)
	wantBody(t, rec, "Please use a permanent email address.")
	if n := h.subs.callsOf("Signup"); n != 0 {
		t.Errorf("Signup calls = %d, want 0", n)
	}
	if got := obs.count(SignupDisposable); got != 5 {
		t.Errorf("disposable = %d, want 5", got)
	}
	// A domain that merely ends like one is not refused.
	rec = h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@notmailinator.com.example")))
	wantStatus(t, rec, http.StatusOK)
}

func TestDisposableDomainsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "domains.txt")
	if err := os.WriteFile(path, []byte("# ours\nthrowaway.example  # a comment\n\nBurner.Example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.DisposableDomainsFile = path })
	for addr, want := range map[string]int{
		"a@throwaway.example":    http.StatusUnprocessableEntity,
		"a@x.burner.example":     http.StatusUnprocessableEntity,
		"a@mailinator.com":       http.StatusOK, // the file replaces the built-in list
		"a@passblue.example.org": http.StatusOK,
	} {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", addr)))
		if rec.Code != want {
			t.Errorf("%s: status = %d, want %d", addr, rec.Code, want)
		}
	}

	if err := os.WriteFile(path, []byte("ok.example\nnot a domain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.DisposableDomainsFile = path
	if _, err := New(cfg, Deps{Subscribers: newFakeSubs()}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want one naming line 2", err)
	}
	cfg.DisposableDomainsFile = filepath.Join(t.TempDir(), "missing.txt")
	if _, err := New(cfg, Deps{Subscribers: newFakeSubs()}); err == nil || !strings.Contains(err.Error(), "DisposableDomainsFile") {
		t.Errorf("err = %v, want one naming DisposableDomainsFile", err)
	}
}

// The built-in list parses and holds the well-known services.
func TestEmbeddedDisposableList(t *testing.T) {
	set, err := loadDisposable("")
	if err != nil {
		t.Fatal(err)
	}
	if len(set) < 300 {
		t.Errorf("%d domains, want a few hundred", len(set))
	}
	for _, d := range []string{"mailinator.com", "guerrillamail.com", "10minutemail.com", "temp-mail.org", "yopmail.com"} {
		if !set.has(d) {
			t.Errorf("%s is not on the list", d)
		}
	}
}

// fakeResolver answers MX and host lookups from maps; a domain in neither
// does not exist. slow makes every lookup wait for its context.
type fakeResolver struct {
	mx    map[string][]*net.MX
	hosts map[string][]string
	slow  bool
}

func (f *fakeResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if f.slow {
		<-ctx.Done()
		return nil, &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true}
	}
	if mx, ok := f.mx[name]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeResolver) LookupHost(_ context.Context, name string) ([]string, error) {
	if h, ok := f.hosts[name]; ok {
		return h, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestSubscribeCheckMX(t *testing.T) {
	res := &fakeResolver{
		mx: map[string][]*net.MX{
			"example.org":    {{Host: "mx.example.org.", Pref: 10}},
			"nullmx.example": {{Host: ".", Pref: 0}},
		},
		hosts: map[string][]string{"a-only.example": {"192.0.2.1"}},
	}
	newMXHarness := func(t *testing.T, r MXResolver) *harness {
		t.Helper()
		h := newHarness(t, func(c *Config) { c.CheckMX = true; c.MXTimeout = 50 * time.Millisecond })
		h.srv.resolver = r
		return h
	}
	h := newMXHarness(t, res)
	obs := observe(h, nil)
	for addr, want := range map[string]int{
		"jane@example.org":     http.StatusOK,
		"jane@a-only.example":  http.StatusOK,
		"jane@nullmx.example":  http.StatusUnprocessableEntity,
		"jane@nowhere.example": http.StatusUnprocessableEntity,
	} {
		rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", addr)))
		if rec.Code != want {
			t.Errorf("%s: status = %d, want %d", addr, rec.Code, want)
		}
		if want != http.StatusOK {
			wantBody(t, rec, "does not receive email")
		}
	}
	if got := obs.count(SignupNoMX); got != 2 {
		t.Errorf("no_mx = %d, want 2", got)
	}

	// A resolver that does not answer lets the signup through in time.
	h = newMXHarness(t, &fakeResolver{slow: true})
	start := time.Now()
	rec := h.do(t, http.MethodPost, "/subscribe", formType, strings.NewReader(form("email", "jane@nowhere.example")))
	wantStatus(t, rec, http.StatusOK)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the signup took %s: the lookup timeout was not applied", d)
	}
}
