// Package web is Herald's HTTP face: the signup page behind a news site's
// "Don't miss a story" form, the confirm and unsubscribe pages that email
// links open, the admin JSON API and the health probes. Handlers parse,
// validate, call one service method and render; one error handler turns
// every failure into a status and a plain sentence.
package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald/articles"
	"herald/digest"
	"herald/subscribers"
	"herald/templates"
)

// DefaultBodyLimit is the largest request body accepted when
// Config.BodyLimit is zero.
const DefaultBodyLimit int64 = 64 << 10

// Config is what the web layer needs to know about the site it serves.
type Config struct {
	// BaseURL is Herald's public URL, e.g. "https://news.passblue.example".
	// Its path, if any, prefixes every link the pages write.
	BaseURL string
	// SiteName is the publication's name, shown on every page.
	SiteName string
	// SiteURL is the publication's home page; error pages link back to it.
	SiteURL string
	// PrivacyURL is the privacy policy the signup form links to.
	PrivacyURL string
	// ConsentText is the privacy note shown above the subscribe button.
	ConsentText string
	// ConsentVersion names the wording of ConsentText; the page carries it
	// so that what a reader saw can be matched to what was recorded.
	ConsentVersion string
	// PostalAddress is printed in the footer of every page.
	PostalAddress string
	// Newsletters are the choices offered on the signup form, in order.
	Newsletters []Newsletter
	// AdminToken is the bootstrap bearer token of the admin API, with
	// write scope; stored tokens (Deps.Tokens) open it too. Empty, and no
	// Deps.Tokens: the API is closed.
	AdminToken string
	// SignupPerIP is how many signups one client IP may make per minute;
	// 0 turns the limit off.
	SignupPerIP int
	// SignupPerSubnet is how many signups one subnet (an IPv4 /24, an IPv6
	// /48) may make per minute; 0 turns the limit off.
	SignupPerSubnet int
	// MinFillTime is how long a person takes at least to fill in the signup
	// form. A form that carries our stamp and comes back sooner, or whose
	// stamp is forged or stale, is answered as accepted and dropped, like
	// the honeypot. A form without a stamp (a news site's own form) and a
	// JSON signup are not checked. 0 turns the check off.
	MinFillTime time.Duration
	// CORSOrigins are the exact origins (https://news.example.org) whose
	// scripts may post a JSON signup and read the answer. Form posts are
	// taken from any origin regardless.
	CORSOrigins []string
	// FrameAncestors are the CSP sources that may frame the signup page
	// and its answer, for a form embedded in the news site's pages. Empty:
	// 'self'. Every other page may not be framed at all.
	FrameAncestors []string
	// DisposableDomainsFile names a list of disposable email domains, one
	// a line, that replaces the built-in one; a signup from one of them,
	// or a subdomain, is refused. "": the built-in list.
	DisposableDomainsFile string
	// CheckMX refuses a signup whose domain receives no mail (no MX and no
	// address, or a null MX). A slow or failing DNS lets it through.
	CheckMX bool
	// MXTimeout bounds that lookup; 0 means DefaultMXTimeout.
	MXTimeout time.Duration
	// Altcha is when the signup form demands a proof of work (ALTCHA):
	// AltchaOff (also ""), AltchaAttack or AltchaAlways.
	Altcha string
	// AttackThreshold is how many signups in a minute turn attack mode
	// on; 0 means DefaultAttackThreshold.
	AttackThreshold int
	// AttackCooldown is how long attack mode stays on after the last
	// spike; 0 means DefaultAttackCooldown.
	AttackCooldown time.Duration
	// BodyLimit is the largest request body in bytes; 0 means
	// DefaultBodyLimit.
	BodyLimit int64
	// MetricsPublic serves GET /metrics without a token; false requires an
	// admin API token, as for the admin API (a read-scoped one suffices).
	MetricsPublic bool
	// OutboxDir is where the outbox transport writes .eml files, shown by
	// the admin mail viewer; "" when mail goes through a relay.
	OutboxDir string
	// ServerWarnings are problems with the server Herald runs on, found at
	// start (such as PostgreSQL's autovacuum being off), one sentence
	// each, shown on the admin dashboard.
	ServerWarnings []string
	// TrustedProxies are the CIDRs (or single addresses) of reverse proxies
	// whose X-Forwarded-For header is believed. Empty: the client IP is the
	// socket's peer address.
	TrustedProxies []string
}

// Newsletter is one newsletter as the signup form offers it.
type Newsletter struct {
	ID          string
	Name        string
	Description string
	Schedule    string // in words, e.g. "Every weekday morning"
}

// Subscribers is what the web layer asks of the subscribers service.
type Subscribers interface {
	// Signup records a signup. It answers nil alike for new, pending and
	// active addresses; EINVALID when the input is wrong.
	Signup(ctx context.Context, r subscribers.SignupRequest) error
	// CheckConfirmToken changes nothing: ENOTFOUND for an unknown or forged
	// token, EGONE for an expired or used one.
	CheckConfirmToken(ctx context.Context, token string) (*subscribers.Subscriber, error)
	// Confirm activates the subscriber the token belongs to; ENOTFOUND and
	// EGONE as CheckConfirmToken.
	Confirm(ctx context.Context, token, ip string) (*subscribers.Subscriber, error)
	// CheckUnsubscribeToken changes nothing: ENOTFOUND for a forged token,
	// EGONE for an expired one.
	CheckUnsubscribeToken(ctx context.Context, token string) (*subscribers.Subscriber, error)
	// Unsubscribe stops all mail to the token's subscriber; idempotent.
	// ENOTFOUND and EGONE as CheckUnsubscribeToken.
	Unsubscribe(ctx context.Context, token, source string) (*subscribers.Subscriber, error)
	// CheckPreferencesToken changes nothing: ENOTFOUND for a forged token,
	// EGONE for an expired one.
	CheckPreferencesToken(ctx context.Context, token string) (*subscribers.Subscriber, error)
	// UpdatePreferences saves a reader's choices from their preference
	// page: EINVALID naming what is wrong, ECONFLICT when the address may
	// not be changed from a form; ENOTFOUND and EGONE as
	// CheckPreferencesToken.
	UpdatePreferences(ctx context.Context, token string, p subscribers.PreferencesUpdate) (*subscribers.Subscriber, error)
	// PreferencesToken returns the signed token of a subscriber's
	// preference page links; it writes nothing.
	PreferencesToken(subscriberID int64) string
	// FindSubscribers returns the subscribers matching f, ordered by id;
	// EINVALID for a bad filter.
	FindSubscribers(ctx context.Context, f subscribers.Filter) ([]*subscribers.Subscriber, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// Articles is what the web layer asks of the articles service
// (*articles.Service).
type Articles interface {
	// Normalizer returns the Normalizer whose RenderMarkdown turns a posted
	// content_markdown into HTML.
	Normalizer() *articles.Normalizer
	// UpsertMany normalises and stores articles by URL. It is the upsert
	// that reports the stored id; an invalid article gets EINVALID naming
	// the field in its Result.Err, a store failure is the returned error.
	UpsertMany(ctx context.Context, as []articles.Article) ([]articles.Result, error)
	// Get returns one stored article, or ENOTFOUND.
	Get(ctx context.Context, id int64) (*articles.Article, error)
}

// Digests is what the web layer asks of the digest service.
type Digests interface {
	// StartNow creates an issue of the newsletter now and builds it (a
	// message queued for every reader) in the background, so that no
	// request waits for a long list: ENOTFOUND for an unknown newsletter,
	// ECONFLICT when there is nothing new to send.
	StartNow(ctx context.Context, newsletterID string) (*digest.Issue, error)
	// Issue returns one issue, or ENOTFOUND.
	Issue(ctx context.Context, id int64) (*digest.Issue, error)
	// Progress counts an issue's messages by outcome; ENOTFOUND for an
	// unknown issue.
	Progress(ctx context.Context, id int64) (digest.Progress, error)
	// Follow returns an issue as it stands, with its progress: one still
	// marked sending with nothing left to send is settled (sent, with its
	// completion time) first.
	Follow(ctx context.Context, iss *digest.Issue) (*digest.Issue, digest.Progress, error)
	// Issues returns the issues matching f, newest first.
	Issues(ctx context.Context, f digest.IssueFilter) ([]*digest.Issue, error)
	// IssueArticles returns the articles of the issue's main edition, in
	// the order the email shows them.
	IssueArticles(ctx context.Context, iss *digest.Issue) ([]*articles.Article, error)
	// Newsletters returns the configured newsletters, in order.
	Newsletters() []digest.Newsletter
}

// Deps are the collaborators a Server calls.
type Deps struct {
	// Subscribers is the subscribers service. Required.
	Subscribers Subscribers
	// Articles is the articles service behind POST /api/v1/articles. Nil:
	// that route answers 503.
	Articles Articles
	// Digests is the digest service behind the issue API and the public
	// archive. Nil: those routes answer 503.
	Digests Digests
	// Tokens checks the admin API's stored tokens. Nil: only
	// Config.AdminToken opens the API.
	Tokens Tokens
	// SubscriberAdmin is the operator's side of subscribers behind the
	// admin API's subscriber, newsletter and stats routes. Nil: those
	// routes answer 503.
	SubscriberAdmin SubscriberAdmin
	// ArticleAdmin lists, shows and deletes articles for the admin API.
	// Nil: those routes answer 503.
	ArticleAdmin ArticleAdmin
	// IssueAdmin re-sends an issue's failed messages. Nil: that route
	// answers 503.
	IssueAdmin IssueAdmin
	// Webhooks receives the bounce and complaint webhooks (NewWebhooks).
	// Nil: every /webhooks/ route answers 404.
	Webhooks *Webhooks
	// Admin signs operators in to the admin pages (*adminauth.Service).
	// Nil: /admin answers 503.
	Admin AdminAuth
	// Logger receives one line per request and the detail of every
	// failure. Nil discards.
	Logger *slog.Logger
	// Wake, if set, is called after a signup or a confirmation so that the
	// delivery engine sends the queued email at once. It must not block.
	Wake func()
	// Metrics serves GET /metrics (the Prometheus exposition). Nil: that
	// route answers 404.
	Metrics http.Handler
	// SignupObserver, if set, counts signup requests by result.
	SignupObserver SignupObserver
	// Limits keeps the signup defences' counts (per-IP and per-subnet
	// limits, attack mode, spent proof-of-work solutions) where every
	// instance sees them; on PostgreSQL, the database. Nil: each count is
	// kept in this process, which is right for one instance. While Limits
	// fails or is slow, this instance counts on its own.
	Limits SignupLimits
	// SignupKey is the secret the signup defences sign with (the form's
	// time stamp, the proof-of-work challenges), and, under a key derived
	// for that purpose, the reader forms' CSRF tokens; give every instance
	// the same one, from the store's secrets. Nil: a random key for this
	// process.
	SignupKey []byte
	// Resolver answers the MX lookups of Config.CheckMX. Nil: the
	// system's resolver.
	Resolver MXResolver
}

// Server serves Herald's pages and API. Build one with New.
type Server struct {
	cfg     Config
	subs    Subscribers
	arts    Articles // nil: not configured
	digests Digests  // nil: not configured
	log     *slog.Logger
	wake    func()
	metrics http.Handler   // nil: /metrics answers 404
	signups SignupObserver // nil: signups are not counted
	now     func() time.Time
	prefix  string // path of BaseURL without the trailing slash
	pages   *pages
	css     []byte
	cssURL  string
	// limits runs the per-IP and per-subnet limits and attack mode's
	// count, and keeps the spent proof-of-work solutions.
	limits *signupLimits
	keys   signupKeys
	// formKey signs the reader forms' tokens (formtoken.go).
	formKey []byte
	// corsOrigins is CORSOrigins, lower-cased, as a set.
	corsOrigins map[string]bool
	// signupCSP is the CSP of the signup page and its answer, and
	// signupXFO its X-Frame-Options ("" when FrameAncestors has none).
	signupCSP, signupXFO string
	// altcha issues and checks proof-of-work challenges.
	altcha *altchaGuard
	// altchaJS is the widget, served at altchaJSURL.
	altchaJS    []byte
	altchaJSURL string
	// disposable is the list of disposable email domains.
	disposable domainSet
	// resolver answers MX lookups when CheckMX is on.
	resolver MXResolver
	// hsts is the Strict-Transport-Security value; "" when BaseURL is not
	// https.
	hsts string
	// checkInbox is the answer to every accepted form signup, rendered
	// once: it must be the same bytes for every address anyway.
	checkInbox []byte
	routes     map[string]bool
	// bodyLimits are the routes ("METHOD /path") that accept a body larger
	// or smaller than Config.BodyLimit.
	bodyLimits map[string]int64
	echo       *echo.Echo

	// admin is the admin pages' templates, assets and sign-in.
	admin *adminUI

	// hooks receives the bounce webhooks; nil: they answer 404.
	hooks *Webhooks

	// The admin API's collaborators; nil: not configured.
	tokens     Tokens // nil: only Config.AdminToken opens the API
	subAdmin   SubscriberAdmin
	artAdmin   ArticleAdmin
	issueAdmin IssueAdmin
}

// New checks cfg, parses every page template and builds the route table. A
// template that does not parse is an error naming its file.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Subscribers == nil {
		return nil, errors.New("web: Deps.Subscribers is required")
	}
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.SignupPerIP < 0 {
		return nil, fmt.Errorf("web: SignupPerIP must be 0 or more, got %d", cfg.SignupPerIP)
	}
	if cfg.SignupPerSubnet < 0 {
		return nil, fmt.Errorf("web: SignupPerSubnet must be 0 or more, got %d", cfg.SignupPerSubnet)
	}
	if cfg.MinFillTime < 0 {
		return nil, fmt.Errorf("web: MinFillTime must be 0 or more, got %s", cfg.MinFillTime)
	}
	if cfg.SiteName == "" {
		cfg.SiteName = "Herald"
	}
	if cfg.ConsentText == "" {
		cfg.ConsentText = "We respect your privacy and take protecting it seriously. We use your address only to send the newsletters you choose, and every email has a link to unsubscribe."
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	prefix, err := basePath(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := checkNewsletters(cfg.Newsletters); err != nil {
		return nil, err
	}
	extract, err := ipExtractor(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	p, err := parsePages(templates.FS)
	if err != nil {
		return nil, err
	}
	if err := checkArchivePages(p); err != nil {
		return nil, err
	}
	css, err := templates.FS.ReadFile("web/" + stylesheetFile)
	if err != nil {
		return nil, fmt.Errorf("web: read %s: %w", stylesheetFile, err)
	}

	s := &Server{
		cfg:     cfg,
		subs:    deps.Subscribers,
		arts:    deps.Articles,
		digests: deps.Digests,
		log:     logger,
		wake:    deps.Wake,
		metrics: deps.Metrics,
		signups: deps.SignupObserver,
		now:     time.Now,
		prefix:  prefix,
		pages:   p,
		css:     css,
		cssURL:  prefix + "/static/" + stylesheetFile + "?v=" + shortHash(css),
		echo:    echo.New(),
	}
	s.tokens, s.subAdmin, s.artAdmin, s.issueAdmin = deps.Tokens, deps.SubscriberAdmin, deps.ArticleAdmin, deps.IssueAdmin
	s.hooks = deps.Webhooks
	if s.admin, err = newAdminUI(cfg, prefix, deps.Admin); err != nil {
		return nil, err
	}
	if s.keys, err = newSignupKeys(deps.SignupKey); err != nil {
		return nil, err
	}
	if s.formKey, err = newFormKey(deps.SignupKey); err != nil {
		return nil, err
	}
	if s.corsOrigins, err = checkOrigins(cfg.CORSOrigins); err != nil {
		return nil, err
	}
	if err := checkFrameAncestors(cfg.FrameAncestors); err != nil {
		return nil, err
	}
	s.signupCSP, s.signupXFO = signupFraming(cfg.FrameAncestors)
	if s.altcha, err = newAltchaGuard(cfg, s.keys.altcha); err != nil {
		return nil, err
	}
	s.limits = newSignupLimits(cfg, s.altcha.mode, s.altcha.threshold, s.altcha.cooldown, deps.Limits, s.keys.limits, logger)
	s.altcha.limits = s.limits
	if s.altchaJS, err = templates.FS.ReadFile("web/" + altchaScript); err != nil {
		return nil, fmt.Errorf("web: read %s: %w", altchaScript, err)
	}
	s.altchaJSURL = prefix + "/static/" + altchaScript + "?v=" + shortHash(s.altchaJS)
	if s.disposable, err = loadDisposable(cfg.DisposableDomainsFile); err != nil {
		return nil, err
	}
	if s.resolver = deps.Resolver; s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	if s.cfg.MXTimeout <= 0 {
		s.cfg.MXTimeout = DefaultMXTimeout
	}
	if strings.HasPrefix(strings.ToLower(cfg.BaseURL), "https://") {
		s.hsts = hstsValue
	}
	var buf bytes.Buffer
	if err := p.sets[pageCheckInbox].ExecuteTemplate(&buf, "layout", checkInboxPage{basePage: s.base("Check your inbox")}); err != nil {
		return nil, fmt.Errorf("web: render %s: %w", pageCheckInbox, err)
	}
	s.checkInbox = buf.Bytes()
	e := s.echo
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard)
	e.IPExtractor = extract
	e.HTTPErrorHandler = s.handleError
	s.middleware()
	s.registerRoutes()
	s.routes = make(map[string]bool)
	for _, r := range e.Routes() {
		s.routes[r.Path] = true
	}
	return s, nil
}

// Handler returns the http.Handler that serves every route, for the caller
// to run under its own http.Server.
func (s *Server) Handler() http.Handler { return s.echo }

// basePath returns the path part of the public base URL, without a trailing
// slash, so that pages work when Herald is mounted below a site's root.
func basePath(base string) (string, error) {
	if base == "" {
		return "", nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("web: BaseURL must be an absolute http(s) URL, got %q", base)
	}
	return strings.TrimRight(u.Path, "/"), nil
}

func checkNewsletters(nls []Newsletter) error {
	seen := make(map[string]bool, len(nls))
	for i, n := range nls {
		if n.ID == "" {
			return fmt.Errorf("web: Newsletters[%d]: id is empty", i)
		}
		if seen[n.ID] {
			return fmt.Errorf("web: Newsletters[%d]: id %q appears twice", i, n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}

// ipExtractor returns how the client IP is found: the socket's peer, or,
// behind trusted proxies, the nearest untrusted address in X-Forwarded-For.
func ipExtractor(proxies []string) (echo.IPExtractor, error) {
	if len(proxies) == 0 {
		return echo.ExtractIPDirect(), nil
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range proxies {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "/") {
			ip := net.ParseIP(p)
			if ip == nil {
				return nil, fmt.Errorf("web: TrustedProxies: %q is neither a CIDR nor an IP address", p)
			}
			if ip.To4() != nil {
				p += "/32"
			} else {
				p += "/128"
			}
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("web: TrustedProxies: %q is not a CIDR", p)
		}
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...), nil
}

// callWake tells the delivery engine there is mail to send.
func (s *Server) callWake() {
	if s.wake != nil {
		s.wake()
	}
}
