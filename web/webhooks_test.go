package web

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/bounces"
	"herald/store/sqlite"
	"herald/subscribers"
)

const (
	hookTopic   = "arn:aws:sns:eu-west-1:123456789012:herald-bounces"
	hookCertURL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
	hookMailgun = "mailgun-signing-key"
)

// hookEnv is a Server whose webhooks write to a real subscribers service
// on a SQLite file, with keys made for the test.
type hookEnv struct {
	srv     *Server
	db      *sqlite.DB
	svc     *subscribers.Service
	snsKey  *rsa.PrivateKey
	certPEM []byte
	sgKey   *ecdsa.PrivateKey
	verpKey []byte
	now     time.Time
	ids     map[string]int64
	logs    *syncBuffer
}

func newHookEnv(t *testing.T, mutate ...func(*WebhookConfig)) *hookEnv {
	t.Helper()
	ctx := context.Background()
	e := &hookEnv{now: time.Now().UTC().Truncate(time.Second), ids: map[string]int64{}, logs: &syncBuffer{}, verpKey: []byte("verp-key-for-the-test")}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e.db = db
	e.svc, err = subscribers.NewService(ctx, db, subscribers.Options{Newsletters: []string{"daily", "weekly"}, MessageIDDomain: "passblue.example"})
	if err != nil {
		t.Fatal(err)
	}
	csv := "email,name,newsletters\ngone@example.net,,daily\nreader@example.com,,daily weekly\nbystander@example.org,,daily\n"
	if _, err := e.svc.Import(ctx, strings.NewReader(csv), subscribers.ImportOptions{Status: subscribers.StatusActive, Source: "test"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	subs, err := e.svc.FindSubscribers(ctx, subscribers.Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		e.ids[s.Email] = s.ID
	}

	// The keys: an RSA key and self-signed certificate stand in for SNS's,
	// an ECDSA P-256 pair for SendGrid's.
	if e.snsKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &e.snsKey.PublicKey, e.snsKey)
	if err != nil {
		t.Fatal(err)
	}
	e.certPEM = pemCert(der)
	if e.sgKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&e.sgKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := WebhookConfig{
		SESTopicARNs: []string{hookTopic},
		SNSCertFetcher: func(_ context.Context, url string) ([]byte, error) {
			if url != hookCertURL {
				return nil, errors.New("no such certificate")
			}
			return e.certPEM, nil
		},
		PostmarkUsername:  "postmark",
		PostmarkPassword:  "pm-s3cret",
		SendGridPublicKey: base64.StdEncoding.EncodeToString(pub),
		MailgunSigningKey: hookMailgun,
		VERPKey:           e.verpKey,
		Now:               func() time.Time { return e.now },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	hooks, err := NewWebhooks(cfg, e.svc)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = New(testConfig(), Deps{Subscribers: newFakeSubs(), Webhooks: hooks,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pemCert(der []byte) []byte {
	var b bytes.Buffer
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return b.Bytes()
}

func (e *hookEnv) post(t *testing.T, path string, body []byte, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	return rec
}

func (e *hookEnv) status(t *testing.T, email string) subscribers.Status {
	t.Helper()
	s, err := e.db.FindSubscriberByID(context.Background(), e.ids[email])
	if err != nil {
		t.Fatal(err)
	}
	return s.Status
}

// unchanged checks that every reader is still active and the bounce log is
// empty.
func (e *hookEnv) unchanged(t *testing.T) {
	t.Helper()
	for email := range e.ids {
		if st := e.status(t, email); st != subscribers.StatusActive {
			t.Errorf("%s is %s, want active", email, st)
		}
	}
	if logs, err := e.db.FindFeedbackLog(context.Background(), 10); err != nil || len(logs) != 0 {
		t.Errorf("bounce log = %+v, %v; want empty", logs, err)
	}
}

// snsBody signs an SNS message with the test's key.
func (e *hookEnv) snsBody(t *testing.T, m bounces.SNSMessage, key *rsa.PrivateKey) []byte {
	t.Helper()
	m.SignatureVersion, m.SigningCertURL = "2", hookCertURL
	var sb strings.Builder
	add := func(k, v string) { sb.WriteString(k + "\n" + v + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == bounces.SNSNotification {
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicARN)
		add("Type", m.Type)
	} else {
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicARN)
		add("Type", m.Type)
	}
	d := sha256.Sum256([]byte(sb.String()))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sesMessage(t *testing.T, kind, email string, extra string) string {
	t.Helper()
	switch kind {
	case "Bounce":
		return `{"notificationType":"Bounce","bounce":{"feedbackId":"fb-` + email + `","bounceType":"Permanent","bounceSubType":"General",
			"bouncedRecipients":[{"emailAddress":"` + email + `","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
			"timestamp":"2026-03-03T09:14:02Z"},"mail":{` + extra + `}}`
	case "Complaint":
		return `{"notificationType":"Complaint","complaint":{"feedbackId":"fc-1","complaintFeedbackType":"abuse",
			"complainedRecipients":[{"emailAddress":"` + email + `"}],"timestamp":"2026-03-05T07:58:00Z"},"mail":{}}`
	}
	t.Fatalf("kind %s", kind)
	return ""
}

func TestWebhookSES(t *testing.T) {
	e := newHookEnv(t)
	msg := bounces.SNSMessage{Type: bounces.SNSNotification, MessageID: "sns-1", TopicARN: hookTopic,
		Message: sesMessage(t, "Bounce", "gone@example.net", ""), Timestamp: "2026-03-03T09:14:03Z"}

	// Forged: signed with another key, a topic of the attacker's, or
	// tampered with after signing.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherTopic := msg
	otherTopic.TopicARN = "arn:aws:sns:eu-west-1:666666666666:attacker"
	tampered := strings.Replace(string(e.snsBody(t, msg, e.snsKey)), "Permanent", "Transient", 1)
	for name, body := range map[string][]byte{
		"other key":   e.snsBody(t, msg, other),
		"other topic": e.snsBody(t, otherTopic, e.snsKey),
		"tampered":    []byte(tampered),
		"not json":    []byte("{"),
	} {
		if rec := e.post(t, "/webhooks/ses", body); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status = %d, want 401", name, rec.Code)
		}
	}
	e.unchanged(t)

	rec := e.post(t, "/webhooks/ses", e.snsBody(t, msg, e.snsKey))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `"applied":1`)
	if st := e.status(t, "gone@example.net"); st != subscribers.StatusBounced {
		t.Errorf("status = %s, want bounced", st)
	}
	// SNS delivers again: applied once.
	rec = e.post(t, "/webhooks/ses", e.snsBody(t, msg, e.snsKey))
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `"applied":0`)

	// A complaint.
	c := msg
	c.MessageID, c.Message = "sns-2", sesMessage(t, "Complaint", "reader@example.com", "")
	wantStatus(t, e.post(t, "/webhooks/ses", e.snsBody(t, c, e.snsKey)), http.StatusOK)
	if st := e.status(t, "reader@example.com"); st != subscribers.StatusComplained {
		t.Errorf("status = %s, want complained", st)
	}
	if st := e.status(t, "bystander@example.org"); st != subscribers.StatusActive {
		t.Errorf("bystander is %s", st)
	}

	// A subscription confirmation is logged for the operator, not fetched.
	conf := bounces.SNSMessage{Type: bounces.SNSSubscriptionConfirmation, MessageID: "sns-3", TopicARN: hookTopic,
		Message: "You have chosen to subscribe", Timestamp: "2026-03-03T09:00:00Z", Token: "snstoken",
		SubscribeURL: "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=snstoken"}
	wantStatus(t, e.post(t, "/webhooks/ses", e.snsBody(t, conf, e.snsKey)), http.StatusOK)
	if !strings.Contains(e.logs.String(), "SNS subscription awaits confirmation") || !strings.Contains(e.logs.String(), "ConfirmSubscription") {
		t.Errorf("log lacks the SubscribeURL:\n%s", e.logs.String())
	}
	// Addresses never reach the log.
	for _, a := range []string{"gone@example.net", "reader@example.com"} {
		if strings.Contains(e.logs.String(), a) {
			t.Errorf("the log shows %s", a)
		}
	}
}

func TestWebhookSESVERP(t *testing.T) {
	e := newHookEnv(t)
	ctx := context.Background()
	// A pending signup has a confirmation in the outbox; its VERP return
	// path names it even though SES reports another address.
	if err := e.svc.Signup(ctx, subscribers.SignupRequest{Email: "verp@example.org", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	jobs, err := e.db.ClaimMessages(ctx, "test", time.Now(), time.Minute, 10)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v, %d jobs", err, len(jobs))
	}
	verp := bounces.VERPAddress(jobs[0].ID, e.verpKey, "bounces.passblue.example")
	msg := bounces.SNSMessage{Type: bounces.SNSNotification, MessageID: "sns-v", TopicARN: hookTopic, Timestamp: "2026-03-03T09:14:03Z",
		Message: sesMessage(t, "Bounce", "forwarded@elsewhere.example", `"source":"`+verp+`"`)}
	rec := e.post(t, "/webhooks/ses", e.snsBody(t, msg, e.snsKey))
	wantStatus(t, rec, http.StatusOK)
	s, err := e.db.FindSubscriberByID(ctx, jobs[0].SubscriberID)
	if err != nil || s.Status != subscribers.StatusBounced {
		t.Errorf("subscriber = %+v, %v; want bounced", s, err)
	}
}

func TestWebhookPostmark(t *testing.T) {
	e := newHookEnv(t)
	body := []byte(`{"RecordType":"Bounce","ID":42,"Type":"HardBounce","Email":"gone@example.net","Details":"smtp;550 5.1.1 unknown","BouncedAt":"2026-03-03T09:14:02Z"}`)
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }

	for _, h := range [][]string{nil, {"Authorization", basic("postmark", "wrong")}, {"Authorization", basic("other", "pm-s3cret")},
		{bounces.PostmarkTokenHeader, "pm-s3cre"}} {
		rec := e.post(t, "/webhooks/postmark", body, h...)
		wantStatus(t, rec, http.StatusUnauthorized)
	}
	e.unchanged(t)

	wantStatus(t, e.post(t, "/webhooks/postmark", body, "Authorization", basic("postmark", "pm-s3cret")), http.StatusOK)
	if st := e.status(t, "gone@example.net"); st != subscribers.StatusBounced {
		t.Errorf("status = %s, want bounced", st)
	}
	spam := []byte(`{"RecordType":"SpamComplaint","ID":43,"Type":"SpamComplaint","Email":"reader@example.com"}`)
	wantStatus(t, e.post(t, "/webhooks/postmark", spam, bounces.PostmarkTokenHeader, "pm-s3cret"), http.StatusOK)
	if st := e.status(t, "reader@example.com"); st != subscribers.StatusComplained {
		t.Errorf("status = %s, want complained", st)
	}
}

func (e *hookEnv) sendGridHeaders(t *testing.T, key *ecdsa.PrivateKey, body []byte) []string {
	t.Helper()
	ts := strconv.FormatInt(e.now.Unix(), 10)
	d := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []string{bounces.SendGridSignatureHeader, base64.StdEncoding.EncodeToString(sig), bounces.SendGridTimestampHeader, ts}
}

func TestWebhookSendGrid(t *testing.T) {
	e := newHookEnv(t)
	body := []byte(`[{"email":"gone@example.net","timestamp":1772529242,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 unknown","sg_event_id":"e1"},
		{"email":"reader@example.com","timestamp":1772529243,"event":"spamreport","sg_event_id":"e2"},
		{"email":"bystander@example.org","timestamp":1772529244,"event":"delivered","sg_event_id":"e3"}]`)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := e.sendGridHeaders(t, e.sgKey, body)
	changedTS := append([]string(nil), good...)
	changedTS[3] = strconv.FormatInt(e.now.Unix()+1, 10)
	for _, c := range []struct {
		h    []string
		body []byte
	}{
		{e.sendGridHeaders(t, other, body), body},
		{good, bytes.Replace(body, []byte("spamreport"), []byte("delivered!"), 1)},
		{changedTS, body},
		{nil, body},
	} {
		wantStatus(t, e.post(t, "/webhooks/sendgrid", c.body, c.h...), http.StatusUnauthorized)
	}
	e.unchanged(t)

	rec := e.post(t, "/webhooks/sendgrid", body, good...)
	wantStatus(t, rec, http.StatusOK)
	wantBody(t, rec, `"received":3`, `"applied":2`)
	if e.status(t, "gone@example.net") != subscribers.StatusBounced || e.status(t, "reader@example.com") != subscribers.StatusComplained ||
		e.status(t, "bystander@example.org") != subscribers.StatusActive {
		t.Error("statuses after the SendGrid events are wrong")
	}
}

func mailgunBody(t *testing.T, key string, ts int64, token, eventData string) []byte {
	t.Helper()
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(strconv.FormatInt(ts, 10) + token))
	b, err := json.Marshal(map[string]any{
		"signature":  map[string]string{"timestamp": strconv.FormatInt(ts, 10), "token": token, "signature": hex.EncodeToString(m.Sum(nil))},
		"event-data": json.RawMessage(eventData),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebhookMailgun(t *testing.T) {
	e := newHookEnv(t)
	ev := `{"id":"mg-1","event":"failed","severity":"permanent","reason":"bounce","recipient":"gone@example.net","timestamp":1772529242,"delivery-status":{"code":550,"message":"user unknown"}}`
	now := e.now.Unix()
	for _, body := range [][]byte{
		mailgunBody(t, "another-key", now, "tok-a", ev),                          // forged
		mailgunBody(t, hookMailgun, now-int64(time.Hour.Seconds()), "tok-b", ev), // stale
		[]byte(`{"event-data":` + ev + `}`),                                      // unsigned
	} {
		wantStatus(t, e.post(t, "/webhooks/mailgun", body), http.StatusUnauthorized)
	}
	e.unchanged(t)

	good := mailgunBody(t, hookMailgun, now, "tok-good", ev)
	wantStatus(t, e.post(t, "/webhooks/mailgun", good), http.StatusOK)
	if st := e.status(t, "gone@example.net"); st != subscribers.StatusBounced {
		t.Errorf("status = %s, want bounced", st)
	}
	// The same request again is a replay.
	wantStatus(t, e.post(t, "/webhooks/mailgun", good), http.StatusUnauthorized)

	complaint := `{"id":"mg-2","event":"complained","recipient":"reader@example.com","timestamp":1772529243}`
	wantStatus(t, e.post(t, "/webhooks/mailgun", mailgunBody(t, hookMailgun, now, "tok-c", complaint)), http.StatusOK)
	if st := e.status(t, "reader@example.com"); st != subscribers.StatusComplained {
		t.Errorf("status = %s, want complained", st)
	}
}

func TestWebhooksOffAndLimits(t *testing.T) {
	// No secrets: every route answers 404.
	e := newHookEnv(t, func(c *WebhookConfig) { *c = WebhookConfig{} })
	for _, p := range []string{"/webhooks/ses", "/webhooks/postmark", "/webhooks/sendgrid", "/webhooks/mailgun"} {
		wantStatus(t, e.post(t, p, []byte(`{}`)), http.StatusNotFound)
	}
	// No Webhooks at all.
	h := newHarness(t)
	wantStatus(t, h.do(t, http.MethodPost, "/webhooks/mailgun", "application/json", strings.NewReader("{}")), http.StatusNotFound)

	// Over 1 MiB: 413, nothing read.
	e = newHookEnv(t)
	big := bytes.Repeat([]byte(" "), int(WebhookBodyLimit)+1)
	wantStatus(t, e.post(t, "/webhooks/mailgun", big), http.StatusRequestEntityTooLarge)
	// A bad SendGrid key is a configuration error.
	if _, err := NewWebhooks(WebhookConfig{SendGridPublicKey: "nope"}, e.svc); err == nil {
		t.Error("NewWebhooks accepted a bad SendGrid key")
	}
}
