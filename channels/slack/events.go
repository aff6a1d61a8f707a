package slack

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// eventCallback is the outer object Slack sends for an event, over the
// Events API (the request body) and in Socket Mode (an envelope's
// payload); and the url_verification request.
type eventCallback struct {
	Type           string          `json:"type"`
	Challenge      string          `json:"challenge"`
	EventID        string          `json:"event_id"`
	Event          event           `json:"event"`
	Authorizations []authorization `json:"authorizations"`
}

type authorization struct {
	UserID string `json:"user_id"`
	IsBot  bool   `json:"is_bot"`
}

// event is the inner event: the fields of app_mention and message that
// the adapter reads.
type event struct {
	Type        string          `json:"type"`
	Subtype     string          `json:"subtype"`
	User        string          `json:"user"`
	BotID       string          `json:"bot_id"`
	Text        string          `json:"text"`
	TS          string          `json:"ts"`
	ThreadTS    string          `json:"thread_ts"`
	Channel     string          `json:"channel"`
	ChannelType string          `json:"channel_type"`
	Edited      json.RawMessage `json:"edited"`
	Hidden      bool            `json:"hidden"`
	Files       []file          `json:"files"`
}

type file struct {
	ID         string `json:"id"`
	Mimetype   string `json:"mimetype"`
	URLPrivate string `json:"url_private"`
	Size       int64  `json:"size"`
}

// A drop says why an event makes no message (for a debug log line).
type drop string

const (
	dropNone     drop = ""
	dropKind     drop = "not an app_mention or a direct message"
	dropSubtype  drop = "a subtype (an edit, a join, a bot message)"
	dropEdited   drop = "an edit"
	dropSelf     drop = "our own message"
	dropNoUser   drop = "no user"
	dropBadIDs   drop = "a malformed channel or ts"
	dropNoText   drop = "no text and no image"
	dropCallback drop = "not an event_callback"
)

// message makes cb's event a channels.Message (without its images: the
// caller fetches them), or says why it makes none. self is our bot user's
// id ("" when not known yet: then the authorizations' bot user stands in).
func message(cb *eventCallback, self string) (channels.Message, drop) {
	if cb.Type != "event_callback" {
		return channels.Message{}, dropCallback
	}
	ev := &cb.Event
	im := ev.Type == "message" && ev.ChannelType == "im"
	if ev.Type != "app_mention" && !im {
		return channels.Message{}, dropKind
	}
	// file_share is a user's message with files; every other subtype is
	// an edit, a deletion, a join, a bot's message, ...
	if (ev.Subtype != "" && ev.Subtype != "file_share") || ev.Hidden {
		return channels.Message{}, dropSubtype
	}
	if len(ev.Edited) > 0 && string(ev.Edited) != "null" {
		return channels.Message{}, dropEdited
	}
	if self == "" {
		for _, au := range cb.Authorizations {
			if au.IsBot {
				self = au.UserID
				break
			}
		}
	}
	if ev.User == "" {
		if ev.BotID == "" {
			return channels.Message{}, dropNoUser
		}
	}
	if self != "" && ev.User == self {
		return channels.Message{}, dropSelf
	}
	if !slackID(ev.Channel) || !timestamp(ev.TS) || (ev.ThreadTS != "" && !timestamp(ev.ThreadTS)) {
		return channels.Message{}, dropBadIDs
	}
	m := channels.Message{
		ID:      ev.Channel + ":" + ev.TS,
		User:    ev.User,
		Chat:    ev.Channel,
		Text:    cleanText(ev.Text, self),
		FromBot: ev.BotID != "",
		At:      tsTime(ev.TS),
	}
	if m.User == "" {
		m.User = ev.BotID
	}
	// In a channel the reply goes in the mention's thread (starting one
	// under a top-level mention); in a DM inline, unless the user wrote
	// in a thread. A DM is known by its type or its id (D...): a mention
	// in a DM also arrives as an app_mention, without channel_type, and
	// both must give the same Reply.
	m.Thread = ev.ThreadTS
	if m.Thread == "" && !im && ev.Channel[0] != 'D' {
		m.Thread = ev.TS
	}
	m.Reply = ev.Channel
	if m.Thread != "" {
		m.Reply += "/" + m.Thread
	}
	if m.Text == "" && !hasImage(ev.Files) {
		return channels.Message{}, dropNoText
	}
	return m, dropNone
}

// cleanText removes the mentions of self ("<@U1>", "<@U1|name>"; not
// "<@U12>") and reverses Slack's escaping of &, < and >, in one pass.
func cleanText(s, self string) string {
	mention := "<@" + self
	if self == "" || !strings.Contains(s, mention) {
		return unescape(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.Index(s, mention)
		if i < 0 {
			break
		}
		rest := s[i+len(mention):]
		end := -1
		if rest != "" && (rest[0] == '>' || rest[0] == '|') {
			end = strings.IndexByte(rest, '>')
		}
		if end < 0 {
			// Someone else's id that starts like ours: keep it.
			b.WriteString(s[:i+len(mention)])
			s = rest
			continue
		}
		b.WriteString(s[:i])
		s = rest[end+1:]
	}
	b.WriteString(s)
	return unescape(b.String())
}

// unescape reverses Slack's escaping (&lt; &gt; &amp;) and trims.
func unescape(s string) string {
	if strings.IndexByte(s, '&') >= 0 {
		s = strings.ReplaceAll(s, "&lt;", "<")
		s = strings.ReplaceAll(s, "&gt;", ">")
		s = strings.ReplaceAll(s, "&amp;", "&")
	}
	return strings.TrimSpace(s)
}

// slackID: a channel or user id (C0123ABC, D..., G...), at most 32 bytes.
func slackID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// timestamp: a Slack ts, "1700000000.000100" (digits and one dot).
func timestamp(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	dot := false
	for i := range len(s) {
		switch c := s[i]; {
		case c == '.' && !dot && i > 0:
			dot = true
		case c < '0' || c > '9':
			return false
		}
	}
	return true
}

func tsTime(ts string) time.Time {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}
	}
	var us int64
	if len(frac) == 6 {
		us, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(s, us*1000).UTC()
}

func hasImage(fs []file) bool {
	for i := range fs {
		if isImage(&fs[i]) {
			return true
		}
	}
	return false
}

func isImage(f *file) bool {
	switch f.Mimetype {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return f.URLPrivate != ""
	}
	return false
}
