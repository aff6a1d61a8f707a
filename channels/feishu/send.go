package feishu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// Feishu's answer codes the adapter acts on.
const (
	codeTokenInvalid  = 99991663 // the tenant_access_token is invalid or expired
	codeTokenMissing  = 99991661 // no or a malformed Authorization
	codeRateLimited   = 99991400 // request trigger frequency limit
	maxAttemptsLimits = 5
)

// apiError is an answer with a non-zero code.
type apiError struct {
	Path   string
	Status int
	Code   int
	Msg    string
	Wait   time.Duration // a rate limit's reset
}

func (e *apiError) Error() string {
	return fmt.Sprintf("feishu: %s: HTTP %d code %d %s", e.Path, e.Status, e.Code, e.Msg)
}

func (e *apiError) rateLimited() bool { return e.Status == 429 || e.Code == codeRateLimited }

// tenantToken is the cached tenant_access_token, fetched when missing or
// within 3 minutes of its expiry (force: fetched again).
func (a *Adapter) tenantToken(ctx context.Context, force bool) (string, error) {
	if err := a.tokMu.lock(ctx); err != nil {
		return "", err
	}
	defer a.tokMu.unlock()
	if !force && a.tok != "" && a.clock().Before(a.tokUntil) {
		return a.tok, nil
	}
	body, _ := json.Marshal(map[string]string{"app_id": a.appID, "app_secret": a.appSecret})
	var r struct {
		Code   int    `json:"code"`
		Msg    string `json:"msg"`
		Token  string `json:"tenant_access_token"`
		Expire int    `json:"expire"` // seconds
	}
	status, err := a.do(ctx, http.MethodPost, "/open-apis/auth/v3/tenant_access_token/internal", "", body, &r)
	if err != nil {
		return "", err
	}
	if r.Code != 0 || r.Token == "" {
		return "", &apiError{Path: "tenant_access_token", Status: status, Code: r.Code, Msg: r.Msg}
	}
	ttl := time.Duration(r.Expire) * time.Second
	if ttl > 6*time.Minute {
		ttl -= 3 * time.Minute
	} else {
		ttl /= 2
	}
	a.tok, a.tokUntil = r.Token, a.clock().Add(ttl)
	return a.tok, nil
}

// call is an authorized API call: out gets the answer's data. An invalid
// token is fetched again and the call made once more.
func (a *Adapter) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	for attempt := 0; ; attempt++ {
		tok, err := a.tenantToken(ctx, attempt > 0)
		if err != nil {
			return err
		}
		var r struct {
			Code int             `json:"code"`
			Msg  string          `json:"msg"`
			Data json.RawMessage `json:"data"`
			Bot  json.RawMessage `json:"bot"` // bot/v3/info answers "bot", not "data"
		}
		status, hdr, err := a.doHeader(ctx, method, path, tok, body, &r)
		if err != nil {
			return err
		}
		if r.Code == 0 && status < 300 {
			if out != nil {
				data := r.Data
				if len(r.Bot) > 0 {
					data = r.Bot
				}
				if err := json.Unmarshal(data, out); err != nil {
					return fmt.Errorf("feishu: %s: unreadable data: %v", path, err)
				}
			}
			return nil
		}
		e := &apiError{Path: path, Status: status, Code: r.Code, Msg: r.Msg}
		if (r.Code == codeTokenInvalid || r.Code == codeTokenMissing) && attempt == 0 {
			continue
		}
		if e.rateLimited() {
			if s, err := strconv.Atoi(hdr.Get("X-Ogw-Ratelimit-Reset")); err == nil && s > 0 {
				e.Wait = time.Duration(min(s, 3600)) * time.Second
			}
		}
		return e
	}
}

func (a *Adapter) do(ctx context.Context, method, path, tok string, body []byte, out any) (int, error) {
	status, _, err := a.doHeader(ctx, method, path, tok, body, out)
	return status, err
}

// doHeader makes one request and decodes its JSON answer, whatever the
// status (Feishu answers errors with a code in the body).
func (a *Adapter) doHeader(ctx context.Context, method, path, tok string, body []byte, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.api+path, rd)
	if err != nil {
		return 0, nil, errors.New("feishu: " + channels.RedactError(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, errors.New("feishu: " + channels.RedactError(err))
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(out); err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("feishu: %s: HTTP %d with an unreadable answer", path, resp.StatusCode)
	}
	return resp.StatusCode, resp.Header, nil
}

// errImageTooLarge: an image over channels.MaxImageBytes (or not an image).
var errImageTooLarge = errors.New("feishu: the image is over the image limit or not an image")

// imageBudget bounds the fetching of a message's images: the event must
// be acknowledged within Feishu's 3 s.
const imageBudget = 2 * time.Second

// images fetches a message's images (GET /open-apis/im/v1/messages/{id}/
// resources/{key}?type=image), within imageBudget.
func (a *Adapter) images(ctx context.Context, messageID string, keys []string) ([]moltbot.Part, error) {
	ctx, cancel := context.WithTimeout(ctx, imageBudget)
	defer cancel()
	var parts []moltbot.Part
	for _, k := range keys {
		data, err := a.download(ctx, "/open-apis/im/v1/messages/"+url.PathEscape(messageID)+"/resources/"+url.PathEscape(k)+"?type=image")
		if err != nil {
			return nil, err
		}
		mime := http.DetectContentType(data)
		if !strings.HasPrefix(mime, "image/") {
			return nil, errImageTooLarge
		}
		parts = append(parts, moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: data})
	}
	return parts, nil
}

// download GETs a binary resource with the tenant token (fetched again
// once when Feishu calls it invalid); at most channels.MaxImageBytes.
func (a *Adapter) download(ctx context.Context, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := a.tenantToken(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+path, nil)
		if err != nil {
			return nil, errors.New("feishu: " + channels.RedactError(err))
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := a.client.Do(req)
		if err != nil {
			return nil, errors.New("feishu: " + channels.RedactError(err))
		}
		ct := resp.Header.Get("Content-Type")
		if resp.StatusCode == http.StatusOK && !strings.HasPrefix(ct, "application/json") {
			data, err := io.ReadAll(io.LimitReader(resp.Body, channels.MaxImageBytes+1))
			resp.Body.Close()
			switch {
			case err != nil:
				return nil, fmt.Errorf("feishu: reading an image: %v", err)
			case len(data) > channels.MaxImageBytes:
				return nil, errImageTooLarge
			}
			return data, nil
		}
		var r struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&r)
		resp.Body.Close()
		if (r.Code == codeTokenInvalid || r.Code == codeTokenMissing) && attempt == 0 {
			continue
		}
		return nil, &apiError{Path: "message resource", Status: resp.StatusCode, Code: r.Code, Msg: r.Msg}
	}
}

// botOpenID is the bot's open_id (bot/v3/info), asked once.
func (a *Adapter) botOpenID(ctx context.Context) (string, error) {
	if err := a.botMu.lock(ctx); err != nil {
		return "", err
	}
	defer a.botMu.unlock()
	if a.botID != "" {
		return a.botID, nil
	}
	var b struct {
		OpenID string `json:"open_id"`
	}
	if err := a.call(ctx, http.MethodGet, "/open-apis/bot/v3/info", nil, &b); err != nil {
		return "", err
	}
	if b.OpenID == "" {
		return "", errors.New("feishu: bot/v3/info: no open_id")
	}
	a.botID = b.OpenID
	return a.botID, nil
}

// Send posts m's text to address ("chat_id/message_id": a reply to that
// message; "chat_id" or "chat_id/": a new message in the chat) in parts of
// at most MaxText runes, as text messages. A retried Send starts at the
// part that failed.
func (a *Adapter) Send(ctx context.Context, address string, m moltbot.Message) error {
	chat, msg, _ := strings.Cut(address, "/")
	if chat == "" || strings.Contains(msg, "/") || len(address) > 1024 {
		return moltbot.Errorf(moltbot.EInvalid, "feishu: %q is not an address (chat_id/message_id)", address)
	}
	parts := channels.Split(neutralize(m.Text()), MaxText, channels.Runes)
	key := address + "\x00" + m.ID
	for i := a.progress.Get(key); i < len(parts); i++ {
		content, _ := json.Marshal(map[string]string{"text": parts[i]})
		if err := a.post(ctx, chat, msg, string(content)); err != nil {
			if i > 0 && m.ID != "" {
				a.progress.Set(key, i)
			}
			return err
		}
	}
	a.progress.Drop(key)
	return nil
}

// post sends one text message, paced, rate limits waited out.
func (a *Adapter) post(ctx context.Context, chat, replyTo, content string) error {
	path := "/open-apis/im/v1/messages?receive_id_type=chat_id"
	body := map[string]string{"receive_id": chat, "msg_type": "text", "content": content}
	if replyTo != "" {
		path = "/open-apis/im/v1/messages/" + url.PathEscape(replyTo) + "/reply"
		body = map[string]string{"msg_type": "text", "content": content}
	}
	for attempt := 1; ; attempt++ {
		if err := a.perChat.Wait(ctx, chat); err != nil {
			return err
		}
		if err := a.global.Wait(ctx, ""); err != nil {
			return err
		}
		err := a.call(ctx, http.MethodPost, path, body, nil)
		var ae *apiError
		if err == nil || !errors.As(err, &ae) || !ae.rateLimited() || attempt >= maxAttemptsLimits {
			return err
		}
		wait := ae.Wait
		if wait <= 0 {
			wait = channels.Backoff(attempt-1, a.base(), 30*time.Second)
		}
		a.perChat.Hold(chat, wait)
		a.log.Info("feishu: rate limited; waiting", "chat", chat, "wait", wait)
	}
}

func (a *Adapter) base() time.Duration {
	if a.backoffBase > 0 {
		return a.backoffBase
	}
	return time.Second
}

// neutralize keeps a model's text from mentioning people: Feishu reads
// <at user_id="...">name</at> in a text message as a mention (user_id
// "all": everyone in the group); a zero-width space after the "<" shows
// the same text and mentions no one.
func neutralize(s string) string {
	if !strings.Contains(strings.ToLower(s), "<at") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == '<' && i+3 <= len(s) && strings.EqualFold(s[i+1:i+3], "at") {
			b.WriteString("\u200b")
		}
	}
	return b.String()
}
