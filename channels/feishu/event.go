package feishu

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// The headers of a signed event.
const (
	hdrSignature = "X-Lark-Signature"
	hdrTimestamp = "X-Lark-Request-Timestamp"
	hdrNonce     = "X-Lark-Request-Nonce"
)

// envelope is what a request's (decrypted) body may be: the
// url_verification challenge or a schema 2.0 event.
type envelope struct {
	// url_verification (and schema 1.0 events): at the top.
	Type      string `json:"type"`
	Challenge string `json:"challenge"`
	Token     string `json:"token"`
	// schema 2.0
	Schema string `json:"schema"`
	Header struct {
		EventID    string `json:"event_id"`
		EventType  string `json:"event_type"`
		CreateTime string `json:"create_time"`
		Token      string `json:"token"`
		AppID      string `json:"app_id"`
	} `json:"header"`
	Event json.RawMessage `json:"event"`
}

// messageEvent is im.message.receive_v1's event.
type messageEvent struct {
	Sender struct {
		SenderID struct {
			OpenID string `json:"open_id"`
		} `json:"sender_id"`
		SenderType string `json:"sender_type"` // user, app, ...
	} `json:"sender"`
	Message struct {
		MessageID   string    `json:"message_id"`
		RootID      string    `json:"root_id"`
		ThreadID    string    `json:"thread_id"`
		CreateTime  string    `json:"create_time"` // Unix ms
		ChatID      string    `json:"chat_id"`
		ChatType    string    `json:"chat_type"` // p2p, group
		MessageType string    `json:"message_type"`
		Content     string    `json:"content"` // JSON: {"text": "..."}
		Mentions    []mention `json:"mentions"`
	} `json:"message"`
}

type mention struct {
	Key string `json:"key"` // "@_user_1"
	ID  struct {
		OpenID string `json:"open_id"`
	} `json:"id"`
	Name string `json:"name"`
}

// errUnauthorized is any failure to show a request came from Feishu.
var errUnauthorized = errors.New("feishu: the request is not signed or tokened as Feishu's")

// ServeHTTP takes the event subscription's requests.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "Feishu's events are POSTs")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channels.MaxBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "the body is over the 1 MiB limit")
		return
	}
	env, status, err := a.open(r.Header, body)
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	if env.Type == "url_verification" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"challenge": env.Challenge})
		return
	}
	if err := a.handle(r.Context(), env); err != nil {
		a.log.Warn("feishu: event not taken; Feishu will retry", "event", env.Header.EventID, "err", err)
		var nt *notTaken
		if errors.As(err, &nt) {
			w.Header().Set("Retry-After", strconv.Itoa(int((nt.wait+time.Second-1)/time.Second)))
		}
		httpError(w, http.StatusServiceUnavailable, "the event could not be taken now; retry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

// open authenticates a request and returns its envelope, or the status to
// answer with. With encrypt_key: a signed request is checked (window,
// signature) before its body is touched, then decrypted (a failure: 400);
// an unsigned one may only be the challenge, and every failure on it is
// 401. Without: the body is parsed and its token checked.
func (a *Adapter) open(h http.Header, body []byte) (*envelope, int, error) {
	signed := false
	if a.encryptKey != "" {
		if sig := h.Get(hdrSignature); sig != "" {
			if err := a.verify(h.Get(hdrTimestamp), h.Get(hdrNonce), sig, body); err != nil {
				return nil, http.StatusUnauthorized, err
			}
			signed = true
		}
		plain, err := a.decryptBody(body)
		if err != nil {
			if !signed {
				return nil, http.StatusUnauthorized, errUnauthorized
			}
			return nil, http.StatusBadRequest, err
		}
		body = plain
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		if a.encryptKey != "" && !signed {
			return nil, http.StatusUnauthorized, errUnauthorized
		}
		return nil, http.StatusBadRequest, errors.New("feishu: the body is not an event: " + err.Error())
	}
	tok := env.Header.Token
	if env.Schema == "" {
		tok = env.Token
	}
	if len(a.vtoken) > 0 && subtle.ConstantTimeCompare([]byte(tok), a.vtoken) != 1 {
		if a.encryptKey != "" && !signed {
			return nil, http.StatusUnauthorized, errUnauthorized
		}
		return nil, http.StatusUnauthorized, errors.New("feishu: missing or wrong verification token")
	}
	if a.encryptKey != "" && !signed && env.Type != "url_verification" {
		return nil, http.StatusUnauthorized, errUnauthorized
	}
	return &env, 0, nil
}

// verify checks a signed request's timestamp window and signature.
func (a *Adapter) verify(ts, nonce, sig string, body []byte) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("feishu: " + hdrTimestamp + " is missing or not an integer")
	}
	if d := a.clock().Sub(time.Unix(sec, 0)); d > window || d < -window {
		return errors.New("feishu: " + hdrTimestamp + " is more than 5 minutes off (a replay, or a clock to fix)")
	}
	if !validSignature(ts, nonce, a.encryptKey, body, sig) {
		return errors.New("feishu: wrong " + hdrSignature)
	}
	return nil
}

// Signature is hex(sha256(timestamp + nonce + encrypt_key + body)).
func Signature(ts, nonce, key string, body []byte) string {
	h := sha256.New()
	io.WriteString(h, ts)
	io.WriteString(h, nonce)
	io.WriteString(h, key)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func validSignature(ts, nonce, key string, body []byte, sig string) bool {
	want := Signature(ts, nonce, key, body)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) == 1
}

func aesKey(encryptKey string) [32]byte { return sha256.Sum256([]byte(encryptKey)) }

// decryptBody reads {"encrypt": base64} and decrypts it.
func (a *Adapter) decryptBody(body []byte) ([]byte, error) {
	var e struct {
		Encrypt string `json:"encrypt"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Encrypt == "" {
		return nil, errors.New(`feishu: encrypt_key is set but the body is not {"encrypt": ...}`)
	}
	return Decrypt(a.aesKey, e.Encrypt)
}

// Decrypt undoes Feishu's event encryption: base64, then AES-256-CBC
// with key (sha256 of the encrypt key), the IV the first 16 bytes, PKCS#7
// padding (checked: a bad one is an error, never a panic).
func Decrypt(key [32]byte, b64 string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("feishu: the encrypted event is not base64")
	}
	if len(raw) < 2*aes.BlockSize || len(raw)%aes.BlockSize != 0 {
		return nil, errors.New("feishu: the encrypted event is not an IV and whole AES blocks")
	}
	block, _ := aes.NewCipher(key[:])
	iv, ct := raw[:aes.BlockSize], raw[aes.BlockSize:]
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
	n := int(out[len(out)-1])
	bad := subtle.ConstantTimeLessOrEq(1, n) & subtle.ConstantTimeLessOrEq(n, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		// Every one of the last n bytes is n (checked over a whole block
		// whatever n is).
		inPad := subtle.ConstantTimeLessOrEq(i, n)
		eq := subtle.ConstantTimeByteEq(out[len(out)-i], byte(n))
		bad &= eq | (inPad ^ 1)
	}
	if bad != 1 {
		return nil, errors.New("feishu: the encrypted event does not decrypt (a wrong encrypt_key, or bad padding)")
	}
	return out[:len(out)-n], nil
}

// handle makes a message event a Message for the Host. An error means
// the event was not taken (Feishu retries it).
func (a *Adapter) handle(ctx context.Context, env *envelope) error {
	if env.Schema != "2.0" || env.Header.EventType != "im.message.receive_v1" {
		return nil // another event: acknowledged, ignored
	}
	if id := env.Header.EventID; id != "" && a.events.has(id) {
		return nil
	}
	if env.Header.AppID != "" && env.Header.AppID != a.appID {
		// Signed or tokened, but for another app (two apps' events sent
		// to one URL): not this channel's to answer.
		a.log.Warn("feishu: an event for another app ignored", "app_id", env.Header.AppID)
		return nil
	}
	var ev messageEvent
	if err := json.Unmarshal(env.Event, &ev); err != nil {
		a.log.Info("feishu: an unreadable message event ignored", "event", env.Header.EventID, "err", err)
		return nil
	}
	bot := ""
	if ev.Message.ChatType != "p2p" {
		// Asked once; within the ack's budget (Feishu waits 3 s).
		bctx, cancel := context.WithTimeout(ctx, imageBudget)
		var err error
		bot, err = a.botOpenID(bctx)
		cancel()
		if err != nil {
			return err
		}
	}
	m, images, ok := toMessage(&ev, bot)
	if ok && len(images) > 0 {
		parts, err := a.images(ctx, m.ID, images)
		switch {
		case err == nil:
			m.Images = parts
		case errors.Is(err, errImageTooLarge) || m.Text != "":
			// Retrying will not help, or the text alone still says something.
			a.log.Warn("feishu: an image could not be fetched", "id", m.ID, "err", err)
			ok = m.Text != ""
		default:
			return err // an image-only message: Feishu delivers it again
		}
	}
	if ok {
		switch err := a.host.Accept(ctx, m); {
		case err == nil, errors.Is(err, channels.ErrDuplicate):
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			if wait, ok := retryable(err); ok {
				return &notTaken{err: err, wait: wait}
			}
			a.log.Info("feishu: message refused", "id", m.ID, "err", err)
		}
	}
	if id := env.Header.EventID; id != "" {
		a.events.add(id)
	}
	return nil
}

// toMessage is the part of the work that needs no network: whether the
// event is a message for the bot (bot: its open_id, needed in groups),
// the Message it makes, and the keys of its images (fetched by the
// caller). Text, image and rich-text (post) messages are read.
func toMessage(ev *messageEvent, bot string) (channels.Message, []string, bool) {
	msg := &ev.Message
	if ev.Sender.SenderType != "user" || msg.MessageID == "" || msg.ChatID == "" {
		return channels.Message{}, nil, false
	}
	raw, images, ok := content(msg.MessageType, msg.Content)
	if !ok {
		return channels.Message{}, nil, false
	}
	mentioned, text := stripMentions(raw, msg.Mentions, bot)
	switch msg.ChatType {
	case "p2p":
	case "group":
		if bot == "" || !mentioned {
			return channels.Message{}, nil, false
		}
	default:
		return channels.Message{}, nil, false
	}
	text = strings.TrimSpace(text)
	if (text == "" && len(images) == 0) || len(msg.ChatID)+len(msg.MessageID) > 1000 || strings.Contains(msg.ChatID, "/") {
		return channels.Message{}, nil, false
	}
	m := channels.Message{
		ID:     msg.MessageID,
		User:   ev.Sender.SenderID.OpenID,
		Chat:   msg.ChatID,
		Thread: msg.ThreadID,
		Text:   text,
		Reply:  msg.ChatID + "/" + msg.MessageID,
	}
	if m.Thread == "" {
		m.Thread = msg.RootID
	}
	if ms, err := strconv.ParseInt(msg.CreateTime, 10, 64); err == nil && ms > 0 {
		m.At = time.UnixMilli(ms)
	}
	return m, images, true
}

// maxImages is how many images of one message are fetched (each up to
// channels.MaxImageBytes, held in memory until the turn is queued).
const maxImages = 2

// content reads a message's content JSON: a text's text; an image's key;
// a post's title and paragraphs (text, links, code, mentions as their
// @_user_N placeholders, one line a paragraph) and its images' keys.
func content(typ, c string) (string, []string, bool) {
	switch typ {
	case "text":
		var v struct {
			Text string `json:"text"`
		}
		if json.Unmarshal([]byte(c), &v) != nil {
			return "", nil, false
		}
		return v.Text, nil, true
	case "image":
		var v struct {
			ImageKey string `json:"image_key"`
		}
		if json.Unmarshal([]byte(c), &v) != nil || !validKey(v.ImageKey) {
			return "", nil, false
		}
		return "", []string{v.ImageKey}, true
	case "post":
		type elem struct {
			Tag      string `json:"tag"`
			Text     string `json:"text"`
			Href     string `json:"href"`
			UserID   string `json:"user_id"`
			ImageKey string `json:"image_key"`
		}
		type post struct {
			Title   string   `json:"title"`
			Content [][]elem `json:"content"`
		}
		var p post
		if json.Unmarshal([]byte(c), &p) != nil {
			return "", nil, false
		}
		if p.Content == nil { // {"zh_cn": {...}}: the first language
			var byLang map[string]post
			if json.Unmarshal([]byte(c), &byLang) != nil {
				return "", nil, false
			}
			for _, v := range byLang {
				p = v
				break
			}
		}
		var b strings.Builder
		var images []string
		if p.Title != "" {
			b.WriteString(p.Title)
			b.WriteString("\n")
		}
		for _, para := range p.Content {
			for _, e := range para {
				switch e.Tag {
				case "at":
					b.WriteString(e.UserID)
				case "img":
					if validKey(e.ImageKey) && len(images) < maxImages {
						images = append(images, e.ImageKey)
					}
				case "a":
					b.WriteString(e.Text)
					if e.Href != "" && e.Href != e.Text {
						b.WriteString(" (" + e.Href + ")")
					}
				default: // text, code_block, md, ...
					b.WriteString(e.Text)
				}
			}
			b.WriteString("\n")
		}
		return b.String(), images, true
	}
	return "", nil, false
}

// validKey: a resource key as Feishu makes them (img_v2_...), safe in a path.
func validKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// stripMentions replaces each mention's placeholder: the bot's with
// nothing, anyone else's with "@name". It reports whether the bot was
// mentioned.
func stripMentions(text string, ms []mention, bot string) (bool, string) {
	if len(ms) == 0 {
		return false, text
	}
	ms = append([]mention(nil), ms...)
	// "@_user_10" before "@_user_1".
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Key) > len(ms[j].Key) })
	mentioned := false
	for _, m := range ms {
		if m.Key == "" {
			continue
		}
		if bot != "" && m.ID.OpenID == bot {
			mentioned = true
			text = strings.ReplaceAll(text, m.Key+" ", "")
			text = strings.ReplaceAll(text, m.Key, "")
			continue
		}
		text = strings.ReplaceAll(text, m.Key, "@"+m.Name)
	}
	return mentioned, text
}

// notTaken is an Accept that failed for now (the core busy, moving,
// stopping): Feishu delivers the event again.
type notTaken struct {
	err  error
	wait time.Duration
}

func (e *notTaken) Error() string { return "feishu: not taken for now: " + e.err.Error() }
func (e *notTaken) Unwrap() error { return e.err }

// retryable reports whether an Accept error is for now only (the core's
// *moltbot.Error codes for a full queue, a moving owner, a stopping node,
// an unavailable store), and how long to wait (its RetryAfter, else 1 s).
// Any other error is a refusal for good: logged and acknowledged.
func retryable(err error) (time.Duration, bool) {
	var e *moltbot.Error
	if !errors.As(err, &e) {
		return 0, false
	}
	switch e.Code {
	case moltbot.EBusy, moltbot.EMoved, moltbot.EShutdown, moltbot.EUnavailable, moltbot.ETimeout, moltbot.ERateLimited:
		return max(e.RetryAfter, time.Second), true
	}
	return 0, false
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}
