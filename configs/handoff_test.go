package configs

import (
	"strings"
	"testing"
	"time"
)

// handoff: decoded as skills/handoff takes it, the secret from the
// environment and never printed; each error names its key and line.
func TestHandoffConfig(t *testing.T) {
	c, err := Parse("h.yaml", []byte(twoProviders+`handoff:
  enabled: true
  rules: ['转人工', '(?i)agent please']
  negative: 1
  failed_answers: -1
  vip_users: [acme/ceo]
  queue_timeout: 2m
  ticket_url: https://tickets.example.com/hook
  ticket_secret: ${TICKET_SECRET}
`), env(map[string]string{"TICKET_SECRET": "s3"}))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handoff()
	if !h.Enabled || len(h.Rules) != 2 || h.Negative != 1 || h.FailedAnswers != -1 || h.VIPUsers[0] != "acme/ceo" ||
		h.QueueTimeout != 2*time.Minute || h.TicketURL != "https://tickets.example.com/hook" || h.TicketSecret != "s3" {
		t.Fatalf("%+v", h)
	}
	if s := c.HandoffSection.TicketSecret.String(); strings.Contains(s, "s3") {
		t.Fatalf("the secret prints as %q", s)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"handoff:\n  rules: ['((']\n", "h.yaml:4: handoff.rules[0]: \"((\" is not an RE2 pattern"},
		{"handoff:\n  negative: -3\n", "h.yaml:4: handoff.negative: must be -1 (off)"},
		{"handoff:\n  queue_timeout: 10ms\n", "h.yaml:4: handoff.queue_timeout: must be between 1s and 168h"},
		{"handoff:\n  ticket_url: ftp://x\n  ticket_secret: k\n", "h.yaml:4: handoff.ticket_url: must be an http(s) URL"},
		{"handoff:\n  ticket_url: https://x/hook\n", "handoff.ticket_secret: must be set with handoff.ticket_url"},
		{"handoff:\n  resume: '%d left'\n", "h.yaml:4: handoff.resume: may hold one %s"},
		{"handoff:\n  vip_users: ['']\n", "h.yaml:4: handoff.vip_users[0]"},
		{"handoff:\n  enable: true\n", `did you mean "enabled"`},
	} {
		_, err := Parse("h.yaml", []byte(twoProviders+tc.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nlacks %q", tc.yaml, err, tc.want)
		}
	}
}
