package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"herald/delivery"
	"herald/digest"
	"herald/mailer"
	"herald/metrics"
	"herald/store/postgres"
	"herald/subscribers"
	"herald/templates"
	"herald/web"
)

// serveUsage documents "herald serve".
func serveUsage() usage {
	return usage{
		synopsis: "herald serve [--config FILE]",
		description: `Runs Herald: applies pending database migrations, then serves the signup,
confirmation, unsubscribe and preference pages and the admin API on
http.addr, and delivers the outbox (confirmations, welcomes, digests) through
mail.transport. It polls the feeds under feeds every articles.poll_interval.
It runs until SIGINT or SIGTERM, then stops polling, finishes in-flight
requests (up to http.shutdown_timeout) and settles the messages it claimed.`,
		example: `  herald serve
  HERALD_HTTP_ADDR=0.0.0.0:8080 herald serve --config /etc/herald/config.yaml`,
	}
}

// serve runs the web server and the delivery engine until ctx ends.
func (a *app) serve(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("serve")
	pos, code, done := a.parseArgs(fs, serveUsage(), args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return a.usageError(fs, "unexpected argument %q", pos[0])
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)
	if err := serve(ctx, cfg, logger); err != nil {
		var te *templatesError
		if errors.As(err, &te) {
			fmt.Fprintf(a.stderr, "%s: %v\n", fs.Name(), err)
			return exitUsage
		}
		return a.fail(fs, err)
	}
	return exitOK
}

// background is a loop serve runs beside the HTTP server, such as the feed
// poller: run returns when its context ends.
type background struct {
	name string
	run  func(ctx context.Context) error
}

// serve wires Herald together and runs it until ctx is done or a part fails.
// Shutdown goes outside in: the background loops (feed poller, scheduler)
// stop and the HTTP server stops taking requests and finishes the ones under
// way, then the delivery engine stops claiming, finishes its sends and
// settles what it claimed, then the transport and the database close.
func serve(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	db, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	serverWarnings := postgresWarnings(ctx, db, logger.With("component", "database"))

	subs, err := newSubscribers(ctx, cfg, db, logger.With("component", "subscribers"))
	if err != nil {
		return err
	}
	arts := newArticles(db, logger)
	var waker engineWaker
	digests, err := newDigests(cfg, db, logger, waker.wake)
	if err != nil {
		return err
	}
	// One registry for the process: the engine's outcomes, the relays'
	// errors, the outbox depth and the signups, served at /metrics.
	m := metrics.New()
	m.QueueDepth(db.CountMessages)
	transport, err := newTransport(cfg, m)
	if err != nil {
		return err
	}
	defer transport.Close()
	logDKIM(cfg, logger)
	composer, err := newComposer(cfg)
	if err != nil {
		return err
	}
	// delivery.workers: 0 makes a web-only instance: it takes signups and
	// queues their mail, and other instances deliver it.
	var engine *delivery.Engine
	var wake func()
	if cfg.Delivery.Workers > 0 {
		engine = newEngine(cfg, db, newRenderer(cfg, subs, db, composer, digests), transport, m, logger)
		wake = engine.Wake
		waker.set(engine)
	}
	hooks, err := newWebhooks(ctx, cfg, db, subs)
	if err != nil {
		return err
	}
	adminAuth, err := newAdminAuth(ctx, db, logger)
	if err != nil {
		return err
	}
	signupKey, err := loadSignupKey(ctx, db)
	if err != nil {
		return err
	}
	wcfg := webConfig(cfg)
	wcfg.ServerWarnings = serverWarnings
	site, err := web.New(wcfg, web.Deps{
		Subscribers:    subs,
		Articles:       arts,
		Digests:        digests,
		Logger:         logger.With("component", "web"),
		Wake:           wake,
		Metrics:        m.Handler(),
		SignupObserver: m,
		SignupKey:      signupKey,
		Limits:         signupLimits(db, logger),

		// The admin API's collaborators.
		Tokens:          newTokenService(db, logger),
		SubscriberAdmin: newSubscriberAdmin(subs, db, logger),
		ArticleAdmin:    arts,
		IssueAdmin:      digests,
		Admin:           adminAuth,

		// The bounce and complaint webhooks (webhooks.*).
		Webhooks: hooks,
	})
	if err != nil {
		return err
	}

	// On PostgreSQL one instance at a time builds issues (an advisory
	// lock); SQLite has one instance and needs no election.
	loops := []background{{"digest scheduler", (&digest.Scheduler{
		Service:  digests,
		Interval: cfg.Digest.CheckInterval,
		Leader:   schedulerLeader(db),
		Logger:   logger.With("component", "scheduler"),
	}).Run}}
	if ret, err := newRetention(cfg, db, logger); err == nil {
		loops = append(loops, background{"retention", ret.Run})
	} else {
		logger.Warn("no retention loop", "error", err)
	}
	// Instances on one PostgreSQL database share the signup limits'
	// counters: each records its limits.* settings and warns of others
	// running with different ones.
	if pg, ok := db.(*postgres.DB); ok {
		loops = append(loops, background{"limits check", newLimitsCheck(cfg, pg, logger.With("component", "limits")).Run})
	}
	if len(cfg.Feeds) > 0 {
		loops = append(loops, background{"feed poller", newPoller(cfg, db, logger).Run})
	} else {
		logger.Info("no feeds to poll (feeds: is empty)")
	}

	// Listen before starting anything, so that a taken port fails at once.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	srv := &http.Server{
		Handler:           site.Handler(),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn),
	}

	// The engine's context is not ctx: it is cancelled only once the HTTP
	// server has drained, so that requests finishing late can still wake it
	// and the messages they queued are not stranded until the next start.
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engineDone := make(chan error, 1)
	if engine != nil {
		go func() { engineDone <- engine.Run(engineCtx) }()
	} else {
		logger.Info("delivery is off on this instance (delivery.workers: 0)")
	}
	// The loops stop with ctx, or earlier when another part fails.
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	type loopResult struct {
		name string
		err  error
	}
	loopDone := make(chan loopResult, len(loops))
	for _, l := range loops {
		go func() { loopDone <- loopResult{l.name, l.run(loopCtx)} }()
	}
	running := len(loops)
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()

	logger.Info("herald started",
		"addr", ln.Addr().String(),
		"base_url", cfg.HTTP.BaseURL,
		"database", cfg.Database.Driver,
		"mail_transport", cfg.Mail.Transport,
		"feeds", len(cfg.Feeds),
		"version", version)

	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.HTTP.ShutdownTimeout.String())
	case err := <-httpDone:
		failure = fmt.Errorf("http server: %w", err)
		httpDone <- nil // Shutdown below must not wait for it again
	case err := <-engineDone:
		failure = fmt.Errorf("delivery engine stopped: %v", err)
		engineDone <- nil
	case r := <-loopDone:
		running--
		failure = fmt.Errorf("%s stopped: %v", r.name, r.err)
	}

	stopLoops()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("requests still running at the shutdown timeout were cut off", "err", err)
		srv.Close()
	}
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) && failure == nil {
		failure = fmt.Errorf("http server: %w", err)
	}
	for ; running > 0; running-- {
		if r := <-loopDone; r.err != nil && failure == nil {
			failure = fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	// An issue that "send now" is still building in the background stops
	// here and stays building: the scheduler finishes it at the next start.
	digests.Stop()

	stopEngine()
	if engine == nil {
		logger.Info("herald stopped")
		return failure
	}
	if err := <-engineDone; err != nil && failure == nil {
		failure = fmt.Errorf("delivery engine: %w", err)
	}
	st := engine.Stats()
	logger.Info("herald stopped", "sent", st.Sent, "retried", st.Retried, "failed", st.Failed,
		"bounced", st.Bounced, "cancelled", st.Cancelled)
	return failure
}

// newEngine builds the delivery engine from delivery.*. obs, if not nil,
// is told of every attempt (and, being a delivery.RelayErrorObserver, of
// every relay error).
func newEngine(cfg *Config, db database, r delivery.Renderer, t mailer.Transport, obs delivery.Observer, logger *slog.Logger) *delivery.Engine {
	return delivery.New(db, r, t, delivery.Config{
		Workers:              cfg.Delivery.Workers,
		BatchSize:            cfg.Delivery.BatchSize,
		Lease:                cfg.Delivery.Lease,
		RetryBase:            cfg.Delivery.RetryBase,
		RetryMax:             cfg.Delivery.RetryMax,
		MaxAge:               cfg.Delivery.MaxAge,
		RatePerSecond:        cfg.Delivery.RatePerSecond,
		PerDomainConcurrency: cfg.Delivery.PerDomainConcurrency,
		Observer:             obs,
		Logger:               logger.With("component", "delivery"),
	})
}

// relayErrors counts the errors of relays a Router moved past, which never
// reach the delivery engine (metrics.Metrics).
type relayErrors interface {
	RelayError(relay string, code int)
}

// newTransport builds the mail transport mail.transport names: the outbox,
// the primary relay alone, or a mailer.Router over the primary (named
// delivery.DefaultRelay) and smtp.relays; then, when dkim.private_key_file
// is set, DKIM signing in front of it, so that every relay sends the same
// signed bytes. re, if not nil, counts the errors of relays failed over.
func newTransport(cfg *Config, re relayErrors) (mailer.Transport, error) {
	var t mailer.Transport
	switch cfg.Mail.Transport {
	case "outbox":
		ot, err := mailer.NewOutboxTransport(cfg.Mail.OutboxDir)
		if err != nil {
			return nil, err
		}
		t = ot
	case "smtp":
		t = newRelays(cfg, re)
	default:
		return nil, fmt.Errorf("mail.transport: unknown transport %q", cfg.Mail.Transport)
	}
	signer, err := newDKIMSigner(&cfg.DKIM)
	if err != nil {
		t.Close()
		return nil, err
	}
	if signer != nil {
		t = mailer.NewDKIMTransport(t, signer)
	}
	return t, nil
}

// logDKIM says at start whether messages are signed and, if so, which DNS
// record must hold the public key.
func logDKIM(cfg *Config, logger *slog.Logger) {
	if !cfg.DKIM.Enabled() {
		return
	}
	signer, err := newDKIMSigner(&cfg.DKIM)
	if err != nil {
		return // newTransport has reported it
	}
	name, value := signer.DNSRecord()
	logger.Info("dkim signing on: publish the public key as a TXT record", "dns_name", name, "dns_txt", value)
}

// newRelays builds the SMTP side: the primary relay alone when smtp.relays
// is empty, else a Router where relays with domains take those domains and
// the primary shares the rest with the relays without, by weight.
func newRelays(cfg *Config, re relayErrors) mailer.Transport {
	primary := mailer.NewSMTPTransport(mailer.SMTPConfig{
		Host:        cfg.SMTP.Host,
		Port:        cfg.SMTP.Port,
		TLS:         cfg.SMTP.TLS,
		Username:    cfg.SMTP.Username,
		Password:    cfg.SMTP.Password,
		HeloName:    heloName(cfg),
		Connections: cfg.SMTP.Connections,
		Timeout:     cfg.SMTP.Timeout,
	})
	if len(cfg.SMTP.Relays) == 0 {
		return primary
	}
	var routes []mailer.Route
	defaults := []mailer.Weighted{{Name: delivery.DefaultRelay, Transport: primary, Weight: 1}}
	for _, r := range cfg.SMTP.Relays {
		conns := r.Connections
		if conns == 0 {
			conns = cfg.SMTP.Connections
		}
		t := mailer.NewSMTPTransport(mailer.SMTPConfig{
			Host:        r.Host,
			Port:        r.Port,
			TLS:         r.TLS,
			Username:    r.Username,
			Password:    r.Password,
			HeloName:    heloName(cfg),
			Connections: conns,
			Timeout:     cfg.SMTP.Timeout,
		})
		if len(r.Domains) > 0 {
			routes = append(routes, mailer.Route{Name: r.Name, Domains: r.Domains, Transport: t})
		} else {
			defaults = append(defaults, mailer.Weighted{Name: r.Name, Transport: t, Weight: r.Weight})
		}
	}
	router := mailer.NewRouter(routes, defaults)
	if re != nil {
		router.OnFailover = func(relay string, err *mailer.SendError) { re.RelayError(relay, err.Code) }
	}
	return router
}

// heloName is the name Herald gives in EHLO: the host of the public base URL
// when it is a name, else the domain of mail.from.
func heloName(cfg *Config) string {
	if host := hostOf(cfg.HTTP.BaseURL); host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return host
	}
	return addressDomain(cfg.FromAddress().Address)
}

// newComposer parses the email templates with the site's identity.
func newComposer(cfg *Config) (*mailer.Composer, error) {
	from := cfg.FromAddress()
	var replyTo string
	if cfg.Mail.ReplyTo != "" {
		replyTo = parseAddress(cfg.Mail.ReplyTo)
	}
	c, err := mailer.NewComposer(mailer.ComposerConfig{
		SiteName:      cfg.Site.Name,
		SiteURL:       cfg.Site.URL,
		FromName:      from.Name,
		From:          from.Address,
		ReplyTo:       replyTo,
		PostalAddress: cfg.Mail.PostalAddress,
		BaseURL:       cfg.HTTP.BaseURL,
		TemplatesDir:  cfg.Mail.TemplatesDir,
		ConfirmTTL:    subscribers.DefaultConfirmTTL,
	}, templates.FS)
	if err != nil && cfg.Mail.TemplatesDir != "" {
		return nil, &templatesError{err}
	}
	return c, err
}

// templatesError is a composer that cannot be built with the templates in
// mail.templates_dir: a configuration error (exit 2), where the mailer's
// message names the file and line.
type templatesError struct{ err error }

func (e *templatesError) Error() string { return "mail.templates_dir: " + e.err.Error() }
func (e *templatesError) Unwrap() error { return e.err }

// webConfig is the part of the configuration the web layer needs.
func webConfig(cfg *Config) web.Config {
	nls := make([]web.Newsletter, len(cfg.Newsletters))
	for i, n := range cfg.Newsletters {
		nls[i] = web.Newsletter{
			ID:          n.ID,
			Name:        n.Name,
			Description: n.Description,
			Schedule:    capitalize(describeSchedule(n.Schedule, n.Timezone)),
		}
	}
	return web.Config{
		BaseURL:               cfg.HTTP.BaseURL,
		SiteName:              cfg.Site.Name,
		SiteURL:               cfg.Site.URL,
		PrivacyURL:            cfg.Site.PrivacyURL,
		ConsentText:           cfg.Site.ConsentText,
		ConsentVersion:        cfg.Site.ConsentVersion,
		PostalAddress:         cfg.Mail.PostalAddress,
		Newsletters:           nls,
		AdminToken:            cfg.Admin.Token,
		SignupPerIP:           cfg.Limits.SignupPerIP,
		SignupPerSubnet:       cfg.Limits.SignupPerSubnet,
		MinFillTime:           cfg.Limits.MinFillTime,
		DisposableDomainsFile: cfg.Limits.DisposableDomainsFile,
		CheckMX:               cfg.Limits.CheckMX,
		MXTimeout:             cfg.Limits.MXTimeout,
		Altcha:                cfg.Limits.Altcha,
		AttackThreshold:       cfg.Limits.AttackThreshold,
		AttackCooldown:        cfg.Limits.AttackCooldown,
		MetricsPublic:         cfg.Metrics.Public,
		TrustedProxies:        cfg.HTTP.TrustedProxies,
		CORSOrigins:           cfg.HTTP.CORSOrigins,
		FrameAncestors:        cfg.HTTP.FrameAncestors,
		OutboxDir:             outboxDirOf(cfg),
	}
}

// signupKeyName names the secret the signup defences sign with.
const signupKeyName = "signup_key"

// loadSignupKey returns the key of the signup form's stamp and proof-of-work
// challenges, shared by every instance, creating it on first use.
func loadSignupKey(ctx context.Context, store subscribers.Store) ([]byte, error) {
	key, err := store.Secret(ctx, signupKeyName, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("load signup key: %w", err)
	}
	return key, nil
}

// signupLimits returns the signup defences' shared counts: on PostgreSQL,
// where several instances may take signups, the database's; nil on SQLite,
// whose one instance keeps them in process.
func signupLimits(db database, logger *slog.Logger) web.SignupLimits {
	if pg, ok := db.(*postgres.DB); ok {
		return postgres.NewSignupLimits(pg, logger.With("component", "limits"))
	}
	return nil
}

// capitalize upper-cases the first letter of an ASCII sentence.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
