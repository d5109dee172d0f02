package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimalYAML is the smallest valid configuration: the required keys only.
const minimalYAML = `
` + minimalMail + `newsletters:
  - id: daily
    name: The Daily Brief
    schedule: "0 7 * * 1-5"
`

// minimalMail is the mail section of minimalYAML.
const minimalMail = `mail:
  from: "PassBlue <news@passblue.example>"
  postal_address: "777 UN Plaza, New York, NY 10017"
`

// writeConfig writes a configuration file into a fresh directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noEnv is an environment with no HERALD_* variables.
func noEnv(string) (string, bool) { return "", false }

// envOf is an environment holding exactly vars.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// load loads text as an explicit configuration file with the environment env.
func load(t *testing.T, text string, env func(string) (string, bool)) (*Config, error) {
	t.Helper()
	return loadConfig(configSource{Path: writeConfig(t, text), Explicit: true, LookupEnv: env})
}

// mustLoad is load that fails the test on error.
func mustLoad(t *testing.T, text string, env func(string) (string, bool)) *Config {
	t.Helper()
	cfg, err := load(t, text, env)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	return cfg
}

// problems returns the formatted problems of a *ConfigError.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *ConfigError", err, err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.String())
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	cfg := mustLoad(t, minimalYAML, noEnv)
	tests := []struct {
		key       string
		got, want any
	}{
		{"http.addr", cfg.HTTP.Addr, "127.0.0.1:8080"},
		{"http.base_url", cfg.HTTP.BaseURL, "http://127.0.0.1:8080"},
		{"http.shutdown_timeout", cfg.HTTP.ShutdownTimeout, 15 * time.Second},
		{"database.driver", cfg.Database.Driver, "sqlite"},
		{"database.dsn", cfg.Database.DSN, "data/herald.db"},
		{"mail.transport", cfg.Mail.Transport, "outbox"},
		{"mail.outbox_dir", cfg.Mail.OutboxDir, "data/outbox"},
		{"smtp.port", cfg.SMTP.Port, 587},
		{"smtp.tls", cfg.SMTP.TLS, "starttls"},
		{"smtp.connections", cfg.SMTP.Connections, 4},
		{"limits.signup_per_ip", cfg.Limits.SignupPerIP, 10},
		{"delivery.workers", cfg.Delivery.Workers, 4},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
		{"newsletters[0].timezone", cfg.Newsletters[0].Timezone, "UTC"},
		{"newsletters[0].max_articles", cfg.Newsletters[0].MaxArticles, 10},
		{"newsletters[0].new_reader_articles", cfg.Newsletters[0].NewReaderArticles, 3},
		{"newsletters[0].lookback", cfg.Newsletters[0].Lookback, 720 * time.Hour},
		{"mail.templates_dir", cfg.Mail.TemplatesDir, ""},
		{"articles.poll_interval", cfg.Articles.PollInterval, 15 * time.Minute},
		{"articles.fetch_timeout", cfg.Articles.FetchTimeout, 20 * time.Second},
		{"articles.max_feed_bytes", cfg.Articles.MaxFeedBytes, 10 << 20},
		{"digest.check_interval", cfg.Digest.CheckInterval, 30 * time.Second},
		{"digest.batch_size", cfg.Digest.BatchSize, 2000},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.key, tt.got, tt.want)
		}
	}
	if got := cfg.FromAddress(); got.Name != "PassBlue" || got.Address != "news@passblue.example" {
		t.Errorf("FromAddress() = %+v", got)
	}
}

func TestConfigYAMLOverridesDefaults(t *testing.T) {
	cfg := mustLoad(t, minimalYAML+`
http:
  addr: ":9090"
  base_url: https://news.passblue.example
  trusted_proxies: [10.0.0.0/8, "::1/128"]
  read_timeout: 1m30s
smtp:
  host: smtp.example.net
  port: 2525
  tls: tls
limits:
  signup_per_ip: 0
feeds:
  - url: https://passblue.example/feed/
    newsletters: [daily]
`, noEnv)
	if cfg.HTTP.Addr != ":9090" || cfg.HTTP.BaseURL != "https://news.passblue.example" {
		t.Errorf("http = %+v", cfg.HTTP)
	}
	if want := []string{"10.0.0.0/8", "::1/128"}; !slices.Equal(cfg.HTTP.TrustedProxies, want) {
		t.Errorf("http.trusted_proxies = %q, want %q", cfg.HTTP.TrustedProxies, want)
	}
	if cfg.HTTP.ReadTimeout != 90*time.Second {
		t.Errorf("http.read_timeout = %v, want 1m30s", cfg.HTTP.ReadTimeout)
	}
	if cfg.HTTP.WriteTimeout != 30*time.Second {
		t.Errorf("http.write_timeout = %v, want the default 30s", cfg.HTTP.WriteTimeout)
	}
	if cfg.SMTP.Host != "smtp.example.net" || cfg.SMTP.Port != 2525 || cfg.SMTP.TLS != "tls" {
		t.Errorf("smtp = %+v", cfg.SMTP)
	}
	if cfg.Limits.SignupPerIP != 0 {
		t.Errorf("limits.signup_per_ip = %d, want 0", cfg.Limits.SignupPerIP)
	}
	if len(cfg.Feeds) != 1 || cfg.Feeds[0].Newsletters[0] != "daily" {
		t.Errorf("feeds = %+v", cfg.Feeds)
	}
}

func TestConfigEnvOverridesYAML(t *testing.T) {
	t.Setenv("HERALD_SMTP_PORT", "465")
	t.Setenv("HERALD_SMTP_HOST", "relay.example.net")
	t.Setenv("HERALD_ADMIN_TOKEN", "s3cret")
	t.Setenv("HERALD_HTTP_READ_TIMEOUT", "3s")
	t.Setenv("HERALD_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16")
	t.Setenv("HERALD_MAIL_FROM", "Desk <desk@passblue.example>")
	cfg := mustLoad(t, minimalYAML+"smtp:\n  port: 2525\n", os.LookupEnv)
	if cfg.SMTP.Port != 465 || cfg.SMTP.Host != "relay.example.net" {
		t.Errorf("smtp = %+v, want port 465 and host from the environment", cfg.SMTP)
	}
	if cfg.Admin.Token != "s3cret" {
		t.Errorf("admin.token = %q", cfg.Admin.Token)
	}
	if cfg.HTTP.ReadTimeout != 3*time.Second {
		t.Errorf("http.read_timeout = %v", cfg.HTTP.ReadTimeout)
	}
	if want := []string{"10.0.0.0/8", "192.168.0.0/16"}; !slices.Equal(cfg.HTTP.TrustedProxies, want) {
		t.Errorf("http.trusted_proxies = %q, want %q", cfg.HTTP.TrustedProxies, want)
	}
	if cfg.Mail.From != "Desk <desk@passblue.example>" {
		t.Errorf("mail.from = %q", cfg.Mail.From)
	}
}

// TestConfigEveryScalarKeyHasAnEnvVar checks that each scalar key is reached
// by its HERALD_* variable, and that no two keys share one.
func TestConfigEveryScalarKeyHasAnEnvVar(t *testing.T) {
	var keys []string
	var walk func(reflect.Type, string)
	walk = func(tp reflect.Type, prefix string) {
		for i := range tp.NumField() {
			f := tp.Field(i)
			key := joinKey(prefix, yamlName(f))
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type, key)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(configType, "")
	if len(keys) < 35 {
		t.Fatalf("found %d scalar keys, want every one (at least 35)", len(keys))
	}
	seen := map[string]string{}
	for _, k := range keys {
		name := envName(k)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", k, other, name)
		}
		seen[name] = k
		// Setting a bad value must produce a problem naming key and variable.
		f := fieldOf(k)
		if f.Type == reflect.TypeFor[string]() || f.Type.Kind() == reflect.Slice {
			continue
		}
		_, err := load(t, minimalYAML, envOf(map[string]string{name: "not-a-value"}))
		ps := problems(t, err)
		if len(ps) != 1 || !strings.HasPrefix(ps[0], k+": ") || !strings.Contains(ps[0], "("+name+")") {
			t.Errorf("%s=not-a-value: problems = %q, want one naming %s and %s", name, ps, k, name)
		}
	}
	if seen["HERALD_SMTP_HOST"] != "smtp.host" || seen["HERALD_HTTP_BASE_URL"] != "http.base_url" {
		t.Errorf("env names do not follow HERALD_ + upper-cased path: %v", seen)
	}
}

func TestConfigEnvParseErrorNamesKeyAndVariable(t *testing.T) {
	_, err := load(t, minimalYAML, envOf(map[string]string{"HERALD_SMTP_PORT": "abc"}))
	got := problems(t, err)
	want := []string{`smtp.port: must be 1-65535, got "abc" (HERALD_SMTP_PORT)`}
	if !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

func TestConfigUnknownKey(t *testing.T) {
	_, err := load(t, minimalYAML+"smtp:\n  prot: 25\nfoo: 1\n", noEnv)
	got := problems(t, err)
	if len(got) != 2 || !strings.HasPrefix(got[0], "smtp.prot: unknown key") || !strings.HasSuffix(got[0], "line 10)") ||
		!strings.HasPrefix(got[1], "foo: unknown key") || !strings.HasSuffix(got[1], "line 11)") {
		t.Errorf("problems = %q, want unknown smtp.prot at line 10 and foo at line 11", got)
	}
	if !strings.Contains(got[0], `did you mean "port"?`) {
		t.Errorf("problem %q should suggest port", got[0])
	}
}

func TestConfigUnknownKeyInList(t *testing.T) {
	_, err := load(t, minimalYAML+"    shedule: x\n", noEnv)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], "newsletters[0].shedule: unknown key") {
		t.Errorf("problems = %q, want newsletters[0].shedule: unknown key", got)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string // appended to minimalYAML
		key  string // the key the problem must name
		msg  string // a fragment of its message
	}{
		{"port not a number", "smtp:\n  port: abc\n", "smtp.port", `must be 1-65535, got "abc"`},
		{"port out of range", "smtp:\n  port: 70000\n", "smtp.port", `must be 1-65535, got "70000"`},
		{"http addr", "http:\n  addr: localhost\n", "http.addr", "host:port"},
		{"base url relative", "http:\n  base_url: /news\n", "http.base_url", "absolute"},
		{"base url scheme", "http:\n  base_url: ftp://x.example\n", "http.base_url", "http"},
		{"base url trailing slash", "http:\n  base_url: https://x.example/\n", "http.base_url", "slash"},
		{"trusted proxy", "http:\n  trusted_proxies: [10.0.0.0/8, nope]\n", "http.trusted_proxies[1]", "CIDR"},
		{"duration", "http:\n  read_timeout: soon\n", "http.read_timeout", `duration`},
		{"duration zero", "http:\n  shutdown_timeout: 0s\n", "http.shutdown_timeout", "positive"},
		{"driver", "database:\n  driver: mysql\n", "database.driver", `sqlite, postgres`},
		{"dsn", "database:\n  dsn: \"\"\n", "database.dsn", "required"},
		{"max conns", "database:\n  max_conns: -1\n", "database.max_conns", "must be 0-10000"},
		{"min conns above max", "database:\n  max_conns: 4\n  min_conns: 5\n", "database.min_conns", "at most database.max_conns"},
		{"max conns one on postgres", "database:\n  driver: postgres\n  dsn: postgres://h@db/h\n  max_conns: 1\n", "database.max_conns", "leader lock"},
		{"max conn lifetime", "database:\n  max_conn_lifetime: -1m\n", "database.max_conn_lifetime", "positive"},
		{"transport", minimalMail + "  transport: carrier-pigeon\n", "mail.transport", "outbox, smtp"},
		{"outbox dir", minimalMail + "  outbox_dir: \"\"\n", "mail.outbox_dir", "required"},
		{"from invalid", "mail:\n  from: not an address\n  postal_address: x\n", "mail.from", "address"},
		{"from missing", "mail:\n  from: \"\"\n  postal_address: x\n", "mail.from", "required"},
		{"reply to", minimalMail + "  reply_to: nope\n", "mail.reply_to", "address"},
		{"postal address", "mail:\n  from: a@b.example\n  postal_address: \"  \"\n", "mail.postal_address", "CAN-SPAM"},
		{"smtp host", minimalMail + "  transport: smtp\n", "smtp.host", "required"},
		{"smtp tls", "smtp:\n  tls: ssl\n", "smtp.tls", "none, starttls, tls"},
		{"smtp username", "smtp:\n  password: x\n", "smtp.username", "required"},
		{"smtp password in clear", minimalMail + "  transport: smtp\nsmtp:\n  host: relay.example.net\n  tls: none\n  username: herald\n  password: x\n", "smtp.tls", "in clear"},
		{"smtp connections", "smtp:\n  connections: 0\n", "smtp.connections", "must be 1-1000"},
		{"signup limit", "limits:\n  signup_per_ip: -1\n", "limits.signup_per_ip", "must be 0-"},
		{"subnet limit", "limits:\n  signup_per_subnet: -1\n", "limits.signup_per_subnet", "must be 0-"},
		{"fill time", "limits:\n  min_fill_time: -1s\n", "limits.min_fill_time", "between 0 and 1h"},
		{"altcha mode", "limits:\n  altcha: sometimes\n", "limits.altcha", "must be one of off, attack, always"},
		{"wildcard origin", "http:\n  cors_origins: ['*']\n", "http.cors_origins[0]", "exact origin"},
		{"origin with a path", "http:\n  cors_origins: [https://a.example/news]\n", "http.cors_origins[0]", "exact origin"},
		{"frame ancestor", "http:\n  frame_ancestors: [\"'self'; script-src *\"]\n", "http.frame_ancestors[0]", "CSP source"},
		{"workers", "delivery:\n  workers: -1\n", "delivery.workers", "must be 0-"},
		{"batch size", "delivery:\n  batch_size: many\n", "delivery.batch_size", `got "many"`},
		{"retry max", "delivery:\n  retry_base: 1h\n  retry_max: 1m\n", "delivery.retry_max", "retry_base"},
		{"site name", "site:\n  name: \"\"\n", "site.name", "required"},
		{"site url", "site:\n  url: passblue.example\n", "site.url", "absolute"},
		{"privacy url", "site:\n  privacy_url: javascript:alert(1)\n", "site.privacy_url", "absolute"},
		{"consent version", "site:\n  consent_version: \"\"\n", "site.consent_version", "required"},
		{"log level", "log:\n  level: verbose\n", "log.level", "debug, info, warn, error"},
		{"log format", "log:\n  format: xml\n", "log.format", "text, json"},
		{"newsletter id", "  - id: Daily News\n    name: x\n    schedule: \"0 7 * * *\"\n", "newsletters[1].id", "slug"},
		{"newsletter id duplicate", "  - id: daily\n    name: x\n    schedule: \"0 7 * * *\"\n", "newsletters[1].id", "already"},
		{"newsletter name", "  - id: other\n    schedule: \"0 7 * * *\"\n", "newsletters[1].name", "required"},
		{"schedule fields", "  - id: other\n    name: x\n    schedule: \"0 7 * *\"\n", "newsletters[1].schedule", "5-field"},
		{"schedule range", "  - id: other\n    name: x\n    schedule: \"0 25 * * *\"\n", "newsletters[1].schedule", "hour"},
		{"timezone", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    timezone: Mars/Olympus\n", "newsletters[1].timezone", "IANA"},
		{"max articles", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    max_articles: 0\n", "newsletters[1].max_articles", "must be 1-"},
		{"feed url", "feeds:\n  - url: feed.xml\n    newsletters: [daily]\n", "feeds[0].url", "absolute"},
		{"feed newsletter", "feeds:\n  - url: https://x.example/feed\n    newsletters: [daily, nope]\n", "feeds[0].newsletters[1]", `"nope"`},
		{"new reader articles range", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    new_reader_articles: 0\n", "newsletters[1].new_reader_articles", "must be 1-"},
		{"new reader articles cap", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    max_articles: 2\n    new_reader_articles: 3\n", "newsletters[1].new_reader_articles", "at most max_articles (2)"},
		{"lookback", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    lookback: forever\n", "newsletters[1].lookback", "duration"},
		{"lookback zero", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    lookback: 0s\n", "newsletters[1].lookback", "positive"},
		{"tags not a list", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    tags: un\n", "newsletters[1].tags", "list"},
		{"tag empty", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    tags: [un, \" \"]\n", "newsletters[1].tags[1]", "empty"},
		{"tag twice", "  - id: other\n    name: x\n    schedule: \"0 7 * * *\"\n    tags: [UN, un]\n", "newsletters[1].tags[1]", "twice"},
		{"templates dir missing", minimalMail + "  templates_dir: /nonexistent/herald-templates\n", "mail.templates_dir", "directory"},
		{"poll interval", "articles:\n  poll_interval: 0s\n", "articles.poll_interval", "positive"},
		{"fetch timeout", "articles:\n  fetch_timeout: later\n", "articles.fetch_timeout", "duration"},
		{"max feed bytes", "articles:\n  max_feed_bytes: 10\n", "articles.max_feed_bytes", "must be 1024-"},
		{"check interval", "digest:\n  check_interval: -1s\n", "digest.check_interval", "positive"},
		{"digest batch size", "digest:\n  batch_size: 0\n", "digest.batch_size", "must be 1-100000"},
		{"feed no newsletters", "feeds:\n  - url: https://x.example/feed\n", "feeds[0].newsletters", "at least one"},
		{"not a mapping", "smtp: 25\n", "smtp", "mapping"},
		{"not a list", "http:\n  trusted_proxies: 10.0.0.0/8\n", "http.trusted_proxies", "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// minimalYAML ends inside the newsletters list, so a case that
			// starts with "  - " adds a second newsletter; a case that starts
			// with "mail:" replaces the mail section.
			text := minimalYAML + tt.yaml
			if strings.HasPrefix(tt.yaml, "mail:") {
				text = strings.Replace(minimalYAML, minimalMail, tt.yaml, 1)
			}
			_, err := load(t, text, noEnv)
			if err == nil {
				t.Fatal("loadConfig succeeded, want a problem")
			}
			got := problems(t, err)
			for _, p := range got {
				if strings.HasPrefix(p, tt.key+": ") && strings.Contains(p, tt.msg) {
					return
				}
			}
			t.Errorf("problems = %q, want one starting %q containing %q", got, tt.key+": ", tt.msg)
		})
	}
}

func TestConfigNewKeysFromEnv(t *testing.T) {
	dir := t.TempDir()
	cfg := mustLoad(t, minimalYAML, envOf(map[string]string{
		"HERALD_ARTICLES_POLL_INTERVAL":  "5m",
		"HERALD_ARTICLES_FETCH_TIMEOUT":  "3s",
		"HERALD_ARTICLES_MAX_FEED_BYTES": "2048",
		"HERALD_DIGEST_CHECK_INTERVAL":   "1s",
		"HERALD_DIGEST_BATCH_SIZE":       "50",
		"HERALD_MAIL_TEMPLATES_DIR":      dir,
	}))
	if cfg.Articles.PollInterval != 5*time.Minute || cfg.Articles.FetchTimeout != 3*time.Second || cfg.Articles.MaxFeedBytes != 2048 {
		t.Errorf("articles = %+v", cfg.Articles)
	}
	if cfg.Digest.CheckInterval != time.Second || cfg.Digest.BatchSize != 50 {
		t.Errorf("digest = %+v", cfg.Digest)
	}
	if cfg.Mail.TemplatesDir != dir {
		t.Errorf("mail.templates_dir = %q, want %q", cfg.Mail.TemplatesDir, dir)
	}
}

func TestConfigDigestNewsletters(t *testing.T) {
	cfg := mustLoad(t, minimalYAML+`    timezone: America/New_York
    max_articles: 8
    tags: [" UN ", Climate]
    new_reader_articles: 2
    lookback: 48h
  - id: weekly
    name: The Week
    schedule: "0 9 * * 6"
feeds:
  - url: https://a.example/feed
    newsletters: [daily, weekly]
  - url: https://b.example/feed
    newsletters: [weekly]
`, noEnv)
	nls, err := cfg.DigestNewsletters()
	if err != nil {
		t.Fatal(err)
	}
	if len(nls) != 2 {
		t.Fatalf("got %d newsletters, want 2", len(nls))
	}
	d, w := nls[0], nls[1]
	if d.ID != "daily" || d.Name != "The Daily Brief" || d.MaxArticles != 8 || d.NewReaderArticles != 2 || d.Lookback != 48*time.Hour {
		t.Errorf("daily = %+v", d)
	}
	if want := []string{"un", "climate"}; !slices.Equal(d.Tags, want) {
		t.Errorf("daily tags = %q, want %q", d.Tags, want)
	}
	if want := []string{"https://a.example/feed"}; !slices.Equal(d.Feeds, want) {
		t.Errorf("daily feeds = %q, want %q", d.Feeds, want)
	}
	if want := []string{"https://a.example/feed", "https://b.example/feed"}; !slices.Equal(w.Feeds, want) {
		t.Errorf("weekly feeds = %q, want %q", w.Feeds, want)
	}
	if w.MaxArticles != 10 || w.NewReaderArticles != 3 || w.Lookback != 720*time.Hour || len(w.Tags) != 0 {
		t.Errorf("weekly defaults = %+v", w)
	}
	// 07:00 on a weekday in New York, whatever the UTC offset that day.
	from := time.Date(2025, 3, 7, 12, 0, 0, 0, time.UTC) // a Friday, 07:00 EST
	if got, want := d.Schedule.Next(from), time.Date(2025, 3, 10, 7, 0, 0, 0, d.Schedule.Location()); !got.Equal(want) {
		t.Errorf("daily next after %v = %v, want %v (EDT)", from, got, want)
	}
	if got := w.Schedule.Location(); got != time.UTC {
		t.Errorf("weekly location = %v, want UTC", got)
	}
	fcs := cfg.FeedConfigs()
	if len(fcs) != 2 || fcs[1].URL != "https://b.example/feed" || !slices.Equal(fcs[0].Newsletters, []string{"daily", "weekly"}) {
		t.Errorf("FeedConfigs() = %+v", fcs)
	}
}

func TestConfigNeedsNewsletters(t *testing.T) {
	_, err := load(t, "mail:\n  from: a@b.example\n  postal_address: x\n", noEnv)
	got := problems(t, err)
	if !slices.Contains(got, "newsletters: must list at least one newsletter") {
		t.Errorf("problems = %q", got)
	}
}

func TestConfigValidationErrorNamesLine(t *testing.T) {
	_, err := load(t, minimalYAML+"log:\n  level: loud\n", noEnv)
	got := problems(t, err)
	if len(got) != 1 || !strings.HasSuffix(got[0], "config.yaml line 10)") {
		t.Errorf("problems = %q, want the line of log.level", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	t.Run("explicit and missing", func(t *testing.T) {
		_, err := loadConfig(configSource{Path: filepath.Join(t.TempDir(), "nope.yaml"), Explicit: true, LookupEnv: noEnv})
		got := problems(t, err)
		if len(got) != 1 || !strings.Contains(got[0], "nope.yaml") || !strings.Contains(got[0], "no such file") {
			t.Errorf("problems = %q", got)
		}
	})
	t.Run("defaulted and missing uses defaults", func(t *testing.T) {
		env := envOf(map[string]string{
			"HERALD_MAIL_FROM":           "a@b.example",
			"HERALD_MAIL_POSTAL_ADDRESS": "somewhere",
		})
		_, err := loadConfig(configSource{Path: filepath.Join(t.TempDir(), "config.yaml"), LookupEnv: env})
		// Newsletters come from a file only, so defaults alone cannot validate;
		// the only problem must be that, with the note about the missing file.
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Key != "newsletters" || !strings.Contains(ce.Note, "defaults") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not yaml", func(t *testing.T) {
		_, err := load(t, "http: [\n", noEnv)
		got := problems(t, err)
		if len(got) != 1 || !strings.Contains(got[0], "not valid YAML") {
			t.Errorf("problems = %q", got)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		_, err := load(t, "", noEnv)
		if got := problems(t, err); !slices.Contains(got, "newsletters: must list at least one newsletter") {
			t.Errorf("problems = %q", got)
		}
	})
	t.Run("duplicate key", func(t *testing.T) {
		_, err := load(t, minimalYAML+"log:\n  level: info\n  level: debug\n", noEnv)
		if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], "log.level: is set twice") {
			t.Errorf("problems = %q", got)
		}
	})
}

// TestRootConfigYAML loads the config.yaml shipped at the repository root.
func TestRootConfigYAML(t *testing.T) {
	cfg, err := loadConfig(configSource{Path: "../../config.yaml", Explicit: true, LookupEnv: noEnv})
	if err != nil {
		t.Fatalf("the root config.yaml does not load: %v", err)
	}
	if cfg.Database.Driver != "sqlite" || cfg.Mail.Transport != "outbox" {
		t.Errorf("database.driver = %q, mail.transport = %q; want sqlite and outbox", cfg.Database.Driver, cfg.Mail.Transport)
	}
	if len(cfg.Newsletters) < 2 {
		t.Errorf("newsletters = %+v, want the examples", cfg.Newsletters)
	}
	// Every key is present in the file, so that it documents all of them.
	data, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := range configType.NumField() {
		f := configType.Field(i)
		if !strings.Contains(string(data), "\n"+yamlName(f)+":") {
			t.Errorf("config.yaml lacks the section %s", yamlName(f))
		}
		if f.Type.Kind() != reflect.Struct {
			continue
		}
		for j := range f.Type.NumField() {
			if name := yamlName(f.Type.Field(j)); !strings.Contains(string(data), "\n  "+name+":") {
				t.Errorf("config.yaml lacks %s.%s", yamlName(f), name)
			}
		}
	}
}

func TestCheckCron(t *testing.T) {
	tests := []struct {
		expr string
		ok   bool
	}{
		{"0 7 * * 1-5", true},
		{"0 9 * * 6", true},
		{"*/15 * * * *", true},
		{"0 6,18 1-15 jan-jun MON-FRI", true},
		{"30 8 ? * sun", true},
		{"0 7 * * 7", false},
		{"60 * * * *", false},
		{"0 7 0 * *", false},
		{"0 7 * 13 *", false},
		{"0 7 * * 5-1", false},
		{"*/0 * * * *", false},
		{"0 7 * *", false},
		{"0 7 * * * *", false},
		{"@daily", false},
		{"a b c d e", false},
	}
	for _, tt := range tests {
		err := checkCron(tt.expr)
		if (err == nil) != tt.ok {
			t.Errorf("checkCron(%q) = %v, want ok=%v", tt.expr, err, tt.ok)
		}
	}
}
