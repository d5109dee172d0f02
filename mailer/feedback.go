package mailer

import "strings"

// Complaint feedback headers. RFC 9477 lets a sender name, in every
// message, the address that mailbox providers should send ARF complaint
// reports to (CFBL-Address), with an identifier they echo back in the
// report (CFBL-Feedback-ID); Gmail's feedback loop reads Feedback-ID. None
// of them is trusted by a receiver unless it is covered by a DKIM signature
// aligned with the CFBL address's domain: DKIMSigner signs them whenever a
// message carries them (DKIMHeadersIfPresent), and a relay that signs
// instead (Amazon SES, OpenDKIM, ...) must be told to include them.

// FeedbackID returns a Feedback-ID value in Gmail's format,
// "campaign:kind:issue:sender": the sender id last, the others narrowing
// the reports down. A colon, blank or control character inside a field
// becomes "-", and an empty field "0".
func FeedbackID(campaign, kind, issue, sender string) string {
	fields := []string{campaign, kind, issue, sender}
	for i, f := range fields {
		f = strings.Map(func(r rune) rune {
			if r == ':' || r <= ' ' || r == 0x7f || r > '~' {
				return '-'
			}
			return r
		}, f)
		if f == "" {
			f = "0"
		}
		fields[i] = f
	}
	return strings.Join(fields, ":")
}

// FeedbackHeaders returns the complaint feedback headers of one message:
// "CFBL-Address: <cfblAddress>; report=arf", and CFBL-Feedback-ID and
// Feedback-ID both set to feedbackID. An empty cfblAddress returns none.
func FeedbackHeaders(cfblAddress, feedbackID string) []Header {
	if cfblAddress == "" {
		return nil
	}
	return []Header{
		{Name: "CFBL-Address", Value: cfblAddress + "; report=arf"},
		{Name: "CFBL-Feedback-ID", Value: feedbackID},
		{Name: "Feedback-ID", Value: feedbackID},
	}
}
