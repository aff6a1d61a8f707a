package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// The parts of the Bot API's Update the adapter reads.
type update struct {
	UpdateID int64    `json:"update_id"`
	Message  *message `json:"message"` // nil: an edit, a channel post, a callback, ...
}

type message struct {
	MessageID       int64       `json:"message_id"`
	ThreadID        int64       `json:"message_thread_id"`
	IsTopic         bool        `json:"is_topic_message"`
	From            *user       `json:"from"`
	Chat            chat        `json:"chat"`
	Date            int64       `json:"date"`
	EditDate        int64       `json:"edit_date"`
	Text            string      `json:"text"`
	Entities        []entity    `json:"entities"`
	Caption         string      `json:"caption"`
	CaptionEntities []entity    `json:"caption_entities"`
	Photo           []photoSize `json:"photo"`
	Document        *document   `json:"document"`
	ReplyTo         *struct {
		From *user `json:"from"`
	} `json:"reply_to_message"`
}

type user struct {
	ID        int64  `json:"id"`
	IsBot     bool   `json:"is_bot"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Username  string `json:"username"`
}

type chat struct {
	ID   int64  `json:"id"`
	Type string `json:"type"` // private, group, supergroup, channel
}

// entity: Offset and Length count UTF-16 code units.
type entity struct {
	Type   string `json:"type"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	User   *user  `json:"user"`
}

// document is a file; an image sent as a file (uncompressed) is taken
// like a photo.
type document struct {
	FileID   string `json:"file_id"`
	MIMEType string `json:"mime_type"`
	FileSize int64  `json:"file_size"`
}

// images are the message's image sizes: its photo's, or an image
// document as one size.
func (m *message) images() []photoSize {
	if len(m.Photo) > 0 {
		return m.Photo
	}
	if d := m.Document; d != nil && strings.HasPrefix(d.MIMEType, "image/") && d.FileID != "" {
		return []photoSize{{FileID: d.FileID, Width: 1, Height: 1, FileSize: d.FileSize}}
	}
	return nil
}

type photoSize struct {
	FileID   string `json:"file_id"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	FileSize int64  `json:"file_size"`
}

// parseUpdate decodes one Update (a webhook's body, one of getUpdates').
func parseUpdate(b []byte) (*update, error) {
	var u update
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, errors.New("telegram: the body is not an Update: " + err.Error())
	}
	if u.UpdateID <= 0 {
		return nil, errors.New("telegram: an Update without update_id")
	}
	return &u, nil
}

// filter is the part of the work that needs no network: whether u is a
// message for the bot, and the Message it makes (without images). In a
// group with require_mention, only a message that mentions the bot (or
// answers one of its messages) is for it; the mention is cut out of the
// text.
func filter(u *update, me *user, requireMention bool) (channels.Message, bool) {
	m := u.Message
	if m == nil || m.From == nil || m.From.ID == 0 || m.Chat.ID == 0 || m.MessageID <= 0 || m.EditDate != 0 {
		return channels.Message{}, false // not a new user message: edits, channel posts, ...
	}
	if me != nil && m.From.ID == me.ID {
		return channels.Message{}, false // our own
	}
	text, ents := m.Text, m.Entities
	if text == "" {
		text, ents = m.Caption, m.CaptionEntities
	}
	if text == "" && len(m.images()) == 0 {
		return channels.Message{}, false // a service message: joins, pins, titles, ...
	}
	group := m.Chat.Type == "group" || m.Chat.Type == "supergroup"
	if m.Chat.Type == "channel" {
		return channels.Message{}, false
	}
	mentioned, text := stripMentions(text, ents, me)
	if group && requireMention && !mentioned {
		replied := me != nil && m.ReplyTo != nil && m.ReplyTo.From != nil && m.ReplyTo.From.ID == me.ID
		if !replied {
			return channels.Message{}, false
		}
	}
	text = strings.TrimSpace(text)
	if text == "" && len(m.images()) == 0 {
		return channels.Message{}, false
	}
	chatID := strconv.FormatInt(m.Chat.ID, 10)
	var thread int64
	if m.IsTopic {
		thread = m.ThreadID
	}
	out := channels.Message{
		// chat:message_id, not update_id: a message id is unique in its
		// chat for good, where update ids start again at random after a
		// week without updates.
		ID:       chatID + ":" + strconv.FormatInt(m.MessageID, 10),
		User:     strconv.FormatInt(m.From.ID, 10),
		UserName: displayName(m.From),
		Chat:     chatID,
		Text:     text,
		Reply:    address{chat: m.Chat.ID, thread: thread, msg: m.MessageID}.String(),
		FromBot:  m.From.IsBot,
	}
	if thread != 0 {
		out.Thread = strconv.FormatInt(thread, 10)
	}
	if m.Date > 0 {
		out.At = time.Unix(m.Date, 0)
	}
	return out, true
}

func displayName(u *user) string {
	if u.Username != "" {
		return u.Username
	}
	return strings.TrimSpace(u.FirstName + " " + u.LastName)
}

// stripMentions reports whether the entities mention the bot (@username,
// a text mention of its id, a /command@username) and returns the text
// without those mentions. Offsets are in UTF-16 units; entities out of
// range are ignored.
func stripMentions(text string, ents []entity, me *user) (bool, string) {
	if me == nil || len(ents) == 0 {
		return false, text
	}
	var u16 []uint16
	var cuts [][2]int
	for _, e := range ents {
		if e.Type != "mention" && e.Type != "text_mention" && e.Type != "bot_command" {
			continue
		}
		if u16 == nil {
			u16 = utf16.Encode([]rune(text))
		}
		if e.Offset < 0 || e.Length <= 0 || e.Offset > len(u16) || e.Length > len(u16)-e.Offset {
			continue
		}
		s := string(utf16.Decode(u16[e.Offset : e.Offset+e.Length]))
		switch e.Type {
		case "mention":
			if strings.EqualFold(s, "@"+me.Username) {
				cuts = append(cuts, [2]int{e.Offset, spaceAfter(u16, e.Offset+e.Length)})
			}
		case "text_mention":
			if e.User != nil && e.User.ID == me.ID {
				cuts = append(cuts, [2]int{e.Offset, spaceAfter(u16, e.Offset+e.Length)})
			}
		case "bot_command": // "/start@bot": keep "/start"
			if i := strings.LastIndexByte(s, '@'); i > 0 && strings.EqualFold(s[i+1:], me.Username) {
				at := e.Offset + len(utf16.Encode([]rune(s[:i])))
				cuts = append(cuts, [2]int{at, e.Offset + e.Length})
			}
		}
	}
	if len(cuts) == 0 {
		return false, text
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i][0] < cuts[j][0] })
	out := make([]uint16, 0, len(u16))
	at := 0
	for _, c := range cuts {
		if c[0] > at {
			out = append(out, u16[at:c[0]]...)
		}
		at = max(at, c[1])
	}
	out = append(out, u16[at:]...)
	return true, string(utf16.Decode(out))
}

// spaceAfter is end, past one space that follows it (a cut mention takes
// its space along; the text's other spacing, its lines and indents, stay).
func spaceAfter(u16 []uint16, end int) int {
	if end < len(u16) && u16[end] == ' ' {
		return end + 1
	}
	return end
}

// toMessage is filter, then the message's photo fetched (the largest size
// under channels.MaxImageBytes; a photo that cannot be fetched leaves its
// caption alone, with a note in the log).
func (a *Adapter) toMessage(ctx context.Context, u *update, me *user) (channels.Message, bool) {
	m, ok := filter(u, me, a.requireMention)
	if !ok || len(u.Message.images()) == 0 {
		return m, ok
	}
	part, err := a.photo(ctx, u.Message.images())
	if err != nil {
		a.log.Warn("telegram: a photo could not be fetched", "id", m.ID, "err", channels.Redact(err.Error()))
		if m.Text == "" {
			return m, false
		}
		return m, true
	}
	m.Images = []moltbot.Part{part}
	return m, true
}

// photo picks the largest size that fits and downloads it.
func (a *Adapter) photo(ctx context.Context, sizes []photoSize) (moltbot.Part, error) {
	best := -1
	for i, p := range sizes {
		if p.FileID == "" || p.FileSize > channels.MaxImageBytes {
			continue
		}
		if best < 0 || p.Width*p.Height > sizes[best].Width*sizes[best].Height {
			best = i
		}
	}
	if best < 0 {
		return moltbot.Part{}, errors.New("telegram: no size of the photo is under the image limit")
	}
	var f struct {
		FilePath string `json:"file_path"`
	}
	if err := a.call(ctx, "getFile", map[string]string{"file_id": sizes[best].FileID}, &f); err != nil {
		return moltbot.Part{}, err
	}
	if f.FilePath == "" || strings.Contains(f.FilePath, "..") {
		return moltbot.Part{}, errors.New("telegram: getFile: no usable file_path")
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+"/file/bot"+a.token+"/"+f.FilePath, nil)
	if err != nil {
		return moltbot.Part{}, errors.New("telegram: " + channels.RedactError(err))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return moltbot.Part{}, errors.New("telegram: " + channels.RedactError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return moltbot.Part{}, errors.New("telegram: file download: HTTP " + strconv.Itoa(resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, channels.MaxImageBytes+1))
	if err != nil {
		return moltbot.Part{}, errors.New("telegram: file download: " + channels.RedactError(err))
	}
	if len(data) > channels.MaxImageBytes {
		return moltbot.Part{}, errors.New("telegram: the photo is over the image limit")
	}
	mime := http.DetectContentType(data)
	if !strings.HasPrefix(mime, "image/") {
		return moltbot.Part{}, errors.New("telegram: the file is not an image (" + mime + ")")
	}
	return moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: bytes.Clone(data)}, nil
}
