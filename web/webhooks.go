package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"herald"
	"herald/bounces"
	"herald/subscribers"
)

// WebhookBodyLimit is the largest body a bounce webhook accepts.
const WebhookBodyLimit int64 = 1 << 20

// FeedbackRecorder is what the bounce webhooks ask of the subscribers
// service (*subscribers.Service).
type FeedbackRecorder interface {
	// RecordFeedback applies bounce and complaint reports in one
	// transaction, one outcome per report; EUNAVAILABLE when the store
	// cannot record them.
	RecordFeedback(ctx context.Context, fs []subscribers.Feedback) ([]subscribers.FeedbackOutcome, error)
}

// WebhookConfig holds the secrets of the bounce and complaint webhooks. A
// provider whose secret is empty is off: its route answers 404.
type WebhookConfig struct {
	// SESTopicARNs are the SNS topics whose messages POST /webhooks/ses
	// takes (anyone can sign with a topic of their own).
	SESTopicARNs []string
	// SNSCertFetcher fetches SNS signing certificates; nil fetches them
	// over HTTPS from sns.<region>.amazonaws.com (tests inject their own).
	SNSCertFetcher bounces.CertFetcher
	// PostmarkUsername and PostmarkPassword are the HTTP Basic credentials
	// put in the Postmark webhook URL; the password alone may come in the
	// X-Herald-Webhook-Token header instead.
	PostmarkUsername string
	PostmarkPassword string
	// SendGridPublicKey is the signed event webhook's verification key
	// (base64 DER, as SendGrid shows it, or PEM).
	SendGridPublicKey string
	// MailgunSigningKey is Mailgun's HTTP webhook signing key.
	MailgunSigningKey string
	// VERPKey checks VERP return paths that providers report back; nil
	// when VERP is off.
	VERPKey []byte
	// Now is the clock of Mailgun's timestamp window; nil: time.Now.
	Now func() time.Time
}

// Webhooks receives the bounce and complaint webhooks of Amazon SES (via
// SNS), Postmark, SendGrid and Mailgun. Each request's signature or
// credentials are checked before anything in it is read, and a request that
// fails the check is answered 401 with nothing changed.
type Webhooks struct {
	rec      FeedbackRecorder
	verpKey  []byte
	sns      *bounces.SNSVerifier      // nil: off
	postmark *bounces.PostmarkVerifier // nil: off
	sendgrid *bounces.SendGridVerifier // nil: off
	mailgun  *bounces.MailgunVerifier  // nil: off
}

// NewWebhooks checks cfg (a SendGrid key must parse) and returns the
// webhooks that send what they receive to rec.
func NewWebhooks(cfg WebhookConfig, rec FeedbackRecorder) (*Webhooks, error) {
	if rec == nil {
		return nil, errors.New("web: NewWebhooks needs a FeedbackRecorder")
	}
	w := &Webhooks{rec: rec, verpKey: cfg.VERPKey}
	var err error
	if len(cfg.SESTopicARNs) > 0 {
		w.sns = bounces.NewSNSVerifier(cfg.SESTopicARNs, cfg.SNSCertFetcher, cfg.Now)
	}
	if cfg.PostmarkPassword != "" {
		if w.postmark, err = bounces.NewPostmarkVerifier(cfg.PostmarkUsername, cfg.PostmarkPassword); err != nil {
			return nil, err
		}
	}
	if cfg.SendGridPublicKey != "" {
		if w.sendgrid, err = bounces.NewSendGridVerifier(cfg.SendGridPublicKey); err != nil {
			return nil, err
		}
	}
	if cfg.MailgunSigningKey != "" {
		if w.mailgun, err = bounces.NewMailgunVerifier(cfg.MailgunSigningKey, 0, cfg.Now); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// webhookOff answers a provider that is not configured.
var errWebhookOff = herald.Errorf(herald.ENOTFOUND, "We could not find that page.")

// errForged answers a request whose signature or credentials fail.
var errForged = herald.Errorf(herald.EUNAUTHORIZED, "The webhook signature or credentials do not verify.")

// webhookBody reads the request body, bounded by the route's limit.
func webhookBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// webhookAnswer is the JSON a webhook answers after it recorded reports.
type webhookAnswer struct {
	Received int `json:"received"`
	Applied  int `json:"applied"`
}

// record sends what a verified webhook reported to the subscribers service.
func (s *Server) record(c echo.Context, provider string, events []bounces.Event) error {
	fs := make([]subscribers.Feedback, 0, len(events))
	for _, e := range events {
		if f, ok := subscribers.FeedbackFromEvent(e, s.hooks.verpKey); ok {
			fs = append(fs, f)
		}
	}
	ans := webhookAnswer{Received: len(events)}
	if len(fs) > 0 {
		out, err := s.hooks.rec.RecordFeedback(c.Request().Context(), fs)
		if err != nil {
			return err
		}
		for _, o := range out {
			if o.Result == subscribers.FeedbackApplied {
				ans.Applied++
			}
		}
	}
	s.log.LogAttrs(c.Request().Context(), slog.LevelInfo, "webhook received",
		slog.String("provider", provider), slog.Int("events", len(events)), slog.Int("recorded", len(fs)),
		slog.Int("applied", ans.Applied), slog.String("request_id", requestID(c)))
	return c.JSON(http.StatusOK, ans)
}

// forged logs a refused webhook (never its content) and returns the 401.
func (s *Server) forged(c echo.Context, provider string, err error) error {
	s.log.LogAttrs(c.Request().Context(), slog.LevelWarn, "webhook refused",
		slog.String("provider", provider), slog.String("why", err.Error()), slog.String("request_id", requestID(c)))
	return errForged
}

// handleSESWebhook takes Amazon SNS messages carrying SES bounce and
// complaint notifications. A subscription confirmation is logged with its
// SubscribeURL for the operator to open (Herald fetches no URL a message
// names, except the signing certificate's, from an SNS host).
func (s *Server) handleSESWebhook(c echo.Context) error {
	if s.hooks == nil || s.hooks.sns == nil {
		return errWebhookOff
	}
	body, err := webhookBody(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	m, err := s.hooks.sns.Verify(ctx, body)
	if errors.Is(err, bounces.ErrForged) {
		return s.forged(c, "ses", err)
	} else if err != nil {
		// The certificate could not be fetched: SNS retries later.
		s.log.LogAttrs(ctx, slog.LevelWarn, "webhook not verified", slog.String("provider", "ses"),
			slog.String("error", err.Error()), slog.String("request_id", requestID(c)))
		return herald.Errorf(herald.EUNAVAILABLE, "The signature cannot be checked now. Please retry.")
	}
	switch m.Type {
	case bounces.SNSSubscriptionConfirmation:
		if err := bounces.CheckSNSURL(m.SubscribeURL); err != nil {
			return herald.Errorf(herald.EBADREQUEST, "The SubscribeURL is not an Amazon SNS URL.")
		}
		// The operator confirms by opening the URL: it carries SNS's
		// confirmation token (not one of ours), which is what it is for.
		s.log.LogAttrs(ctx, slog.LevelWarn, "SNS subscription awaits confirmation: open subscribe_url to confirm it",
			slog.String("topic_arn", m.TopicARN), slog.String("subscribe_url", m.SubscribeURL), slog.String("request_id", requestID(c)))
		return c.JSON(http.StatusOK, webhookAnswer{})
	case bounces.SNSUnsubscribeConfirmation:
		s.log.LogAttrs(ctx, slog.LevelWarn, "SNS subscription was removed", slog.String("topic_arn", m.TopicARN))
		return c.JSON(http.StatusOK, webhookAnswer{})
	}
	events, err := bounces.ParseSES(m)
	if err != nil {
		return herald.Errorf(herald.EBADREQUEST, "The message is not an SES notification.")
	}
	return s.record(c, "ses", events)
}

// handlePostmarkWebhook takes Postmark's bounce and spam complaint webhooks.
func (s *Server) handlePostmarkWebhook(c echo.Context) error {
	if s.hooks == nil || s.hooks.postmark == nil {
		return errWebhookOff
	}
	if err := s.hooks.postmark.Verify(c.Request().Header); err != nil {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="herald webhooks"`)
		return s.forged(c, "postmark", err)
	}
	body, err := webhookBody(c)
	if err != nil {
		return err
	}
	events, err := bounces.ParsePostmark(body)
	if err != nil {
		return herald.Errorf(herald.EBADREQUEST, "The body is not a Postmark webhook.")
	}
	return s.record(c, "postmark", events)
}

// handleSendGridWebhook takes SendGrid's signed event webhook.
func (s *Server) handleSendGridWebhook(c echo.Context) error {
	if s.hooks == nil || s.hooks.sendgrid == nil {
		return errWebhookOff
	}
	body, err := webhookBody(c)
	if err != nil {
		return err
	}
	if err := s.hooks.sendgrid.Verify(c.Request().Header, body); err != nil {
		return s.forged(c, "sendgrid", err)
	}
	events, err := bounces.ParseSendGrid(body)
	if err != nil {
		return herald.Errorf(herald.EBADREQUEST, "The body is not a SendGrid event array.")
	}
	return s.record(c, "sendgrid", events)
}

// handleMailgunWebhook takes Mailgun's webhooks (JSON, signed with the
// webhook signing key); a stale timestamp or a replayed token is refused.
func (s *Server) handleMailgunWebhook(c echo.Context) error {
	if s.hooks == nil || s.hooks.mailgun == nil {
		return errWebhookOff
	}
	body, err := webhookBody(c)
	if err != nil {
		return err
	}
	data, token, err := s.hooks.mailgun.Verify(body)
	if err != nil {
		return s.forged(c, "mailgun", err)
	}
	events, err := bounces.ParseMailgun(data)
	if err == nil {
		err = s.record(c, "mailgun", events)
	} else {
		err = herald.Errorf(herald.EBADREQUEST, "The body holds no Mailgun event.")
	}
	if err != nil {
		// Mailgun retries a failed request with the same token.
		s.hooks.mailgun.Release(token)
	}
	return err
}
