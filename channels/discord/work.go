package discord

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// work hands the queued MESSAGE_CREATEs to the Host, in order, until ctx
// ends.
func (a *Adapter) work(ctx context.Context, q <-chan dispatch) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-q:
			a.handle(ctx, d.d)
			a.mu.Lock()
			if d.gen == a.gen && d.seq > a.done {
				a.done = d.seq
			}
			a.mu.Unlock()
			a.save(false)
		}
	}
}

// handle filters one MESSAGE_CREATE and accepts it.
func (a *Adapter) handle(ctx context.Context, d json.RawMessage) {
	var m wireMessage
	if err := json.Unmarshal(d, &m); err != nil {
		a.host.Log().Debug("discord: a MESSAGE_CREATE that does not parse", "err", err)
		return
	}
	a.mu.Lock()
	self := a.self
	a.mu.Unlock()
	in, why := filter(&m, self, a.opt.requireMention)
	if why != "" {
		a.host.Log().Debug("discord: message dropped", "id", m.ID, "why", why)
		return
	}
	if len(in.images) > 0 {
		ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
		for _, at := range in.images {
			p, err := a.fetchImage(ictx, at)
			if err != nil {
				a.host.Log().Warn("discord: an image attachment left out", "message", m.ID, "err", channels.RedactError(err))
				continue
			}
			in.msg.Images = append(in.msg.Images, p)
		}
		cancel()
		if in.msg.Text == "" && len(in.msg.Images) == 0 {
			return
		}
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch err := a.host.Accept(actx, in.msg); {
	case err == nil, errors.Is(err, channels.ErrDuplicate):
	default:
		a.host.Log().Warn("discord: message not taken", "id", m.ID, "err", err)
	}
}

// fetchImage downloads an image attachment from Discord's CDN (or the
// API's host, for a fake), at most MaxImageBytes, and keeps it only when
// its bytes are a PNG, JPEG, GIF or WebP image.
func (a *Adapter) fetchImage(ctx context.Context, at wireAttachment) (moltbot.Part, error) {
	u, err := url.Parse(at.URL)
	if err != nil {
		return moltbot.Part{}, errors.New("discord: an attachment URL that does not parse")
	}
	switch {
	case u.Scheme == "https" && (u.Host == "cdn.discordapp.com" || u.Host == "media.discordapp.net"):
	case u.Host == a.opt.apiHost && (u.Scheme == "https" || u.Scheme == "http"):
	default:
		return moltbot.Part{}, errors.New("discord: an attachment outside Discord's CDN: not fetched")
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return moltbot.Part{}, err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := a.httpClient.Do(req)
	if err != nil {
		return moltbot.Part{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return moltbot.Part{}, errors.New("discord: attachment: " + resp.Status)
	}
	if resp.ContentLength > channels.MaxImageBytes {
		return moltbot.Part{}, errors.New("discord: attachment over the image size limit")
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, channels.MaxImageBytes+1))
	if err != nil {
		return moltbot.Part{}, err
	}
	if len(data) > channels.MaxImageBytes {
		return moltbot.Part{}, errors.New("discord: attachment over the image size limit")
	}
	mime := http.DetectContentType(data)
	switch mime {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
	default:
		return moltbot.Part{}, errors.New("discord: attachment is not a PNG, JPEG, GIF or WebP image (" + strings.SplitN(mime, ";", 2)[0] + ")")
	}
	return moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: data}, nil
}
