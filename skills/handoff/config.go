package handoff

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Config is the hand-off's (the `handoff:` section of moltbot.yaml).
type Config struct {
	// Enabled turns the triggers on. Without it only a flow's handoff
	// node queues a conversation (its author asked for a person), and the
	// queue, the agents' calls and the timeout work the same.
	Enabled bool
	// Rules are RE2 patterns; a user's message that matches one asks for
	// a person (an explicit ask): default DefaultRules.
	Rules []string
	// FailedAnswers: answers in a row without a knowledge-base hit (note
	// kb.hit=false) that hand off; LowConfidence: intents in a row that
	// fell back (note intent.low=true); Negative: negative sentiment in a
	// row (note sentiment=negative). 0: the default (2, 2, 2); -1: off.
	FailedAnswers, LowConfidence, Negative int
	// VIPUsers are end users (Conversation.User: a user-bound key's or a
	// token's user, a channel's user) whose conversations go to a person
	// from their first message: "user" (any tenant) or "tenant/user".
	VIPUsers []string
	// QueueTimeout is how long a conversation waits for a person before
	// a ticket is left and the bot resumes (default 5m).
	QueueTimeout time.Duration
	// AgentTimeout, when set, gives a conversation back to the bot when
	// its agent said nothing (and its user neither) for this long: an
	// agent who went away does not hold it for ever. 0: never.
	AgentTimeout time.Duration
	// Notice is the reply at transfer time; Resume the bot's message when
	// the queue timed out ("%s" is the ticket id); Release, when set, is
	// said when an agent gives the conversation back.
	Notice, Resume, Release string
	// TicketURL and TicketSecret: where a queue's timeout posts its
	// ticket, signed (HMAC-SHA256 over "timestamp.body"); no URL: the
	// ticket stays in the conversation's outbox as failed, to be seen.
	TicketURL, TicketSecret string
}

// DefaultRules are the explicit asks for a person.
var DefaultRules = []string{
	`转人工`, `人工客服`, `人工服务`,
	`(?i)\bhuman,? please\b`,
	`(?i)\b(talk|speak) (to|with) (a |an )?(real )?(person|agent|human)\b`,
}

// Defaults.
const (
	DefaultQueueTimeout = 5 * time.Minute
	DefaultNotice       = "A person will answer here shortly."
	DefaultResume       = "No one could take this conversation in time; we left a ticket (%s) and will get back to you. Meanwhile I am here to help."
)

// compiled is a Config ready to run.
type compiled struct {
	Config
	rules func() []*regexp.Regexp
	vip   map[string]bool
}

// defaultRules are DefaultRules compiled, at the first message a node's
// default rules read: every node has a hand-off stage, and most never
// hand off (docs/DESIGN.md, "What a linked package may do at start").
var defaultRules = sync.OnceValue(func() []*regexp.Regexp {
	rules := make([]*regexp.Regexp, len(DefaultRules))
	for i, r := range DefaultRules {
		rules[i] = regexp.MustCompile(r)
	}
	return rules
})

func compile(c Config) (*compiled, error) {
	out := &compiled{Config: c, vip: map[string]bool{}}
	if out.Rules == nil {
		out.Rules = DefaultRules
		out.rules = defaultRules
	} else {
		var rules []*regexp.Regexp
		for i, r := range out.Rules {
			re, err := regexp.Compile(r)
			if err != nil {
				return nil, fmt.Errorf("handoff.rules[%d]: %q is not an RE2 pattern: %v", i, r, err)
			}
			rules = append(rules, re)
		}
		out.rules = func() []*regexp.Regexp { return rules }
	}
	for _, p := range []*int{&out.FailedAnswers, &out.LowConfidence, &out.Negative} {
		if *p == 0 {
			*p = 2
		}
		if *p < -1 {
			return nil, fmt.Errorf("handoff: a trigger's count is -1 (off), 0 (the default, 2) or more, not %d", *p)
		}
	}
	if out.QueueTimeout == 0 {
		out.QueueTimeout = DefaultQueueTimeout
	}
	if out.AgentTimeout < 0 {
		return nil, fmt.Errorf("handoff.agent_timeout must not be negative")
	}
	if out.QueueTimeout < 0 {
		return nil, fmt.Errorf("handoff.queue_timeout must be positive")
	}
	if out.Notice == "" {
		out.Notice = DefaultNotice
	}
	if out.Resume == "" {
		out.Resume = DefaultResume
	}
	if strings.Count(out.Resume, "%") > 1 || strings.Contains(out.Resume, "%") && !strings.Contains(out.Resume, "%s") {
		return nil, fmt.Errorf("handoff.resume may hold one %%s (the ticket id) and no other %%")
	}
	for _, u := range out.VIPUsers {
		if u == "" {
			return nil, fmt.Errorf("handoff.vip_users: an empty user")
		}
		out.vip[u] = true
	}
	return out, nil
}

// asks reports whether text asks for a person.
func (c *compiled) asks(text string) bool {
	for _, re := range c.rules() {
		if re.MatchString(text) {
			return true
		}
	}
	return false
}

// isVIP reports whether user of tenant is a VIP.
func (c *compiled) isVIP(tenant, user string) bool {
	return user != "" && (c.vip[user] || c.vip[tenant+"/"+user])
}

// Validate checks c as the config loader does (errors name the key).
func Validate(c Config) error {
	_, err := compile(c)
	return err
}
