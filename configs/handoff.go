package configs

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/moltbot/moltbot/skills/handoff"
)

// HandoffConfig is handoff: the hand-off to a person (skills/handoff).
//
//	handoff:
//	  enabled: true
//	  rules: ['转人工', '(?i)human please']   # default: handoff.DefaultRules
//	  failed_answers: 2    # answers in a row without a knowledge-base hit (-1: off)
//	  low_confidence: 2    # intents in a row that fell back (-1: off)
//	  negative: 2          # negative sentiment in a row (-1: off; 1: at once)
//	  vip_users: [alice, acme/bob]
//	  queue_timeout: 5m
//	  agent_timeout: 30m   # an agent silent this long gives it back (0: never)
//	  ticket_url: https://tickets.example.com/hook
//	  ticket_secret: ${TICKET_SECRET}
type HandoffConfig struct {
	Enabled       bool     `yaml:"enabled"`
	Rules         []string `yaml:"rules"`
	FailedAnswers int      `yaml:"failed_answers"`
	LowConfidence int      `yaml:"low_confidence"`
	Negative      int      `yaml:"negative"`
	VIPUsers      []string `yaml:"vip_users"`
	QueueTimeout  Duration `yaml:"queue_timeout"`
	AgentTimeout  Duration `yaml:"agent_timeout"`
	Notice        string   `yaml:"notice"`
	Resume        string   `yaml:"resume"`
	Release       string   `yaml:"release"`
	TicketURL     string   `yaml:"ticket_url"`
	TicketSecret  Secret   `yaml:"ticket_secret"`
}

// Handoff is handoff: as skills/handoff takes it.
func (c *Config) Handoff() handoff.Config {
	h := c.HandoffSection
	return handoff.Config{Enabled: h.Enabled, Rules: h.Rules, FailedAnswers: h.FailedAnswers, LowConfidence: h.LowConfidence,
		Negative: h.Negative, VIPUsers: h.VIPUsers, QueueTimeout: h.QueueTimeout.D(), AgentTimeout: h.AgentTimeout.D(), Notice: h.Notice, Resume: h.Resume,
		Release: h.Release, TicketURL: h.TicketURL, TicketSecret: h.TicketSecret.Value()}
}

// validateHandoff checks handoff:; add reports a problem at a key.
func (c *Config) validateHandoff(add func(path, format string, args ...any)) {
	h := c.HandoffSection
	for i, r := range h.Rules {
		if _, err := regexp.Compile(r); err != nil {
			add(fmt.Sprintf("handoff.rules[%d]", i), "%q is not an RE2 pattern: %v", r, err)
		}
	}
	for key, v := range map[string]int{"handoff.failed_answers": h.FailedAnswers, "handoff.low_confidence": h.LowConfidence, "handoff.negative": h.Negative} {
		if v < -1 || v > 1000 {
			add(key, "must be -1 (off), 0 (the default, 2) or a count up to 1000, got %d", v)
		}
	}
	for i, u := range h.VIPUsers {
		if u == "" || len(u) > 256 {
			add(fmt.Sprintf("handoff.vip_users[%d]", i), "a user id (\"user\" or \"tenant/user\") of 1-256 bytes")
		}
	}
	if d := h.QueueTimeout.D(); d != 0 && (d < time.Second || d > 7*24*time.Hour) {
		add("handoff.queue_timeout", "must be between 1s and 168h, got %s", h.QueueTimeout)
	}
	if d := h.AgentTimeout.D(); d != 0 && (d < time.Second || d > 30*24*time.Hour) {
		add("handoff.agent_timeout", "must be 0 (never) or between 1s and 720h, got %s", h.AgentTimeout)
	}
	if strings.Count(h.Resume, "%") > 1 || strings.Contains(h.Resume, "%") && !strings.Contains(h.Resume, "%s") {
		add("handoff.resume", "may hold one %%s (the ticket id) and no other %%")
	}
	for key, v := range map[string]string{"handoff.notice": h.Notice, "handoff.resume": h.Resume, "handoff.release": h.Release} {
		if len(v) > 4096 {
			add(key, "must be at most 4096 bytes, got %d", len(v))
		}
	}
	if h.TicketURL != "" {
		u, err := url.Parse(h.TicketURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("handoff.ticket_url", "must be an http(s) URL, got %q", h.TicketURL)
		}
		if h.TicketSecret == "" {
			add("handoff.ticket_secret", "must be set with handoff.ticket_url (the tickets are signed with it): use ${VAR}")
		}
	}
}
