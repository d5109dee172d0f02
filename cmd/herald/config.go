package main

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"herald/articles"
	"herald/delivery"
	"herald/digest"
	"herald/mailer"
	"herald/subscribers"
)

// Config is Herald's whole configuration. It is filled in three layers:
// defaultConfig, then the YAML file, then HERALD_* environment variables, and
// then validated. Every scalar key can be overridden from the environment:
// HERALD_ + the key path upper-cased with dots as underscores
// (smtp.host -> HERALD_SMTP_HOST). Lists of mappings (newsletters, feeds,
// smtp.relays) come from the file, but the scalar keys of the elements the
// file lists can be overridden by index (smtp.relays[0].password ->
// HERALD_SMTP_RELAYS_0_PASSWORD); lists of strings take a comma-separated
// value.
type Config struct {
	HTTP        HTTPConfig         `yaml:"http"`
	Database    DatabaseConfig     `yaml:"database"`
	Mail        MailConfig         `yaml:"mail"`
	SMTP        SMTPConfig         `yaml:"smtp"`
	Admin       AdminConfig        `yaml:"admin"`
	Limits      LimitsConfig       `yaml:"limits"`
	Delivery    DeliveryConfig     `yaml:"delivery"`
	Articles    ArticlesConfig     `yaml:"articles"`
	Digest      DigestConfig       `yaml:"digest"`
	Site        SiteConfig         `yaml:"site"`
	Log         LogConfig          `yaml:"log"`
	Privacy     PrivacyConfig      `yaml:"privacy"`
	Metrics     MetricsConfig      `yaml:"metrics"`
	DKIM        DKIMConfig         `yaml:"dkim"`
	Newsletters []NewsletterConfig `yaml:"newsletters"`
	Feeds       []FeedConfig       `yaml:"feeds"`
	Bounces     BouncesConfig      `yaml:"bounces"`
	Webhooks    WebhooksConfig     `yaml:"webhooks"`
}

// HTTPConfig is the web server.
type HTTPConfig struct {
	// Addr is the listen address, host:port.
	Addr string `yaml:"addr"`
	// BaseURL is the public URL used in every link Herald writes, without a
	// trailing slash.
	BaseURL string `yaml:"base_url"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// CORSOrigins are the exact origins whose scripts may post a JSON
	// signup and read the answer; form posts are taken from anywhere.
	CORSOrigins []string `yaml:"cors_origins"`
	// FrameAncestors are the CSP sources that may frame the signup page,
	// for a form embedded in the news site's pages.
	FrameAncestors    []string      `yaml:"frame_ancestors"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// once a stop is asked for.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DatabaseConfig chooses the storage engine.
type DatabaseConfig struct {
	// Driver is "sqlite" or "postgres".
	Driver string `yaml:"driver"`
	// DSN is a file path for sqlite, a connection string for postgres.
	DSN string `yaml:"dsn"`
	// MaxConns caps the connections of the postgres pool; 0 leaves it to
	// the DSN's pool_max_conns, else the greater of 4 and the CPUs.
	MaxConns int `yaml:"max_conns" range:"0-10000"`
	// MinConns is how many postgres connections are kept open when idle.
	MinConns int `yaml:"min_conns" range:"0-10000"`
	// MaxConnLifetime is how long a postgres connection is used before it
	// is replaced; 0 leaves it to the DSN, else one hour.
	MaxConnLifetime time.Duration `yaml:"max_conn_lifetime"`
}

// MailConfig is what every outgoing email shares.
type MailConfig struct {
	// Transport is "outbox" (write .eml files) or "smtp".
	Transport string `yaml:"transport"`
	// OutboxDir is where the outbox transport writes.
	OutboxDir string `yaml:"outbox_dir"`
	// From is the From address, e.g. "PassBlue <news@passblue.example>".
	From string `yaml:"from"`
	// ReplyTo is an optional Reply-To address.
	ReplyTo string `yaml:"reply_to"`
	// PostalAddress is printed in every footer (CAN-SPAM).
	PostalAddress string `yaml:"postal_address"`
	// TemplatesDir, if set, is a directory of email templates that replace
	// the built-in ones of the same name (e.g. digest.html.tmpl).
	TemplatesDir string `yaml:"templates_dir"`
	// BounceDomain, if set, turns VERP on: every email's return path
	// (envelope sender) is bounces+<token>@BounceDomain, the token naming
	// the message, so that a bounce names it even when it names no
	// address. The domain's MX must deliver to the mailbox that
	// herald bounces import reads (or to the provider whose webhook
	// reports bounces).
	BounceDomain string `yaml:"bounce_domain"`
	// CFBLAddress, if set, is where mailbox providers send complaint
	// reports (RFC 9477): every email carries "CFBL-Address: <it>;
	// report=arf", CFBL-Feedback-ID and Feedback-ID. Its domain must align
	// with the DKIM signature, which must cover those headers.
	CFBLAddress string `yaml:"cfbl_address"`
}

// SMTPConfig is the relay used when mail.transport is "smtp".
type SMTPConfig struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port" range:"1-65535"`
	// TLS is "none", "starttls" or "tls".
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Connections is how many relay connections are kept open at most.
	Connections int           `yaml:"connections" range:"1-1000"`
	Timeout     time.Duration `yaml:"timeout"`
	// Relays are more relays beside this one (the primary, named
	// "default" in metrics): a relay with Domains takes the mail for those
	// recipient domains; one without shares the rest with the primary in
	// proportion to its Weight (the primary's is 1), and takes over while
	// another is down.
	Relays []RelayConfig `yaml:"relays"`
}

// RelayConfig is one more SMTP relay (smtp.relays[i]). Its timeout is
// smtp.timeout.
type RelayConfig struct {
	// Name names the relay in logs and metrics: a slug.
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	Port int    `yaml:"port" range:"1-65535"`
	// TLS is "none", "starttls" or "tls".
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Weight is the relay's share of the mail no Domains entry claims,
	// against the primary's 1. Only for relays without Domains.
	Weight int `yaml:"weight" range:"0-1000"`
	// Domains are the recipient domains this relay takes: "example.org",
	// or "*.example.org" for its subdomains.
	Domains []string `yaml:"domains"`
	// Connections caps the relay's open connections; 0 means
	// smtp.connections.
	Connections int `yaml:"connections" range:"0-1000"`
}

// setDefaults fills a relay before the file's values are applied.
func (r *RelayConfig) setDefaults() {
	r.Port = 587
	r.TLS = "starttls"
}

// MetricsConfig is GET /metrics.
type MetricsConfig struct {
	// Public serves /metrics to anyone; false (the default) requires an
	// admin API token (a read-scoped one is enough).
	Public bool `yaml:"public"`
}

// DKIMConfig turns on in-app DKIM signing (off while PrivateKeyFile is
// empty).
type DKIMConfig struct {
	// Selector names the key: its public half is published at
	// Selector._domainkey.Domain.
	Selector string `yaml:"selector"`
	// Domain is the signing domain (d=): the domain of mail.from, or a
	// parent of it, for DMARC alignment.
	Domain string `yaml:"domain"`
	// PrivateKeyFile is a PEM file holding an RSA (2048 bits recommended)
	// or Ed25519 private key.
	PrivateKeyFile string `yaml:"private_key_file"`
	// Headers are the header fields always signed; From is required.
	Headers []string `yaml:"headers"`
}

// Enabled reports whether DKIM signing is on.
func (d *DKIMConfig) Enabled() bool { return d.PrivateKeyFile != "" }

// AdminConfig is the admin API.
type AdminConfig struct {
	// Token is a bootstrap admin API token; prefer HERALD_ADMIN_TOKEN.
	Token string `yaml:"token"`
}

// LimitsConfig holds abuse limits.
type LimitsConfig struct {
	// SignupPerIP is how many signups one client IP may make per minute;
	// 0 turns the limit off.
	SignupPerIP int `yaml:"signup_per_ip" range:"0-1000000"`
	// SignupPerSubnet is how many signups one subnet (IPv4 /24, IPv6 /48)
	// may make per minute; 0 turns the limit off.
	SignupPerSubnet int `yaml:"signup_per_subnet" range:"0-1000000"`
	// MinFillTime is the least time a person takes to fill in the signup
	// form; a faster form is answered as accepted and dropped. 0 turns the
	// check off.
	MinFillTime time.Duration `yaml:"min_fill_time"`
	// DisposableDomainsFile names a list of disposable email domains, one
	// a line, that replaces the built-in one; "" keeps the built-in list.
	DisposableDomainsFile string `yaml:"disposable_domains_file"`
	// CheckMX refuses a signup whose domain receives no mail.
	CheckMX bool `yaml:"check_mx"`
	// MXTimeout bounds that DNS lookup; past it the signup is taken.
	MXTimeout time.Duration `yaml:"mx_timeout"`
	// Altcha is when signups must carry a proof of work: off, attack
	// (while signups spike) or always.
	Altcha string `yaml:"altcha"`
	// AttackThreshold is how many signups in a minute turn attack mode on.
	AttackThreshold int `yaml:"attack_threshold" range:"1-100000000"`
	// AttackCooldown is how long attack mode stays on after the last spike.
	AttackCooldown time.Duration `yaml:"attack_cooldown"`
}

// DeliveryConfig tunes the outbox engine.
type DeliveryConfig struct {
	// Workers is how many messages are rendered and sent at once; 0 turns
	// delivery off on this instance (it still takes signups and queues mail).
	Workers int `yaml:"workers" range:"0-1000"`
	// BatchSize is how many messages one claim takes.
	BatchSize int `yaml:"batch_size" range:"1-100000"`
	// Lease is how long a claimed message stays with this instance.
	Lease time.Duration `yaml:"lease"`
	// RetryBase is the first retry delay; it doubles up to RetryMax.
	RetryBase time.Duration `yaml:"retry_base"`
	RetryMax  time.Duration `yaml:"retry_max"`
	// MaxAge is how long a message may keep failing before it is given up.
	MaxAge time.Duration `yaml:"max_age"`
	// RatePerSecond caps the sends started per second by this instance;
	// 0 means no limit.
	RatePerSecond float64 `yaml:"rate_per_second"`
	// PerDomainConcurrency caps the sends in flight at once to one
	// recipient domain; 0 means no limit.
	PerDomainConcurrency int `yaml:"per_domain_concurrency" range:"0-1000"`
}

// ArticlesConfig tunes how articles come in from feeds.
type ArticlesConfig struct {
	// PollInterval is how often `herald serve` polls every feed.
	PollInterval time.Duration `yaml:"poll_interval"`
	// FetchTimeout bounds one feed fetch, body included.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxFeedBytes is the largest feed body accepted, in bytes.
	MaxFeedBytes int `yaml:"max_feed_bytes" range:"1024-1073741824"`
}

// DigestConfig tunes how digest issues are built.
type DigestConfig struct {
	// CheckInterval is how often the scheduler looks for a newsletter
	// whose schedule slot has come.
	CheckInterval time.Duration `yaml:"check_interval"`
	// BatchSize is how many readers are enqueued per transaction when an
	// issue is built.
	BatchSize int `yaml:"batch_size" range:"1-100000"`
}

// SiteConfig describes the publication the newsletters belong to.
type SiteConfig struct {
	Name       string `yaml:"name"`
	URL        string `yaml:"url"`
	PrivacyURL string `yaml:"privacy_url"`
	// ConsentVersion is recorded with every signup; change it whenever
	// ConsentText changes.
	ConsentVersion string `yaml:"consent_version"`
	// ConsentText is the consent sentence shown beside the signup button.
	ConsentText string `yaml:"consent_text"`
}

// LogConfig is the process log, written to stderr.
type LogConfig struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `yaml:"level"`
	// Format is "text" or "json".
	Format string `yaml:"format"`
}

// PrivacyConfig is what Herald keeps about readers, and for how long.
type PrivacyConfig struct {
	// IPMode is how much of a reader's IP a consent record keeps: "full",
	// "truncate" (IPv4 /24, IPv6 /48) or "hash" (a keyed hash).
	IPMode string `yaml:"ip_mode"`
	// PendingRetention is how long an unconfirmed signup is kept; 0 keeps
	// them forever.
	PendingRetention time.Duration `yaml:"pending_retention"`
	// DeliveryLogDays is how many days a settled message is kept one by
	// one before it is counted into the daily statistics; 0 keeps them
	// forever.
	DeliveryLogDays int `yaml:"delivery_log_days" range:"0-36500"`
}

// NewsletterConfig is one newsletter readers can choose.
type NewsletterConfig struct {
	// ID is a slug ([a-z0-9-]) used in URLs, CSV files and the API.
	ID          string `yaml:"id"`
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Schedule is a 5-field cron expression, read in Timezone.
	Schedule string `yaml:"schedule"`
	// Timezone is an IANA zone name such as America/New_York.
	Timezone string `yaml:"timezone"`
	// MaxArticles caps the articles in one issue.
	MaxArticles int `yaml:"max_articles" range:"1-1000"`
	// Tags: articles carrying any of them go into the newsletter, beside
	// those of the feeds that list it.
	Tags []string `yaml:"tags"`
	// NewReaderArticles is how many of the latest articles a reader who
	// never received an issue gets; at most MaxArticles.
	NewReaderArticles int `yaml:"new_reader_articles" range:"1-1000"`
	// Lookback bounds how old an article may be to go into an issue.
	Lookback time.Duration `yaml:"lookback"`
}

// Newsletter defaults, applied to each list element before the file's
// values.
const (
	defaultMaxArticles       = 10
	defaultNewReaderArticles = 3
	defaultLookback          = 30 * 24 * time.Hour
)

// setDefaults fills a list element before the file's values are applied.
func (n *NewsletterConfig) setDefaults() {
	n.Timezone = "UTC"
	n.MaxArticles = defaultMaxArticles
	n.NewReaderArticles = defaultNewReaderArticles
	n.Lookback = defaultLookback
}

// FeedConfig is one RSS/Atom feed polled for articles.
type FeedConfig struct {
	URL string `yaml:"url"`
	// Newsletters are the ids of the newsletters the feed's articles go to.
	Newsletters []string `yaml:"newsletters"`
}

// defaultConfig returns the values used for every key the file and the
// environment leave out.
func defaultConfig() Config {
	return Config{
		HTTP: HTTPConfig{
			Addr:              "127.0.0.1:8080",
			BaseURL:           "http://127.0.0.1:8080",
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ShutdownTimeout:   15 * time.Second,
			FrameAncestors:    []string{"'self'"},
		},
		Database: DatabaseConfig{Driver: "sqlite", DSN: "data/herald.db"},
		Mail:     MailConfig{Transport: "outbox", OutboxDir: "data/outbox"},
		SMTP: SMTPConfig{
			Port:        587,
			TLS:         "starttls",
			Connections: 4,
			Timeout:     30 * time.Second,
		},
		Limits: LimitsConfig{SignupPerIP: 10, SignupPerSubnet: 60, MinFillTime: 2 * time.Second, MXTimeout: 3 * time.Second,
			Altcha: "attack", AttackThreshold: 100, AttackCooldown: 10 * time.Minute},
		Delivery: DeliveryConfig{
			Workers:   4,
			BatchSize: 100,
			Lease:     2 * time.Minute,
			RetryBase: 30 * time.Second,
			RetryMax:  time.Hour,
			MaxAge:    72 * time.Hour,
		},
		Articles: ArticlesConfig{
			PollInterval: articles.DefaultPollInterval,
			FetchTimeout: articles.DefaultFetchTimeout,
			MaxFeedBytes: articles.DefaultMaxFeedBytes,
		},
		Digest: DigestConfig{
			CheckInterval: 30 * time.Second,
			BatchSize:     2000,
		},
		Site: SiteConfig{
			Name:           "Herald",
			ConsentVersion: "1",
			ConsentText:    "I agree to receive the newsletters I chose. I can unsubscribe at any time with the link in every email.",
		},
		Privacy: PrivacyConfig{
			IPMode:           "truncate",
			PendingRetention: 720 * time.Hour,
			DeliveryLogDays:  180,
		},
		Log:  LogConfig{Level: "info", Format: "text"},
		DKIM: DKIMConfig{Headers: mailer.DefaultDKIMHeaders()},
	}
}

// FromAddress returns mail.from parsed. It is valid once the config is.
func (c *Config) FromAddress() *mail.Address {
	a, err := mail.ParseAddress(c.Mail.From)
	if err != nil {
		return &mail.Address{Address: c.Mail.From}
	}
	return a
}

// NewsletterIDs returns the configured newsletter ids in file order.
func (c *Config) NewsletterIDs() []string {
	ids := make([]string, len(c.Newsletters))
	for i, n := range c.Newsletters {
		ids[i] = n.ID
	}
	return ids
}

// DigestNewsletters returns the newsletters as the digest service takes
// them: schedules parsed, tags normalised, and Feeds holding the URL of every
// feeds[] entry that lists the newsletter. It fails only for a configuration
// that did not validate.
func (c *Config) DigestNewsletters() ([]digest.Newsletter, error) {
	out := make([]digest.Newsletter, len(c.Newsletters))
	for i, n := range c.Newsletters {
		sched, err := digest.ParseSchedule(n.Schedule, n.Timezone)
		if err != nil {
			return nil, fmt.Errorf("newsletters[%d].schedule: %w", i, err)
		}
		var feeds []string
		for _, f := range c.Feeds {
			if slices.Contains(f.Newsletters, n.ID) {
				feeds = append(feeds, f.URL)
			}
		}
		var tags []string
		for _, t := range n.Tags {
			if t = normalizeTag(t); t != "" && !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		out[i] = digest.Newsletter{
			ID:                n.ID,
			Name:              n.Name,
			Description:       n.Description,
			Schedule:          sched,
			Feeds:             feeds,
			Tags:              tags,
			MaxArticles:       n.MaxArticles,
			NewReaderArticles: n.NewReaderArticles,
			Lookback:          n.Lookback,
		}
	}
	return out, nil
}

// FeedConfigs returns feeds[] as the articles poller takes them.
func (c *Config) FeedConfigs() []articles.FeedConfig {
	out := make([]articles.FeedConfig, len(c.Feeds))
	for i, f := range c.Feeds {
		out[i] = articles.FeedConfig{URL: f.URL, Newsletters: slices.Clone(f.Newsletters)}
	}
	return out
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key    string // the key path, e.g. smtp.port or newsletters[1].schedule
	Msg    string // what is wrong, e.g. must be 1-65535, got "abc"
	Source string // where the value came from: "config.yaml line 12", "HERALD_SMTP_PORT"
}

// String formats p as "key: message (source)".
func (p Problem) String() string {
	s := p.Key + ": " + p.Msg
	if p.Source != "" {
		s += " (" + p.Source + ")"
	}
	return s
}

// ConfigError is a configuration that cannot be used: a file that cannot be
// read or parsed, unknown keys, or values that fail validation. Each problem
// names its key.
type ConfigError struct {
	Problems []Problem
	// Note adds context, e.g. that no file was found and defaults were used.
	Note string
}

// Error lists the problems, one per line.
func (e *ConfigError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	if e.Note != "" {
		lines = append(lines, e.Note)
	}
	return strings.Join(lines, "\n")
}

// configSource says where to read the configuration from.
type configSource struct {
	Path string
	// Explicit is true when the path was asked for (--config or
	// HERALD_CONFIG): a missing file is then an error.
	Explicit bool
	// LookupEnv reads the environment; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
}

// loadConfig builds the configuration from defaults, the file and the
// environment, and validates it. Every error it returns is a *ConfigError.
func loadConfig(src configSource) (*Config, error) {
	lookup := src.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	cfg := defaultConfig()
	l := &loader{file: src.Path, sources: map[string]string{}}

	var note string
	data, err := os.ReadFile(src.Path)
	switch {
	case err == nil:
		l.decodeFile(data, &cfg)
	case errors.Is(err, fs.ErrNotExist) && !src.Explicit:
		note = fmt.Sprintf("(no configuration file at %s; built-in defaults were used: pass --config FILE or set HERALD_CONFIG)", src.Path)
	default:
		return nil, &ConfigError{Problems: []Problem{{Key: "config", Msg: fmt.Sprintf("cannot read %s: %v", src.Path, unwrapPathError(err))}}}
	}
	l.applyEnv(reflect.ValueOf(&cfg).Elem(), "", lookup)
	if len(l.problems) == 0 {
		l.validate(&cfg)
	}
	if len(l.problems) > 0 {
		return nil, &ConfigError{Problems: l.problems, Note: note}
	}
	return &cfg, nil
}

// unwrapPathError drops the path from a *fs.PathError, which the caller
// already names.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loader applies layers to a Config, remembering where each key came from so
// that a validation error can point at the line or variable to fix.
type loader struct {
	file     string
	sources  map[string]string
	problems []Problem
}

func (l *loader) add(key, source, format string, args ...any) {
	l.problems = append(l.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...), Source: source})
}

func (l *loader) lineSource(n *yaml.Node) string {
	return fmt.Sprintf("%s line %d", l.file, n.Line)
}

// decodeFile walks the YAML document beside the Config struct. Walking the
// node tree ourselves, rather than decoding with KnownFields(true), lets every
// error name the full key path and its line, and lets YAML scalars and
// environment values share one parser.
func (l *loader) decodeFile(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // an empty file: defaults
			return
		}
		l.add("config", "", "%s is not valid YAML: %v", l.file, err)
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		l.add("config", "", "%s must hold one YAML document", l.file)
		return
	}
	l.decode(&doc, reflect.ValueOf(cfg).Elem(), "")
}

var durationType = reflect.TypeFor[time.Duration]()

// decode sets v from node; key is v's key path ("" for the root).
func (l *loader) decode(node *yaml.Node, v reflect.Value, key string) {
	for node.Kind == yaml.DocumentNode || node.Kind == yaml.AliasNode {
		if node.Kind == yaml.DocumentNode {
			if len(node.Content) == 0 {
				return
			}
			node = node.Content[0]
		} else {
			node = node.Alias
		}
	}
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	name := key
	if name == "" {
		name = "config"
	}
	switch {
	case v.Kind() == reflect.Struct:
		if node.Kind != yaml.MappingNode {
			l.add(name, l.lineSource(node), "must be a mapping of keys, got %s", describeNode(node))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			child := joinKey(key, k.Value)
			if first, dup := seen[k.Value]; dup {
				l.add(child, l.lineSource(k), "is set twice (first at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				l.add(child, l.lineSource(k), "unknown key%s", suggest(v.Type(), k.Value))
				continue
			}
			l.decode(val, f, child)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if node.Kind != yaml.SequenceNode {
			l.add(name, l.lineSource(node), "must be a list, got %s", describeNode(node))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
		for i, item := range node.Content {
			e := s.Index(i)
			if d, ok := e.Addr().Interface().(interface{ setDefaults() }); ok {
				d.setDefaults()
			}
			l.decode(item, e, fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			l.add(name, l.lineSource(node), "must be a list, got %s", describeNode(node))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
		for i, item := range node.Content {
			for item.Kind == yaml.AliasNode {
				item = item.Alias
			}
			ik := fmt.Sprintf("%s[%d]", key, i)
			if item.Kind != yaml.ScalarNode {
				l.add(ik, l.lineSource(item), "must be a single value, got %s", describeNode(item))
				continue
			}
			if err := setScalar(s.Index(i), reflect.StructField{}, item.Value); err != nil {
				l.add(ik, l.lineSource(item), "%v", err)
			}
		}
		v.Set(s)
		l.sources[key] = l.lineSource(node)
	default:
		if node.Kind != yaml.ScalarNode {
			l.add(name, l.lineSource(node), "must be a single value, got %s", describeNode(node))
			return
		}
		if err := setScalar(v, fieldOf(key), node.Value); err != nil {
			l.add(name, l.lineSource(node), "%v", err)
			return
		}
		l.sources[key] = l.lineSource(node)
	}
}

// describeNode names a YAML node's shape for an error message.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// applyEnv overrides every scalar (and list-of-strings) key under v whose
// HERALD_* variable is set.
func (l *loader) applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		key := joinKey(prefix, yamlName(sf))
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct && f.Type() != durationType:
			l.applyEnv(f, key, lookup)
			continue
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			// The file makes the elements; the environment may override
			// their scalar keys by index.
			for j := range f.Len() {
				l.applyEnv(f.Index(j), fmt.Sprintf("%s[%d]", key, j), lookup)
			}
			continue
		}
		name := envName(key)
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if f.Kind() == reflect.Slice {
			var items []string
			for s := range strings.SplitSeq(raw, ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, s)
				}
			}
			f.Set(reflect.ValueOf(items))
		} else if err := setScalar(f, sf, raw); err != nil {
			l.add(key, name, "%v", err)
			continue
		}
		l.sources[key] = name
	}
}

// envName is the variable that overrides key: smtp.host -> HERALD_SMTP_HOST,
// smtp.relays[0].password -> HERALD_SMTP_RELAYS_0_PASSWORD.
func envName(key string) string {
	key = strings.NewReplacer(".", "_", "[", "_", "]", "").Replace(key)
	return "HERALD_" + strings.ToUpper(key)
}

// setScalar parses raw into v according to v's type; sf carries the range
// tag that shapes the error message for integers.
func setScalar(v reflect.Value, sf reflect.StructField, raw string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("must be a duration such as 30s, 5m or 1h30m, got %q", raw)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			if r := sf.Tag.Get("range"); r != "" {
				return fmt.Errorf("must be %s, got %q", r, raw)
			}
			return fmt.Errorf("must be a whole number, got %q", raw)
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("must be a number such as 50 or 12.5, got %q", raw)
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", raw)
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("cannot be set (unsupported type %s)", v.Type())
	}
	return nil
}

// configType is the reflected Config, used to find struct tags by key path.
var configType = reflect.TypeFor[Config]()

// fieldOf returns the struct field a key path names (list indexes are
// ignored), or the zero StructField.
func fieldOf(key string) reflect.StructField {
	t := configType
	var sf reflect.StructField
	for part := range strings.SplitSeq(key, ".") {
		if i := strings.IndexByte(part, '['); i >= 0 {
			part = part[:i]
		}
		for t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return reflect.StructField{}
		}
		found := false
		for i := range t.NumField() {
			if yamlName(t.Field(i)) == part {
				sf, t, found = t.Field(i), t.Field(i).Type, true
				break
			}
		}
		if !found {
			return reflect.StructField{}
		}
	}
	return sf
}

func yamlName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(sf.Name)
	}
	return name
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// suggest proposes the closest known key for a misspelt one.
func suggest(t reflect.Type, name string) string {
	best, bestDist := "", 3
	for i := range t.NumField() {
		cand := yamlName(t.Field(i))
		if d := editDistance(name, cand); d < bestDist {
			best, bestDist = cand, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var slugRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// validate checks every value and the relations between them, adding one
// problem per bad key.
func (l *loader) validate(c *Config) {
	bad := func(key, format string, args ...any) { l.add(key, l.sources[key], format, args...) }
	oneOf := func(key, got string, allowed ...string) {
		for _, a := range allowed {
			if got == a {
				return
			}
		}
		bad(key, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %q", d.String())
		}
	}
	l.checkRanges(reflect.ValueOf(c).Elem(), "")

	// http
	if host, port, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr", "must be host:port (host may be empty), got %q", c.HTTP.Addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.ContainsAny(host, "/ ") {
		bad("http.addr", "must be host:port with a port 0-65535, got %q", c.HTTP.Addr)
	}
	if msg := checkHTTPURL(c.HTTP.BaseURL, true); msg != "" {
		bad("http.base_url", "%s, got %q", msg, c.HTTP.BaseURL)
	} else if strings.HasSuffix(c.HTTP.BaseURL, "/") {
		bad("http.base_url", "must not end with a slash, got %q", c.HTTP.BaseURL)
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "must be a CIDR such as 10.0.0.0/8 or ::1/128, got %q", p)
		}
	}
	for i, o := range c.HTTP.CORSOrigins {
		if u, err := url.Parse(o); checkHTTPURL(o, true) != "" || err != nil || u.Path != "" || strings.Contains(o, "*") {
			bad(fmt.Sprintf("http.cors_origins[%d]", i), "must be an exact origin such as https://news.example.org (no path, no wildcard), got %q", o)
		}
	}
	for i, src := range c.HTTP.FrameAncestors {
		if src == "" || strings.ContainsAny(src, ";, \t\r\n") {
			bad(fmt.Sprintf("http.frame_ancestors[%d]", i), "must be a CSP source such as 'self' or https://news.example.org, got %q", src)
		}
	}
	positive("limits.mx_timeout", c.Limits.MXTimeout)
	positive("limits.attack_cooldown", c.Limits.AttackCooldown)
	oneOf("limits.altcha", c.Limits.Altcha, "off", "attack", "always")
	if c.Limits.MinFillTime < 0 || c.Limits.MinFillTime > time.Hour {
		bad("limits.min_fill_time", "must be between 0 and 1h, got %q", c.Limits.MinFillTime.String())
	}
	positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positive("http.read_timeout", c.HTTP.ReadTimeout)
	positive("http.write_timeout", c.HTTP.WriteTimeout)
	positive("http.idle_timeout", c.HTTP.IdleTimeout)
	positive("http.shutdown_timeout", c.HTTP.ShutdownTimeout)

	// database
	oneOf("database.driver", c.Database.Driver, "sqlite", "postgres")
	if strings.TrimSpace(c.Database.DSN) == "" {
		bad("database.dsn", "is required: a file path for sqlite, a connection string for postgres")
	}
	if c.Database.MaxConns > 0 && c.Database.MinConns > c.Database.MaxConns {
		bad("database.min_conns", "must be at most database.max_conns (%d), got %q", c.Database.MaxConns, strconv.Itoa(c.Database.MinConns))
	}
	if c.Database.MaxConnLifetime < 0 {
		bad("database.max_conn_lifetime", "must be a positive duration, or 0 for the default, got %q", c.Database.MaxConnLifetime.String())
	}
	if c.Database.Driver == "postgres" && c.Database.MaxConns == 1 {
		// The scheduler's leader lock keeps one connection for itself.
		bad("database.max_conns", "must be at least 2 with postgres (the scheduler's leader lock holds one connection), got \"1\"")
	}

	// mail
	oneOf("mail.transport", c.Mail.Transport, "outbox", "smtp")
	if c.Mail.Transport == "outbox" && strings.TrimSpace(c.Mail.OutboxDir) == "" {
		bad("mail.outbox_dir", "is required when mail.transport is outbox")
	}
	if strings.TrimSpace(c.Mail.From) == "" {
		bad("mail.from", "is required, e.g. \"PassBlue <news@passblue.example>\"")
	} else if _, err := mail.ParseAddress(c.Mail.From); err != nil {
		bad("mail.from", "must be an address such as \"PassBlue <news@passblue.example>\", got %q", c.Mail.From)
	}
	if c.Mail.ReplyTo != "" {
		if _, err := mail.ParseAddress(c.Mail.ReplyTo); err != nil {
			bad("mail.reply_to", "must be an address such as \"Newsroom <desk@passblue.example>\", got %q", c.Mail.ReplyTo)
		}
	}
	if strings.TrimSpace(c.Mail.PostalAddress) == "" {
		bad("mail.postal_address", "is required: the physical address printed in every email footer (CAN-SPAM)")
	}
	if c.Mail.TemplatesDir != "" {
		if fi, err := os.Stat(c.Mail.TemplatesDir); err != nil {
			bad("mail.templates_dir", "must be a readable directory: %v, got %q", unwrapPathError(err), c.Mail.TemplatesDir)
		} else if !fi.IsDir() {
			bad("mail.templates_dir", "must be a directory, got the file %q", c.Mail.TemplatesDir)
		}
	}

	// smtp
	if c.Mail.Transport == "smtp" && strings.TrimSpace(c.SMTP.Host) == "" {
		bad("smtp.host", "is required when mail.transport is smtp")
	}
	oneOf("smtp.tls", c.SMTP.TLS, "none", "starttls", "tls")
	if c.SMTP.Password != "" && c.SMTP.Username == "" {
		bad("smtp.username", "is required when smtp.password is set")
	}
	// The SMTP client refuses to send a password in clear to anything but
	// this machine; say so now rather than fail every delivery later.
	if c.Mail.Transport == "smtp" && c.SMTP.Username != "" && c.SMTP.TLS == "none" && !isLocalHost(c.SMTP.Host) {
		bad("smtp.tls", "must be starttls or tls when smtp.username is set: the password would cross the network in clear (only a relay on localhost may use none)")
	}
	positive("smtp.timeout", c.SMTP.Timeout)
	l.validateRelays(c, bad)
	l.validateDKIM(c, bad)
	if c.Delivery.RatePerSecond < 0 {
		bad("delivery.rate_per_second", "must be 0 (no limit) or more, got %q", strconv.FormatFloat(c.Delivery.RatePerSecond, 'g', -1, 64))
	}

	// bounces and complaints
	l.validateBounces(c, bad)

	// delivery
	positive("delivery.lease", c.Delivery.Lease)
	positive("delivery.retry_base", c.Delivery.RetryBase)
	positive("delivery.retry_max", c.Delivery.RetryMax)
	positive("delivery.max_age", c.Delivery.MaxAge)
	if c.Delivery.RetryBase > 0 && c.Delivery.RetryMax < c.Delivery.RetryBase {
		bad("delivery.retry_max", "must be at least delivery.retry_base (%s), got %q", c.Delivery.RetryBase, c.Delivery.RetryMax.String())
	}

	// articles
	positive("articles.poll_interval", c.Articles.PollInterval)
	positive("articles.fetch_timeout", c.Articles.FetchTimeout)

	// digest
	positive("digest.check_interval", c.Digest.CheckInterval)

	// site
	if strings.TrimSpace(c.Site.Name) == "" {
		bad("site.name", "is required: the publication's name, shown on pages and in emails")
	}
	if c.Site.URL != "" {
		if msg := checkHTTPURL(c.Site.URL, false); msg != "" {
			bad("site.url", "%s, got %q", msg, c.Site.URL)
		}
	}
	if c.Site.PrivacyURL != "" {
		if msg := checkHTTPURL(c.Site.PrivacyURL, false); msg != "" {
			bad("site.privacy_url", "%s, got %q", msg, c.Site.PrivacyURL)
		}
	}
	if strings.TrimSpace(c.Site.ConsentVersion) == "" {
		bad("site.consent_version", "is required: it is recorded with every signup")
	}
	if strings.TrimSpace(c.Site.ConsentText) == "" {
		bad("site.consent_text", "is required: the consent sentence shown on the signup form")
	}

	// log
	// privacy
	oneOf("privacy.ip_mode", c.Privacy.IPMode, "full", "truncate", "hash")
	if p := c.Privacy.PendingRetention; p < 0 || (p > 0 && p < subscribers.DefaultConfirmTTL) {
		bad("privacy.pending_retention", "must be 0 (keep forever) or at least %s (a confirmation link's lifetime), got %q", subscribers.DefaultConfirmTTL, p.String())
	}

	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")

	// newsletters
	if len(c.Newsletters) == 0 {
		bad("newsletters", "must list at least one newsletter")
	}
	ids := map[string]int{}
	for i, n := range c.Newsletters {
		k := fmt.Sprintf("newsletters[%d]", i)
		switch {
		case n.ID == "":
			bad(k+".id", "is required: a slug such as daily")
		case !slugRE.MatchString(n.ID):
			bad(k+".id", "must be a slug of a-z, 0-9 and inner hyphens, got %q", n.ID)
		default:
			if j, dup := ids[n.ID]; dup {
				bad(k+".id", "%q is already the id of newsletters[%d]", n.ID, j)
			} else {
				ids[n.ID] = i
			}
		}
		if strings.TrimSpace(n.Name) == "" {
			bad(k+".name", "is required")
		}
		cronOK := false
		if err := checkCron(n.Schedule); err != nil {
			bad(k+".schedule", "%v", err)
		} else {
			cronOK = true
		}
		if n.Timezone == "" {
			bad(k+".timezone", "is required: an IANA zone such as America/New_York or UTC")
		} else if _, err := time.LoadLocation(n.Timezone); err != nil {
			bad(k+".timezone", "must be an IANA zone such as America/New_York or UTC, got %q", n.Timezone)
		} else if _, err := digest.ParseSchedule(n.Schedule, n.Timezone); err != nil && cronOK {
			bad(k+".schedule", "%v", err)
		}
		if n.NewReaderArticles > n.MaxArticles && n.MaxArticles > 0 {
			bad(k+".new_reader_articles", "must be at most max_articles (%d), got %q", n.MaxArticles, strconv.Itoa(n.NewReaderArticles))
		}
		positive(k+".lookback", n.Lookback)
		tags := map[string]bool{}
		for j, tag := range n.Tags {
			tk := fmt.Sprintf("%s.tags[%d]", k, j)
			norm := normalizeTag(tag)
			switch {
			case norm == "":
				bad(tk, "must not be empty")
			case utf8.RuneCountInString(norm) > articles.MaxTagLen:
				bad(tk, "must be at most %d characters, got %q", articles.MaxTagLen, tag)
			case tags[norm]:
				bad(tk, "%q is listed twice", tag)
			}
			tags[norm] = true
		}
	}

	// feeds
	urls := map[string]int{}
	for i, f := range c.Feeds {
		k := fmt.Sprintf("feeds[%d]", i)
		if msg := checkHTTPURL(f.URL, false); msg != "" {
			bad(k+".url", "%s, got %q", msg, f.URL)
		} else if j, dup := urls[f.URL]; dup {
			bad(k+".url", "%q is already feeds[%d]", f.URL, j)
		} else {
			urls[f.URL] = i
		}
		if len(f.Newsletters) == 0 {
			bad(k+".newsletters", "must list at least one newsletter id")
		}
		for j, id := range f.Newsletters {
			if _, ok := ids[id]; !ok {
				bad(fmt.Sprintf("%s.newsletters[%d]", k, j), "no newsletter has the id %q", id)
			}
		}
	}
}

// validateRelays checks smtp.relays: unique slug names, a host, a TLS mode,
// credentials that never cross the network in clear, valid domain patterns
// claimed by one relay only, and a weight only where it means something.
func (l *loader) validateRelays(c *Config, bad func(key, format string, args ...any)) {
	names := map[string]int{}
	domains := map[string]int{}
	for i, r := range c.SMTP.Relays {
		k := fmt.Sprintf("smtp.relays[%d]", i)
		switch {
		case r.Name == "":
			bad(k+".name", "is required: a slug such as bulk, named in logs and metrics")
		case !slugRE.MatchString(r.Name):
			bad(k+".name", "must be a slug of a-z, 0-9 and inner hyphens, got %q", r.Name)
		case r.Name == delivery.DefaultRelay:
			bad(k+".name", "%q names the primary relay (smtp.host); choose another name", r.Name)
		default:
			if j, dup := names[r.Name]; dup {
				bad(k+".name", "%q is already the name of smtp.relays[%d]", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		if strings.TrimSpace(r.Host) == "" {
			bad(k+".host", "is required")
		}
		oneOf := []string{"none", "starttls", "tls"}
		if !slices.Contains(oneOf, r.TLS) {
			bad(k+".tls", "must be one of %s, got %q", strings.Join(oneOf, ", "), r.TLS)
		}
		if r.Password != "" && r.Username == "" {
			bad(k+".username", "is required when %s.password is set", k)
		}
		if r.Username != "" && r.TLS == "none" && !isLocalHost(r.Host) {
			bad(k+".tls", "must be starttls or tls when %s.username is set: the password would cross the network in clear (only a relay on localhost may use none)", k)
		}
		if len(r.Domains) > 0 && r.Weight != 0 {
			bad(k+".weight", "has no effect on a relay with domains (it takes all of their mail); remove it")
		}
		for j, d := range r.Domains {
			dk := fmt.Sprintf("%s.domains[%d]", k, j)
			norm := mailer.AddressDomain("@" + d)
			if !validDomainPattern(norm) {
				bad(dk, "must be a domain such as example.org or *.example.org, got %q", d)
				continue
			}
			if other, dup := domains[norm]; dup {
				bad(dk, "%q is already routed by smtp.relays[%d]", d, other)
				continue
			}
			domains[norm] = i
		}
	}
	if len(c.SMTP.Relays) > 0 && c.Mail.Transport != "smtp" {
		bad("smtp.relays", "is only used when mail.transport is smtp, got mail.transport %q", c.Mail.Transport)
	}
}

// validDomainPattern reports whether d (lower case) is a host name of at
// least two labels, optionally behind "*.".
func validDomainPattern(d string) bool {
	d = strings.TrimPrefix(d, "*.")
	if !strings.Contains(d, ".") || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validateDKIM checks the dkim section when signing is on: a selector, a
// domain aligned with mail.from's, a key file that holds a usable key, and
// a header list with From.
func (l *loader) validateDKIM(c *Config, bad func(key, format string, args ...any)) {
	d := &c.DKIM
	if !d.Enabled() {
		if d.Selector != "" || d.Domain != "" {
			bad("dkim.private_key_file", "is required when dkim.selector or dkim.domain is set (leave all three empty to turn signing off)")
		}
		return
	}
	if d.Selector == "" {
		bad("dkim.selector", "is required when dkim.private_key_file is set, e.g. herald2026")
	}
	fromDomain := strings.ToLower(addressDomain(c.FromAddress().Address))
	domain := strings.ToLower(strings.TrimSuffix(d.Domain, "."))
	switch {
	case domain == "":
		bad("dkim.domain", "is required when dkim.private_key_file is set: the domain of mail.from (%s)", fromDomain)
	case fromDomain != "" && domain != fromDomain && !strings.HasSuffix(fromDomain, "."+domain) && !strings.HasSuffix(domain, "."+fromDomain):
		bad("dkim.domain", "must be the domain of mail.from (%s), a parent or a subdomain of it, or DMARC will not count the signature, got %q", fromDomain, d.Domain)
	}
	if d.Selector != "" && !dkimSelectorRE.MatchString(d.Selector) {
		bad("dkim.selector", "must be a DNS name of letters, digits, hyphens and underscores, e.g. herald2026, got %q", d.Selector)
	}
	if err := mailer.CheckDKIMHeaders(d.Headers); err != nil {
		bad("dkim.headers", "%s", strings.TrimPrefix(err.Error(), "dkim: "))
	}
	if _, err := readDKIMKey(d.PrivateKeyFile); err != nil {
		bad("dkim.private_key_file", "%v", err)
	}
}

var dkimSelectorRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// readDKIMKey reads and checks the private key in a PEM file.
func readDKIMKey(path string) (crypto.Signer, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	key, err := mailer.ParseDKIMKey(pemBytes)
	if err == nil {
		err = mailer.CheckDKIMKey(key)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return key, nil
}

// newDKIMSigner builds the signer dkim.* describes; nil when signing is off.
func newDKIMSigner(d *DKIMConfig) (*mailer.DKIMSigner, error) {
	if !d.Enabled() {
		return nil, nil
	}
	key, err := readDKIMKey(d.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("dkim.private_key_file: %w", err)
	}
	return mailer.NewDKIMSigner(mailer.DKIMConfig{
		Domain:   strings.TrimSuffix(d.Domain, "."),
		Selector: d.Selector,
		Key:      key,
		Headers:  d.Headers,
	})
}

// normalizeTag is a tag as articles store it: trimmed and lower case.
func normalizeTag(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkRanges enforces the range:"lo-hi" tags on integer keys.
func (l *loader) checkRanges(v reflect.Value, prefix string) {
	t := v.Type()
	for i := range t.NumField() {
		sf, f := t.Field(i), v.Field(i)
		key := joinKey(prefix, yamlName(sf))
		switch {
		case f.Kind() == reflect.Struct && f.Type() != durationType:
			l.checkRanges(f, key)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			for j := range f.Len() {
				l.checkRanges(f.Index(j), fmt.Sprintf("%s[%d]", key, j))
			}
		case f.Kind() == reflect.Int && sf.Tag.Get("range") != "":
			r := sf.Tag.Get("range")
			los, his, _ := strings.Cut(r, "-")
			lo, _ := strconv.Atoi(los)
			hi, _ := strconv.Atoi(his)
			if n := int(f.Int()); n < lo || n > hi {
				l.add(key, l.sources[key], "must be %s, got %q", r, strconv.Itoa(n))
			}
		}
	}
}

// checkHTTPURL returns why s is not an absolute http(s) URL, or "".
func checkHTTPURL(s string, bare bool) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an absolute http:// or https:// URL"
	}
	if bare && (u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		return "must be a plain URL without user, query or fragment"
	}
	return ""
}

// cronFields are the five fields of a standard cron expression.
var cronFields = []struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 6, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// checkCron validates a 5-field cron expression: the field count, and that
// every value, range and step is within its field's bounds. It accepts what
// robfig/cron's ParseStandard accepts, minus descriptors such as @daily.
func checkCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("must be a 5-field cron expression (minute hour day-of-month month day-of-week), got %q", expr)
	}
	for i, f := range fields {
		spec := cronFields[i]
		for part := range strings.SplitSeq(f, ",") {
			if err := checkCronPart(part, spec.min, spec.max, spec.names); err != nil {
				return fmt.Errorf("%s field %q: %v (in %q)", spec.name, part, err, expr)
			}
		}
	}
	return nil
}

func checkCronPart(part string, lo, hi int, names []string) error {
	rng, step, hasStep := strings.Cut(part, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n < 1 || n > hi-lo+1 {
			return fmt.Errorf("step must be 1-%d", hi-lo+1)
		}
	}
	if rng == "*" || rng == "?" {
		return nil
	}
	value := func(s string) (int, error) {
		for i, name := range names {
			if strings.EqualFold(s, name) {
				return lo + i, nil
			}
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("values must be %d-%d", lo, hi)
		}
		return n, nil
	}
	from, to, isRange := strings.Cut(rng, "-")
	a, err := value(from)
	if err != nil {
		return err
	}
	if isRange {
		b, err := value(to)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range start is after its end")
		}
	}
	return nil
}
