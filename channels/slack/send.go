package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// maxRunes is where a reply is split: Slack's advice for chat.postMessage
// (it truncates at 40,000 characters).
const maxRunes = 4000

// maxProgress bounds the record of partly sent replies.
const maxProgress = 256

type postMessage struct {
	Channel  string `json:"channel"`
	Text     string `json:"text"`
	ThreadTS string `json:"thread_ts,omitempty"`
}

// send posts m's text to address ("channel" or "channel/thread_ts") in
// parts of at most 4000 runes, in order, paced per channel. A part that
// fails returns the error (the outbox tries again later); the parts
// already posted are remembered, so the retry posts only the rest.
func (a *Adapter) send(ctx context.Context, address string, m moltbot.Message) error {
	channel, thread, err := parseAddress(address)
	if err != nil {
		return err
	}
	text := m.Content
	if text == "" {
		text = moltbot.TextOf(m.Parts)
	}
	parts := channels.Split(text, maxRunes, channels.Runes)
	if len(parts) == 0 {
		return nil
	}
	key := progressKey(address, text)
	a.mu.Lock()
	done := a.sent[key]
	a.mu.Unlock()
	for i := done; i < len(parts); i++ {
		if err := a.post(ctx, channel, thread, escape(parts[i])); err != nil {
			a.progress(key, i)
			return err
		}
	}
	a.progress(key, 0)
	return nil
}

// progress records that n parts of a reply went (0: forget it).
func (a *Adapter) progress(key string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n == 0 {
		delete(a.sent, key)
		return
	}
	if a.sent == nil || len(a.sent) >= maxProgress {
		a.sent = map[string]int{}
	}
	a.sent[key] = n
}

func progressKey(address, text string) string {
	h := fnv.New64a()
	h.Write([]byte(text))
	return fmt.Sprintf("%s\x00%d\x00%x", address, len(text), h.Sum64())
}

// post sends one chat.postMessage, waiting its turn on the channel and
// out any 429 (the Retry-After holds the channel back), until ctx ends.
func (a *Adapter) post(ctx context.Context, channel, thread, text string) error {
	body, err := json.Marshal(postMessage{Channel: channel, Text: text, ThreadTS: thread})
	if err != nil {
		return err
	}
	for {
		if err := a.lim.Wait(ctx, channel); err != nil {
			return err
		}
		var r apiResult
		err := a.call(ctx, "chat.postMessage", a.bot, body, &r)
		var rl *rateLimited
		if !errors.As(err, &rl) {
			return err
		}
		a.host.Log().Info("slack: rate limited", "channel", channel, "retry_after", rl.After)
		a.lim.Hold(channel, rl.After)
	}
}

// parseAddress reads a Message.Reply: "C0123" or "C0123/1700000000.000100".
func parseAddress(address string) (channel, thread string, err error) {
	channel, thread, _ = strings.Cut(address, "/")
	if !slackID(channel) || (thread != "" && !timestamp(thread)) {
		return "", "", fmt.Errorf("slack: address %q is not channel or channel/thread_ts", address)
	}
	return channel, thread, nil
}

// escape makes text literal in Slack's markup: &, < and > escaped, so
// nothing the model writes becomes <!channel>, <!here>, <!everyone>, a
// user's or a group's mention, or a disguised link.
func escape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := range len(s) {
		switch c := s[i]; c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
