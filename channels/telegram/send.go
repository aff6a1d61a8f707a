package telegram

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// address is a Message.Reply: "chat/thread/message" (thread 0 outside a
// forum topic; message, the user's message the first part answers).
type address struct {
	chat, thread, msg int64
}

func (d address) String() string {
	return strconv.FormatInt(d.chat, 10) + "/" + strconv.FormatInt(d.thread, 10) + "/" + strconv.FormatInt(d.msg, 10)
}

// parseAddress reads an address; a bare chat id is one too (a reply
// addressed by hand, `moltbot channels test`).
func parseAddress(s string) (address, error) {
	f := strings.Split(s, "/")
	if len(f) != 1 && len(f) != 3 {
		return address{}, moltbot.Errorf(moltbot.EInvalid, "telegram: %q is not an address (chat/thread/message)", s)
	}
	var n [3]int64
	for i, v := range f {
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || (i == 0 && x == 0) || (i > 0 && x < 0) {
			return address{}, moltbot.Errorf(moltbot.EInvalid, "telegram: %q is not an address (chat/thread/message)", s)
		}
		n[i] = x
	}
	return address{chat: n[0], thread: n[1], msg: n[2]}, nil
}

type sendMessage struct {
	ChatID          int64            `json:"chat_id"`
	ThreadID        int64            `json:"message_thread_id,omitempty"`
	Text            string           `json:"text"`
	ReplyParameters *replyParameters `json:"reply_parameters,omitempty"`
}

type replyParameters struct {
	MessageID                int64 `json:"message_id"`
	AllowSendingWithoutReply bool  `json:"allow_sending_without_reply"`
}

type chatAction struct {
	ChatID   int64  `json:"chat_id"`
	ThreadID int64  `json:"message_thread_id,omitempty"`
	Action   string `json:"action"`
}

// maxAttempts429 is how many 429s one part waits out before Send gives
// the message back to the outbox (which tries again later).
const maxAttempts429 = 5

// Send posts m's text to address in parts of at most 4096 UTF-16 units,
// as plain text (no parse_mode: a model's stray * or _ cannot make
// Telegram refuse the message, and nothing it writes is markup), the
// first part a reply to the user's message. A retried Send (the outbox
// after a failure) starts at the part that failed, not the first.
func (a *Adapter) Send(ctx context.Context, addr string, m moltbot.Message) error {
	d, err := parseAddress(addr)
	if err != nil {
		return err
	}
	parts := channels.Split(m.Text(), MaxText, channels.UTF16)
	if len(parts) == 0 {
		return nil
	}
	key := addr + "\x00" + m.ID
	for i := a.progress.Get(key); i < len(parts); i++ {
		p := sendMessage{ChatID: d.chat, ThreadID: d.thread, Text: parts[i]}
		if i == 0 && d.msg != 0 {
			p.ReplyParameters = &replyParameters{MessageID: d.msg, AllowSendingWithoutReply: true}
		}
		if err := a.send(ctx, &d, p); err != nil {
			if i > 0 && m.ID != "" {
				a.progress.Set(key, i)
			}
			return err
		}
	}
	a.progress.Drop(key)
	return nil
}

// send posts one part, paced, waiting out 429s; a group that became a
// supergroup is followed to its new id.
func (a *Adapter) send(ctx context.Context, d *address, p sendMessage) error {
	for attempt := 1; ; attempt++ {
		lim, dest := &a.private, strconv.FormatInt(d.chat, 10)
		if d.chat < 0 {
			lim = &a.group
		}
		if err := lim.Wait(ctx, dest); err != nil {
			return err
		}
		if err := a.global.Wait(ctx, ""); err != nil {
			return err
		}
		err := a.call(ctx, "sendMessage", p, nil)
		var ae *apiError
		if err == nil || !errors.As(err, &ae) {
			return err
		}
		switch {
		case ae.Code == 429 && attempt < maxAttempts429:
			wait := max(ae.RetryAfter, a.base())
			lim.Hold(dest, wait)
			a.log.Info("telegram: rate limited; waiting", "chat", dest, "retry_after", wait)
		case ae.MigrateTo != 0 && attempt < maxAttempts429:
			d.chat, p.ChatID = ae.MigrateTo, ae.MigrateTo
		case ae.Code == 400:
			return moltbot.Errorf(moltbot.EInvalid, "%s", ae.Error())
		case ae.Code == 403: // blocked by the user, removed from the group
			return moltbot.Errorf(moltbot.EForbidden, "%s", ae.Error())
		default:
			return ae
		}
	}
}
