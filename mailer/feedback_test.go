package mailer

import (
	"bytes"
	"testing"
)

func TestFeedbackID(t *testing.T) {
	tests := []struct {
		campaign, kind, issue, sender, want string
	}{
		{"daily", "digest", "42", "passblue.example", "daily:digest:42:passblue.example"},
		{"a:b", "", "x y", "é.example", "a-b:0:x-y:-.example"},
	}
	for _, tt := range tests {
		if got := FeedbackID(tt.campaign, tt.kind, tt.issue, tt.sender); got != tt.want {
			t.Errorf("FeedbackID(%q, %q, %q, %q) = %q, want %q", tt.campaign, tt.kind, tt.issue, tt.sender, got, tt.want)
		}
	}
	if FeedbackHeaders("", "x") != nil {
		t.Error("FeedbackHeaders without an address returned headers")
	}
}

// A digest's feedback headers are part of every reader's message, and the
// spliced encoding is still the reference encoding.
func TestDigestFeedbackHeaders(t *testing.T) {
	c := testComposer(t)
	d := testDigest()
	d.Headers = FeedbackHeaders("fbl@passblue.example", FeedbackID(d.NewsletterID, "digest", "7", "passblue.example"))
	dt, err := c.PrepareDigest(d)
	if err != nil {
		t.Fatal(err)
	}
	e := dt.Email(testReader(), sendDate)
	spliced, err := dt.AppendTo(nil, testReader(), sendDate)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encode(t, e), spliced) {
		t.Error("Email.WriteTo differs from DigestTemplate.AppendTo: the splice was lost")
	}
	fresh := *e
	fresh.splice = nil
	plain := encode(t, &fresh)
	sh, _, _ := bytes.Cut(spliced, []byte("\r\n\r\n"))
	ph, _, _ := bytes.Cut(plain, []byte("\r\n\r\n"))
	if !bytes.Equal(sh, ph) || unsoft(spliced) != unsoft(plain) {
		t.Errorf("the spliced digest differs from the reference encoding:\n%s\n---\n%s", sh, ph)
	}
	env := parse(t, spliced)
	if got := env.GetHeader("CFBL-Address"); got != "fbl@passblue.example; report=arf" {
		t.Errorf("CFBL-Address = %q", got)
	}
	if got := env.GetHeader("Feedback-ID"); got != d.NewsletterID+":digest:7:passblue.example" || env.GetHeader("CFBL-Feedback-ID") != got {
		t.Errorf("Feedback-ID = %q, CFBL-Feedback-ID = %q", got, env.GetHeader("CFBL-Feedback-ID"))
	}
	d.Headers = []Header{{Name: "CFBL-Address", Value: "x\r\nBcc: y"}}
	if _, err := c.PrepareDigest(d); err == nil {
		t.Error("PrepareDigest accepted a header with CRLF")
	}
}
