package discord

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// Gateway opcodes.
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opResume         = 6
	opReconnect      = 7
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatACK   = 11
)

// frame is a Gateway payload: {op, d, s, t}.
type frame struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  *int64          `json:"s"`
	T  string          `json:"t"`
}

// parseFrame reads one Gateway payload.
func parseFrame(data []byte) (frame, error) {
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return f, errors.New("discord: a gateway frame that is not a JSON payload")
	}
	if f.S != nil && *f.S < 0 {
		return f, errors.New("discord: a gateway frame with a negative sequence number")
	}
	return f, nil
}

type wireUser struct {
	ID         string `json:"id"`
	Username   string `json:"username"`
	GlobalName string `json:"global_name"`
	Bot        bool   `json:"bot"`
}

func (u wireUser) name() string {
	if u.GlobalName != "" {
		return u.GlobalName
	}
	return u.Username
}

type wireAttachment struct {
	ID          string `json:"id"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	URL         string `json:"url"`
}

func (at wireAttachment) image() bool {
	if strings.HasPrefix(at.ContentType, "image/") {
		return true
	}
	if at.ContentType != "" {
		return false
	}
	n := strings.ToLower(at.Filename)
	for _, ext := range [...]string{".png", ".jpg", ".jpeg", ".gif", ".webp"} {
		if strings.HasSuffix(n, ext) {
			return true
		}
	}
	return false
}

// wireMessage is a MESSAGE_CREATE's d, the fields the adapter reads.
type wireMessage struct {
	ID                string           `json:"id"`
	ChannelID         string           `json:"channel_id"`
	GuildID           string           `json:"guild_id"`
	WebhookID         string           `json:"webhook_id"`
	Type              int              `json:"type"`
	Author            wireUser         `json:"author"`
	Content           string           `json:"content"`
	Timestamp         string           `json:"timestamp"`
	Mentions          []wireUser       `json:"mentions"`
	Attachments       []wireAttachment `json:"attachments"`
	ReferencedMessage *struct {
		Author wireUser `json:"author"`
	} `json:"referenced_message"`
}

// ready is READY's d.
type ready struct {
	SessionID   string   `json:"session_id"`
	ResumeURL   string   `json:"resume_gateway_url"`
	User        wireUser `json:"user"`
	Application struct {
		ID string `json:"id"`
	} `json:"application"`
}

// Why a MESSAGE_CREATE was not taken (counted in the log at debug).
const (
	dropBadIDs   = "ids that are not Discord ids"
	dropType     = "a system message"
	dropBot      = "a bot's message"
	dropWebhook  = "a webhook's message"
	dropSelf     = "our own message"
	dropMention  = "a guild message that does not mention the bot"
	dropNoConten = "no text and no image"
)

// incoming is a MESSAGE_CREATE kept by filter: its Message without the
// images, and the image attachments to fetch.
type incoming struct {
	msg    channels.Message
	images []wireAttachment
}

// filter decides whether m is a message for the bot (self: the bot's user
// id, "" before READY) and makes its Message. Edits never come here
// (MESSAGE_UPDATE is ignored).
func filter(m *wireMessage, self string, requireMention bool) (incoming, string) {
	if !snowflake(m.ID) || !snowflake(m.ChannelID) || !snowflake(m.Author.ID) || (m.GuildID != "" && !snowflake(m.GuildID)) {
		return incoming{}, dropBadIDs
	}
	if m.Type != 0 && m.Type != 19 { // DEFAULT and REPLY; the rest are system messages
		return incoming{}, dropType
	}
	if m.WebhookID != "" {
		return incoming{}, dropWebhook
	}
	if self != "" && m.Author.ID == self {
		return incoming{}, dropSelf
	}
	if m.Author.Bot {
		return incoming{}, dropBot
	}
	mentioned := false
	text := m.Content
	if self != "" {
		tags := [...]string{"<@" + self + ">", "<@!" + self + ">"}
		for again := true; again; { // until none is left ("<@<@1>1>" hides one)
			again = false
			for _, tag := range tags {
				if strings.Contains(text, tag) {
					mentioned, again = true, true
					text = strings.ReplaceAll(text, tag, "")
				}
			}
		}
		for _, u := range m.Mentions {
			mentioned = mentioned || u.ID == self
		}
		if r := m.ReferencedMessage; r != nil && r.Author.ID == self {
			mentioned = true
		}
	}
	if m.GuildID != "" && requireMention && !mentioned {
		return incoming{}, dropMention
	}
	text = strings.TrimSpace(text)
	var images []wireAttachment
	for _, at := range m.Attachments {
		if len(images) < maxImages && at.image() && at.Size <= channels.MaxImageBytes {
			images = append(images, at)
		}
	}
	if text == "" && len(images) == 0 {
		return incoming{}, dropNoConten
	}
	in := incoming{images: images, msg: channels.Message{
		ID:       m.ID,
		User:     m.Author.ID,
		UserName: m.Author.name(),
		Chat:     m.ChannelID,
		Text:     text,
		Reply:    "c/" + m.ChannelID + "/" + m.ID,
	}}
	if t, err := time.Parse(time.RFC3339Nano, m.Timestamp); err == nil {
		in.msg.At = t
	}
	return in, ""
}
