package slack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// maxImages caps the images taken from one message.
const maxImages = 4

// imageBudget bounds the time spent fetching a message's images: they
// are fetched before the message is accepted, so before the ack.
const imageBudget = 2 * time.Second

// images fetches the image files of a message (url_private, with the bot
// token; scope files:read) as image parts. An image that is too large,
// too slow or fails is left out, with a log line: the text still goes.
func (a *Adapter) images(ctx context.Context, files []file) []moltbot.Part {
	if !hasImage(files) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, imageBudget)
	defer cancel()
	var parts []moltbot.Part
	for i := range files {
		f := &files[i]
		if !isImage(f) {
			continue
		}
		if len(parts) == maxImages {
			break
		}
		if f.Size > channels.MaxImageBytes {
			a.host.Log().Info("slack: an image left out: too large", "file", f.ID, "bytes", f.Size)
			continue
		}
		data, err := a.fetchFile(ctx, f.URLPrivate)
		if err != nil {
			a.host.Log().Info("slack: an image left out", "file", f.ID, "err", err)
			continue
		}
		parts = append(parts, moltbot.Part{Type: moltbot.PartImage, MIME: f.Mimetype, Data: data})
	}
	return parts
}

// fetchFile reads a file Slack hosts, at most MaxImageBytes. The bot
// token goes only to Slack's own hosts (files.slack.com) or to the
// api_url's host (a test's fake, a proxy): a url_private elsewhere is
// refused rather than handed the token.
func (a *Adapter) fetchFile(ctx context.Context, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("slack: url_private is not a URL")
	}
	if !a.trustedHost(u) {
		return nil, fmt.Errorf("slack: url_private is not on a Slack host (%s)", u.Hostname())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("slack: url_private: %s", channels.RedactError(err))
	}
	req.Header.Set("Authorization", "Bearer "+a.bot)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("slack: fetching a file: %s", channels.RedactError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("slack: fetching a file: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, channels.MaxImageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("slack: fetching a file: %s", channels.RedactError(err))
	}
	if len(data) > channels.MaxImageBytes {
		return nil, fmt.Errorf("slack: the file is over %d bytes", channels.MaxImageBytes)
	}
	return data, nil
}

func (a *Adapter) trustedHost(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	if u.Scheme == "https" && (h == "slack.com" || strings.HasSuffix(h, ".slack.com") || strings.HasSuffix(h, ".slack-edge.com")) {
		return true
	}
	api, err := url.Parse(a.api)
	return err == nil && u.Scheme == api.Scheme && u.Host == api.Host
}
