package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald/bounces"
	"herald/delivery"
	"herald/digest"
	"herald/mailer"
	"herald/subscribers"
	"herald/web"
)

// BouncesConfig is how bounce reports count (bounces.*).
type BouncesConfig struct {
	// SoftThreshold is how many soft bounces within SoftWindow make an
	// address bounced; 0 means 5.
	SoftThreshold int `yaml:"soft_threshold" range:"0-1000"`
	// SoftWindow is the window of SoftThreshold; 0 means 720h (30 days).
	SoftWindow time.Duration `yaml:"soft_window"`
}

// WebhooksConfig holds the secrets of the bounce and complaint webhooks
// (webhooks.*). A provider without its secret is off: its route answers 404.
type WebhooksConfig struct {
	SES      SESWebhookConfig      `yaml:"ses"`
	Postmark PostmarkWebhookConfig `yaml:"postmark"`
	SendGrid SendGridWebhookConfig `yaml:"sendgrid"`
	Mailgun  MailgunWebhookConfig  `yaml:"mailgun"`
}

// SESWebhookConfig is POST /webhooks/ses.
type SESWebhookConfig struct {
	// TopicARNs are the SNS topics SES publishes bounces and complaints to;
	// messages of any other topic are refused.
	TopicARNs []string `yaml:"topic_arns"`
}

// PostmarkWebhookConfig is POST /webhooks/postmark.
type PostmarkWebhookConfig struct {
	// Username and Password are the HTTP Basic credentials written into the
	// webhook URL in Postmark (https://user:password@host/webhooks/postmark);
	// an empty Username accepts any. The password may instead come in an
	// X-Herald-Webhook-Token header.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// SendGridWebhookConfig is POST /webhooks/sendgrid.
type SendGridWebhookConfig struct {
	// PublicKey is the signed event webhook's verification key, as
	// SendGrid shows it (base64), or in PEM.
	PublicKey string `yaml:"public_key"`
}

// MailgunWebhookConfig is POST /webhooks/mailgun.
type MailgunWebhookConfig struct {
	// SigningKey is Mailgun's HTTP webhook signing key.
	SigningKey string `yaml:"signing_key"`
}

// validateBounces checks mail.bounce_domain, mail.cfbl_address, bounces.*
// and webhooks.*.
func (l *loader) validateBounces(c *Config, bad func(key, format string, args ...any)) {
	if d := c.Mail.BounceDomain; d != "" && !validDomain(d) {
		bad("mail.bounce_domain", "must be a domain name such as bounces.passblue.example, got %q", d)
	}
	if a := c.Mail.CFBLAddress; a != "" {
		p, err := mail.ParseAddress(a)
		switch {
		case err != nil || p.Name != "" || p.Address != a:
			bad("mail.cfbl_address", "must be a bare address such as fbl@passblue.example, got %q", a)
		case c.DKIM.Enabled() && !sameOrSubdomain(addressDomain(a), c.DKIM.Domain):
			// RFC 9477: receivers ignore a CFBL-Address whose domain the
			// DKIM signature (d=) does not align with.
			bad("mail.cfbl_address", "must be at dkim.domain (%s) or one of its subdomains, got %q", c.DKIM.Domain, a)
		}
	}
	if c.Bounces.SoftWindow < 0 {
		bad("bounces.soft_window", "must be 0 (30 days) or a positive duration, got %q", c.Bounces.SoftWindow.String())
	}
	for i, arn := range c.Webhooks.SES.TopicARNs {
		if !strings.HasPrefix(arn, "arn:aws") || strings.Count(arn, ":") != 5 {
			bad(fmt.Sprintf("webhooks.ses.topic_arns[%d]", i), "must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:herald-bounces, got %q", arn)
		}
	}
	if c.Webhooks.Postmark.Username != "" && c.Webhooks.Postmark.Password == "" {
		bad("webhooks.postmark.password", "is required when webhooks.postmark.username is set")
	}
	if k := c.Webhooks.SendGrid.PublicKey; k != "" {
		if _, err := bounces.NewSendGridVerifier(k); err != nil {
			bad("webhooks.sendgrid.public_key", "must be the verification key SendGrid shows (base64 of an ECDSA public key): %v", err)
		}
	}
}

// validDomain reports whether d looks like a domain name.
func validDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// sameOrSubdomain reports whether d is parent or one of its subdomains.
func sameOrSubdomain(d, parent string) bool {
	d, parent = strings.ToLower(d), strings.ToLower(parent)
	return d == parent || strings.HasSuffix(d, "."+parent)
}

// verpKeyName names the secret that seals VERP return paths.
const verpKeyName = "verp_key"

// loadVERPKey returns the VERP key, creating it on first use.
func loadVERPKey(ctx context.Context, store subscribers.Store) ([]byte, error) {
	key, err := store.Secret(ctx, verpKeyName, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("load VERP key: %w", err)
	}
	return key, nil
}

// feedbackWiring is what every email gets for bounces and complaints: a
// VERP return path when mail.bounce_domain is set, and the complaint
// feedback headers (CFBL-Address, CFBL-Feedback-ID, Feedback-ID) when
// mail.cfbl_address is. A nil *feedbackWiring does nothing.
type feedbackWiring struct {
	bounceDomain string
	cfblAddress  string
	sender       string // the Feedback-ID sender id: the domain of mail.from
	store        subscribers.Store

	mu  sync.Mutex
	key []byte // loaded on first use
}

// newFeedbackWiring returns the wiring, or nil when both keys are off.
func newFeedbackWiring(cfg *Config, store subscribers.Store) *feedbackWiring {
	if cfg.Mail.BounceDomain == "" && cfg.Mail.CFBLAddress == "" {
		return nil
	}
	return &feedbackWiring{bounceDomain: cfg.Mail.BounceDomain, cfblAddress: cfg.Mail.CFBLAddress,
		sender: addressDomain(cfg.FromAddress().Address), store: store}
}

func (f *feedbackWiring) verpKey(ctx context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key == nil {
		k, err := loadVERPKey(ctx, f.store)
		if err != nil {
			return nil, err
		}
		f.key = k
	}
	return f.key, nil
}

// headers returns the complaint feedback headers of one kind of message.
// Digests name their newsletter and issue; other kinds are transactional.
func (f *feedbackWiring) headers(kind, newsletterID string, issueID int64) []mailer.Header {
	if f == nil || f.cfblAddress == "" {
		return nil
	}
	campaign, issue := "transactional", "0"
	if kind == digest.KindDigest {
		campaign, issue = newsletterID, strconv.FormatInt(issueID, 10)
	}
	return mailer.FeedbackHeaders(f.cfblAddress, mailer.FeedbackID(campaign, kind, issue, f.sender))
}

// finish gives a rendered email its return path and, unless it is a
// digest (whose template carries them, see digestData), its feedback
// headers.
func (f *feedbackWiring) finish(ctx context.Context, job delivery.Job, e *mailer.Email, err error) (*mailer.Email, error) {
	if f == nil || err != nil {
		return e, err
	}
	if f.bounceDomain != "" {
		key, err := f.verpKey(ctx)
		if err != nil {
			return nil, err
		}
		e.ReturnPath = bounces.VERPAddress(job.ID, key, f.bounceDomain)
	}
	if job.Kind != digest.KindDigest {
		e.Headers = append(e.Headers, f.headers(job.Kind, "", 0)...)
	}
	return e, nil
}

// newWebhooks builds the bounce webhooks from webhooks.*; they record into
// subs.
func newWebhooks(ctx context.Context, cfg *Config, db database, subs *subscribers.Service) (*web.Webhooks, error) {
	key, err := loadVERPKey(ctx, db)
	if err != nil {
		return nil, err
	}
	w := cfg.Webhooks
	return web.NewWebhooks(web.WebhookConfig{
		SESTopicARNs:      w.SES.TopicARNs,
		PostmarkUsername:  w.Postmark.Username,
		PostmarkPassword:  w.Postmark.Password,
		SendGridPublicKey: w.SendGrid.PublicKey,
		MailgunSigningKey: w.Mailgun.SigningKey,
		VERPKey:           key,
	}, subs)
}

// bouncesImport reads bounce and complaint reports from files and applies
// them.
func (a *app) bouncesImport(ctx context.Context, args []string) int {
	fs, configPath := newFlagSet("bounces import")
	dryRun := fs.Bool("dry-run", false, "read and report every message, but open no database and change nothing")
	u := usage{
		synopsis: "herald bounces import PATH... [--dry-run] [--config FILE]",
		description: `Reads bounces (RFC 3464 delivery status notifications) and complaints
(RFC 5965 feedback reports) and applies them: a hard bounce suppresses the
address (status bounced); soft bounces are counted, and
bounces.soft_threshold of them within bounces.soft_window suppress it too;
a complaint unsubscribes the reader from every newsletter (status
complained).

A report names its reader by the VERP return path it was sent to (when
mail.bounce_domain is set), the Message-ID of the original message, the
signed unsubscribe link it quotes, or the address, in that order. A report
that names no subscriber is logged as unmatched and changes nothing else; a
message that is neither a bounce nor a complaint is logged as unparsed,
with the reason. A message imported before (the same bytes) is reported
as a duplicate and changes nothing.

One line per report says what became of it (never the address: the
subscriber's id), and a summary ends the report. A path that cannot be read
fails the import (exit code 1) after the other paths were imported.`,
		arguments: `  PATH   an .eml file, an mbox file, or a Maildir directory (its new/ and cur/)`,
		example: `  herald bounces import /var/mail/bounces
  herald bounces import ~/Maildir/.Bounces --dry-run
  herald bounces import report1.eml report2.eml`,
	}
	pos, code, done := a.parseArgs(fs, u, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		return a.usageError(fs, "at least one PATH (.eml file, mbox file or Maildir) is required")
	}
	cfg, ok := a.config(fs, *configPath)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg.Log, a.stderr)

	var (
		subs    *subscribers.Service
		verpKey []byte
	)
	if !*dryRun {
		db, err := openMigrated(ctx, cfg, logger)
		if err != nil {
			return a.fail(fs, err)
		}
		defer db.Close()
		if subs, err = newSubscribers(ctx, cfg, db, logger.With("component", "subscribers")); err != nil {
			return a.fail(fs, err)
		}
		if verpKey, err = loadVERPKey(ctx, db); err != nil {
			return a.fail(fs, err)
		}
	}

	var sum importSummary
	failed := 0
	for _, p := range pos {
		err := bounces.Walk(p, func(source string, r io.Reader) error {
			sum.messages++
			b, err := io.ReadAll(io.LimitReader(r, bounces.MaxMessageSize+1))
			if err != nil {
				return err
			}
			events := bounces.ParseMessage(bytes.NewReader(b), source)
			// The same message imported again (a mailbox read twice) is
			// recognised by its digest and applied once.
			sha := sha256.Sum256(b)
			for i := range events {
				events[i].ReportID = "import:" + hex.EncodeToString(sha[:16]) + ":" + strconv.Itoa(i)
			}
			return a.importMessage(ctx, subs, verpKey, source, events, &sum)
		})
		if err != nil {
			if ctx.Err() != nil {
				return a.fail(fs, ctx.Err())
			}
			fmt.Fprintf(a.stdout, "%s: FAILED: %s\n", p, oneLine(err.Error()))
			failed++
		}
	}
	fmt.Fprintf(a.stdout, "%s: %d applied, %d unmatched, %d unparsed, %d ignored, %d duplicates; %s failed",
		plural(sum.messages, "message", "messages"), sum.applied, sum.unmatched, sum.unparsed, sum.ignored, sum.duplicate,
		plural(failed, "path", "paths"))
	if *dryRun {
		fmt.Fprint(a.stdout, " (dry run: nothing was changed)")
	}
	fmt.Fprintln(a.stdout)
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// importSummary counts what became of imported reports.
type importSummary struct {
	messages, applied, unmatched, unparsed, ignored, duplicate int
}

// importMessage records one message's reports (or, with subs nil, only
// reports what it read) and writes one line per report.
func (a *app) importMessage(ctx context.Context, subs *subscribers.Service, verpKey []byte, source string, events []bounces.Event, sum *importSummary) error {
	var fs []subscribers.Feedback
	for _, e := range events {
		e.Source = "import:" + e.Source
		f, ok := subscribers.FeedbackFromEvent(e, verpKey)
		switch {
		case !ok:
			sum.ignored++
			fmt.Fprintf(a.stdout, "%s: ignored: %s\n", source, oneLine(e.Reason))
		case subs == nil && f.Kind == subscribers.FeedbackUnparsed:
			sum.unparsed++
			fmt.Fprintf(a.stdout, "%s: unparsed: %s\n", source, oneLine(f.Reason))
		case subs == nil:
			fmt.Fprintf(a.stdout, "%s: would record a %s\n", source, describeKind(f.Kind))
		default:
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	out, err := subs.RecordFeedback(ctx, fs)
	if err != nil {
		return err
	}
	for i, o := range out {
		f := fs[i]
		switch o.Result {
		case subscribers.FeedbackApplied:
			sum.applied++
			what := "unchanged, " + string(o.Status)
			if o.Changed {
				what = "now " + string(o.Status)
			}
			if f.Kind == subscribers.FeedbackSoft {
				what += fmt.Sprintf(", %d soft bounces", o.SoftBounces)
			}
			fmt.Fprintf(a.stdout, "%s: applied %s: subscriber %d (%s)\n", source, describeKind(f.Kind), o.SubscriberID, what)
		case subscribers.FeedbackUnmatched:
			sum.unmatched++
			fmt.Fprintf(a.stdout, "%s: unmatched %s: no subscriber has this message or address\n", source, describeKind(f.Kind))
		case subscribers.FeedbackNotParsed:
			sum.unparsed++
			fmt.Fprintf(a.stdout, "%s: unparsed: %s\n", source, oneLine(f.Reason))
		case subscribers.FeedbackDuplicate:
			sum.duplicate++
			fmt.Fprintf(a.stdout, "%s: duplicate: recorded before\n", source)
		}
	}
	return nil
}

// describeKind names a report kind in the import report.
func describeKind(k subscribers.FeedbackKind) string {
	switch k {
	case subscribers.FeedbackHard:
		return "hard bounce"
	case subscribers.FeedbackSoft:
		return "soft bounce"
	}
	return string(k)
}
