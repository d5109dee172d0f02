package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"herald/mailer"
	"herald/metrics"
)

// writeDKIMKey writes a fresh private key as PKCS #8 PEM: "rsa" (2048
// bits), "rsa-small" (1024 bits, the least accepted) or "ed25519".
func writeDKIMKey(t *testing.T, kind string) string {
	t.Helper()
	var key any
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigDeliverabilityKeys(t *testing.T) {
	key := writeDKIMKey(t, "ed25519")
	cfg := mustLoad(t, strings.Replace(minimalYAML, "  from:", "  transport: smtp\n  from:", 1)+`
smtp:
  host: relay-a.example.net
  relays:
    - name: microsoft
      host: relay-b.example.net
      domains: [outlook.com, "*.onmicrosoft.com"]
    - name: bulk
      host: relay-c.example.net
      port: 465
      tls: tls
      username: herald
      weight: 3
      connections: 8
delivery:
  rate_per_second: 12.5
  per_domain_concurrency: 2
metrics:
  public: true
dkim:
  selector: herald2026
  domain: passblue.example
  private_key_file: `+key+`
`, envOf(map[string]string{
		"HERALD_SMTP_RELAYS_1_PASSWORD":   "from-the-environment",
		"HERALD_DELIVERY_RATE_PER_SECOND": "20",
	}))
	r := cfg.SMTP.Relays
	if len(r) != 2 || r[0].Name != "microsoft" || r[0].Port != 587 || r[0].TLS != "starttls" || len(r[0].Domains) != 2 {
		t.Errorf("relays[0] = %+v, want microsoft with the defaults port 587, starttls", r[0])
	}
	if r[1].Port != 465 || r[1].TLS != "tls" || r[1].Weight != 3 || r[1].Connections != 8 || r[1].Password != "from-the-environment" {
		t.Errorf("relays[1] = %+v, want the file's values and the password from HERALD_SMTP_RELAYS_1_PASSWORD", r[1])
	}
	if cfg.Delivery.RatePerSecond != 20 || cfg.Delivery.PerDomainConcurrency != 2 {
		t.Errorf("delivery = %+v", cfg.Delivery)
	}
	if !cfg.Metrics.Public || !cfg.DKIM.Enabled() || strings.Join(cfg.DKIM.Headers, ",") != "From,To,Subject,Date,Message-ID,List-Unsubscribe,List-Unsubscribe-Post" {
		t.Errorf("metrics = %+v, dkim = %+v", cfg.Metrics, cfg.DKIM)
	}

	def := mustLoad(t, minimalYAML, noEnv)
	if def.Metrics.Public || def.DKIM.Enabled() || def.Delivery.RatePerSecond != 0 || def.Delivery.PerDomainConcurrency != 0 || len(def.SMTP.Relays) != 0 {
		t.Errorf("defaults: metrics %+v, dkim %+v, delivery %+v, relays %+v", def.Metrics, def.DKIM, def.Delivery, def.SMTP.Relays)
	}
}

func TestConfigRelayEnvErrorNamesIndex(t *testing.T) {
	text := strings.Replace(minimalYAML, "  from:", "  transport: smtp\n  from:", 1) +
		"smtp:\n  host: a.example.net\n  relays:\n    - name: b\n      host: b.example.net\n"
	_, err := load(t, text, envOf(map[string]string{"HERALD_SMTP_RELAYS_0_PORT": "abc"}))
	got := problems(t, err)
	want := `smtp.relays[0].port: must be 1-65535, got "abc" (HERALD_SMTP_RELAYS_0_PORT)`
	if len(got) != 1 || got[0] != want {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

func TestConfigDeliverabilityValidation(t *testing.T) {
	rsaKey := writeDKIMKey(t, "rsa")
	notAKey := filepath.Join(t.TempDir(), "not-a-key.pem")
	if err := os.WriteFile(notAKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	smtp := strings.Replace(minimalYAML, "  from:", "  transport: smtp\n  from:", 1) + "smtp:\n  host: a.example.net\n"
	relay := smtp + "  relays:\n    - name: b\n      host: b.example.net\n"
	dkimOn := func(lines string) string {
		return minimalYAML + "dkim:\n" + lines
	}
	tests := []struct {
		name, text, key, msg string
	}{
		{"relay name missing", smtp + "  relays:\n    - host: b.example.net\n", "smtp.relays[0].name", "required"},
		{"relay name slug", smtp + "  relays:\n    - name: Relay B\n      host: b.example.net\n", "smtp.relays[0].name", "slug"},
		{"relay name default", smtp + "  relays:\n    - name: default\n      host: b.example.net\n", "smtp.relays[0].name", "primary"},
		{"relay name twice", relay + "    - name: b\n      host: c.example.net\n", "smtp.relays[1].name", "already"},
		{"relay host", smtp + "  relays:\n    - name: b\n", "smtp.relays[0].host", "required"},
		{"relay port", relay + "      port: 0\n", "smtp.relays[0].port", "1-65535"},
		{"relay tls", relay + "      tls: ssl\n", "smtp.relays[0].tls", "none, starttls, tls"},
		{"relay password alone", relay + "      password: x\n", "smtp.relays[0].username", "required"},
		{"relay password in clear", relay + "      tls: none\n      username: u\n      password: x\n", "smtp.relays[0].tls", "in clear"},
		{"relay weight with domains", relay + "      weight: 2\n      domains: [example.org]\n", "smtp.relays[0].weight", "no effect"},
		{"relay weight range", relay + "      weight: -1\n", "smtp.relays[0].weight", "0-1000"},
		{"relay domain", relay + "      domains: [\"not a domain\"]\n", "smtp.relays[0].domains[0]", "example.org"},
		{"relay domain bare", relay + "      domains: [localhost]\n", "smtp.relays[0].domains[0]", "example.org"},
		{"relay domain twice", relay + "      domains: [example.org]\n    - name: c\n      host: c.example.net\n      domains: [Example.org]\n", "smtp.relays[1].domains[0]", "smtp.relays[0]"},
		{"relays with outbox", minimalYAML + "smtp:\n  relays:\n    - name: b\n      host: b.example.net\n", "smtp.relays", "mail.transport is smtp"},
		{"rate negative", minimalYAML + "delivery:\n  rate_per_second: -1\n", "delivery.rate_per_second", "0 (no limit)"},
		{"rate not a number", minimalYAML + "delivery:\n  rate_per_second: fast\n", "delivery.rate_per_second", "number"},
		{"per domain", minimalYAML + "delivery:\n  per_domain_concurrency: -1\n", "delivery.per_domain_concurrency", "0-1000"},
		{"metrics public", minimalYAML + "metrics:\n  public: maybe\n", "metrics.public", "true or false"},
		{"dkim half set", dkimOn("  selector: s1\n"), "dkim.private_key_file", "required"},
		{"dkim no selector", dkimOn("  domain: passblue.example\n  private_key_file: " + rsaKey + "\n"), "dkim.selector", "required"},
		{"dkim bad selector", dkimOn("  selector: \"a b\"\n  domain: passblue.example\n  private_key_file: " + rsaKey + "\n"), "dkim.selector", "DNS name"},
		{"dkim no domain", dkimOn("  selector: s1\n  private_key_file: " + rsaKey + "\n"), "dkim.domain", "passblue.example"},
		{"dkim unaligned", dkimOn("  selector: s1\n  domain: esp.example\n  private_key_file: " + rsaKey + "\n"), "dkim.domain", "DMARC"},
		{"dkim missing file", dkimOn("  selector: s1\n  domain: passblue.example\n  private_key_file: /nonexistent/dkim.pem\n"), "dkim.private_key_file", "cannot read"},
		{"dkim not a key", dkimOn("  selector: s1\n  domain: passblue.example\n  private_key_file: " + notAKey + "\n"), "dkim.private_key_file", "PEM"},
		{"dkim headers no From", dkimOn("  selector: s1\n  domain: passblue.example\n  private_key_file: " + rsaKey + "\n  headers: [To, Subject]\n"), "dkim.headers", "From"},
		{"dkim headers transit", dkimOn("  selector: s1\n  domain: passblue.example\n  private_key_file: " + rsaKey + "\n  headers: [From, Received]\n"), "dkim.headers", "transit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.text, noEnv)
			if err == nil {
				t.Fatal("loadConfig succeeded, want a problem")
			}
			for _, p := range problems(t, err) {
				if strings.HasPrefix(p, tt.key+": ") && strings.Contains(p, tt.msg) {
					return
				}
			}
			t.Errorf("problems = %q, want one starting %q containing %q", problems(t, err), tt.key+": ", tt.msg)
		})
	}
	// A subdomain or parent of mail.from's domain aligns (relaxed DMARC).
	for _, d := range []string{"passblue.example", "mail.passblue.example", "PassBlue.Example."} {
		mustLoad(t, dkimOn("  selector: s1\n  domain: "+d+"\n  private_key_file: "+rsaKey+"\n"), noEnv)
	}
}

// relayConfig is a loaded configuration sending through the primary relay
// on port a and, for example.org and its subdomains, the relay on port b.
func relayConfig(t *testing.T, a, b int, extra string) *Config {
	t.Helper()
	text := strings.Replace(minimalYAML, "  from:", "  transport: smtp\n  from:", 1) + fmt.Sprintf(`smtp:
  host: 127.0.0.1
  port: %d
  tls: none
  timeout: 5s
  relays:
    - name: example-org
      host: 127.0.0.1
      port: %d
      tls: none
      domains: [example.org, "*.example.org"]
`, a, b) + extra
	return mustLoad(t, text, noEnv)
}

func testEmailTo(to string) *mailer.Email {
	return &mailer.Email{
		From: "news@passblue.example", FromName: "PassBlue", To: to,
		Subject: "Routing test", MessageID: strings.ReplaceAll(to, "@", ".") + "@passblue.example",
		Date: time.Date(2026, 3, 4, 7, 0, 0, 0, time.UTC), Text: "Hello.\n",
		Headers: []mailer.Header{
			{Name: "List-Unsubscribe", Value: "<https://herald.passblue.example/unsubscribe/x>"},
			{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
		},
	}
}

func TestRelaysRouteByDomain(t *testing.T) {
	sinkA, portA := startSink(t)
	sinkB, portB := startSink(t)
	tr, err := newTransport(relayConfig(t, portA, portB, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, to := range []string{"ana@example.org", "ben@news.example.org", "cy@other.example", "di@example.org.evil.example"} {
		if err := tr.Send(context.Background(), testEmailTo(to)); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
	}
	for _, tc := range []struct {
		to       string
		onA, onB int
	}{
		{"ana@example.org", 0, 1},
		{"ben@news.example.org", 0, 1},
		{"cy@other.example", 1, 0},
		{"di@example.org.evil.example", 1, 0},
	} {
		if a, b := sinkA.count(tc.to), sinkB.count(tc.to); a != tc.onA || b != tc.onB {
			t.Errorf("%s: %d on the primary, %d on example-org; want %d and %d", tc.to, a, b, tc.onA, tc.onB)
		}
	}
}

func TestRelaysFailoverCountedAndSigned(t *testing.T) {
	// The primary is down (nothing listens on its port); a second default
	// relay takes the mail, and the failover is counted against "default".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sinkB, portB := startSink(t)
	sinkC, portC := startSink(t)
	key := writeDKIMKey(t, "rsa")
	cfg := relayConfig(t, deadPort, portB, fmt.Sprintf(`    - name: backup
      host: 127.0.0.1
      port: %d
      tls: none
dkim:
  selector: herald2026
  domain: passblue.example
  private_key_file: %s
`, portC, key))
	m := metrics.New()
	tr, err := newTransport(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for i := range 3 {
		to := "reader" + strconv.Itoa(i) + "@other.example"
		if err := tr.Send(context.Background(), testEmailTo(to)); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		if sinkC.count(to) != 1 {
			t.Errorf("%s did not go through the backup relay", to)
		}
	}
	if err := tr.Send(context.Background(), testEmailTo("ana@example.org")); err != nil {
		t.Fatal(err)
	}
	if sinkB.count("ana@example.org") != 1 {
		t.Error("example.org did not go through its route")
	}
	// The primary failed once, then was skipped while marked down.
	body := scrape(t, m.Handler())
	if !strings.Contains(body, `herald_relay_errors_total{code="0",relay="default"} 1`) {
		t.Errorf("the failover was not counted:\n%s", grepLines(body, "herald_relay_errors_total"))
	}

	// Every relay got the signed bytes, and they verify.
	signer, err := newDKIMSigner(&cfg.DKIM)
	if err != nil {
		t.Fatal(err)
	}
	name, value := signer.DNSRecord()
	for _, m := range append(sinkB.messagesSnapshot(), sinkC.messagesSnapshot()...) {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.data), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) {
				if domain != name {
					return nil, fmt.Errorf("unexpected query %s", domain)
				}
				return []string{value}, nil
			},
		})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Errorf("message to %v does not verify: %v %+v", m.to, err, vs)
		}
	}
}

// scrape returns what a metrics handler serves.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := newTestHTTP(t, h)
	resp, err := http.Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// newTestHTTP serves h on a loopback port for the test and returns its URL.
func newTestHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestEndToEndMetrics(t *testing.T) {
	relay, port := startSink(t)
	h := startHerald(t, port)

	get := func(token string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, h.base+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return do(t, req)
	}
	if resp, _ := get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /metrics without a token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get("wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /metrics with a wrong token: %d, want 401", resp.StatusCode)
	}

	const reader = "metrics.reader@example.org"
	if resp, body := postForm(t, h.base+"/subscribe", url.Values{"email": {reader}, "newsletters": {"daily"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /subscribe: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := postForm(t, h.base+"/subscribe", url.Values{"email": {"not an address"}, "newsletters": {"daily"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("POST /subscribe with a bad address: %d, want 422", resp.StatusCode)
	}
	relay.waitFor(t, reader, "onfirm")

	// The engine observes the send after the relay's 250; poll briefly.
	want := []string{
		`herald_messages_total{kind="confirmation",outcome="sent"} 1`,
		`herald_signups_total{result="accepted"} 1`,
		`herald_signups_total{result="invalid"} 1`,
		`herald_send_duration_seconds_count{kind="confirmation"} 1`,
		`herald_queue_depth{status="sent"} 1`,
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := get(h.token)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /metrics with the admin token: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s:\n%s", missing, grepLines(body, "herald_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEndToEndMetricsPublic(t *testing.T) {
	_, port := startSink(t)
	h := startHeraldWith(t, port, "metrics:\n  public: true\n")
	req, _ := http.NewRequest(http.MethodGet, h.base+"/metrics", nil)
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "herald_signups_total") {
		t.Fatalf("GET /metrics (public): %d\n%.300s", resp.StatusCode, body)
	}
}
