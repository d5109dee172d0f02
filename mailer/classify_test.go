package mailer

import "testing"

// TestSendErrorClassification: only a refusal of the reader's own address
// suppresses them; refusals that are about us (policy, relay access,
// sender, authentication) pause the pool and never bounce anyone.
func TestSendErrorClassification(t *testing.T) {
	tests := []struct {
		name               string
		stage              string
		code               int
		text               string
		wantBounce, wantPW bool
	}{
		{"user unknown", StageRcpt, 550, "5.1.1 <x@example.org>: Recipient address rejected: User unknown", true, false},
		{"bad domain", StageRcpt, 550, "5.1.2 Host or domain name not found", true, false},
		{"mailbox disabled", StageRcpt, 550, "5.2.1 Mailbox disabled", true, false},
		{"no enhanced code", StageRcpt, 550, "no such user", true, false},
		{"undefined enhanced code", StageRcpt, 550, "5.0.0 no such user", true, false},
		{"relay access denied", StageRcpt, 554, "5.7.1 <x@example.org>: Relay access denied", false, true},
		{"bare 554 policy", StageRcpt, 554, "Relay access denied", false, false},
		{"mailbox full", StageRcpt, 552, "5.2.2 Mailbox full", false, false},
		{"greylisted", StageRcpt, 450, "4.2.0 Greylisted, try later", false, false},
		{"sender rejected", StageMail, 550, "5.1.8 Sender address rejected", false, true},
		{"auth required", StageMail, 530, "5.7.0 Authentication required", false, true},
		{"closing", StageData, 421, "4.3.2 Service shutting down", false, true},
		{"content refused", StageData, 554, "5.6.0 Message refused", false, false},
		{"pool busy", StageWait, 0, "", false, false},
		{"relay down", StageDial, 0, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &SendError{Stage: tt.stage, Code: tt.code, Permanent: tt.code >= 500, Enhanced: parseEnhanced(tt.text)}
			if got := e.Bounce(); got != tt.wantBounce {
				t.Errorf("Bounce() = %v, want %v (enhanced %v)", got, tt.wantBounce, e.Enhanced)
			}
			if got := e.PoolWide(); got != tt.wantPW {
				t.Errorf("PoolWide() = %v, want %v", got, tt.wantPW)
			}
		})
	}
}

func TestParseEnhanced(t *testing.T) {
	tests := map[string][3]int{
		"5.1.1 user unknown":   {5, 1, 1},
		"4.7.0\ttry later":     {4, 7, 0},
		"2.0.0":                {2, 0, 0},
		"5.1.10 x":             {5, 1, 10},
		"Relay access denied":  {},
		"5.1 x":                {},
		"6.1.1 x":              {},
		"5.1.1000 x":           {},
		"":                     {},
		"550 5.1.1 (the code)": {},
	}
	for in, want := range tests {
		if got := parseEnhanced(in); got != want {
			t.Errorf("parseEnhanced(%q) = %v, want %v", in, got, want)
		}
	}
}
