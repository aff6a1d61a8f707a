package discord

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/channels"
)

// A Reply address is one of:
//
//	c/{channel}/{message}   a message's channel, the reply referencing it
//	c/{channel}             a channel (moltbot channels test)
//	i/{app}/{channel}/{interaction}/{sealed token}
//	                        a slash command's follow-up webhook; the
//	                        interaction token is sealed (AES-GCM, a key
//	                        derived from the bot token), so the outbox,
//	                        the conversation's JSON and any log see
//	                        ciphertext only
type address struct {
	interaction      bool
	channel, message string // message: the one to reference ("" none)
	app, id, token   string // an interaction's
}

var errAddress = moltbot.Errorf(moltbot.EInvalid, "discord: not a discord reply address")

func (a *Adapter) parseAddress(s string) (address, error) {
	f := strings.Split(s, "/")
	switch {
	case len(f) == 2 && f[0] == "c" && snowflake(f[1]):
		return address{channel: f[1]}, nil
	case len(f) == 3 && f[0] == "c" && snowflake(f[1]) && snowflake(f[2]):
		return address{channel: f[1], message: f[2]}, nil
	case len(f) == 5 && f[0] == "i" && snowflake(f[1]) && snowflake(f[2]) && snowflake(f[3]):
		ad := address{interaction: true, app: f[1], channel: f[2], id: f[3]}
		tok, err := a.open(f[3], f[4])
		if err == nil {
			ad.token = tok
		} // a token that does not open (the bot token changed) falls back on the channel
		return ad, nil
	}
	return address{}, errAddress
}

// seal encrypts an interaction token for a Reply address, bound to the
// interaction's id.
func (a *Adapter) seal(id, token string) string {
	nonce := make([]byte, a.aead.NonceSize(), a.aead.NonceSize()+len(token)+a.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(a.aead.Seal(nonce, nonce, []byte(token), []byte(id)))
}

func (a *Adapter) open(id, sealed string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < a.aead.NonceSize() {
		return "", errors.New("discord: a sealed token that does not decode")
	}
	n := a.aead.NonceSize()
	p, err := a.aead.Open(nil, b[:n], b[n:], []byte(id))
	if err != nil {
		return "", errors.New("discord: a sealed token that does not open")
	}
	return string(p), nil
}

// createMessage is POST /channels/{id}/messages's body (and a webhook's).
type createMessage struct {
	Content          string          `json:"content"`
	AllowedMentions  allowedMentions `json:"allowed_mentions"`
	MessageReference *messageRef     `json:"message_reference,omitempty"`
	Nonce            string          `json:"nonce,omitempty"`
	EnforceNonce     bool            `json:"enforce_nonce,omitempty"`
}

// allowedMentions with an empty Parse: the bot's text pings no one
// (@everyone, @here, roles, users).
type allowedMentions struct {
	Parse []string `json:"parse"`
}

type messageRef struct {
	MessageID       string `json:"message_id"`
	ChannelID       string `json:"channel_id"`
	FailIfNotExists bool   `json:"fail_if_not_exists"`
}

// nonce is a part's nonce (at most 25 characters): with enforce_nonce,
// Discord makes one message of a part sent twice within minutes (a
// delivery the outbox tries again after a lost answer).
func nonce(address, id string, part int) string {
	if id == "" {
		return ""
	}
	h := sha256.Sum256([]byte(address + "\x00" + id + "\x00" + string(rune('0'+part%64))))
	return hex.EncodeToString(h[:12])
}

// Send posts m to address, split to 2000 characters, in order; the first
// part replies to the user's message. A Send the outbox tries again goes
// on from the first part not sent (on this node; elsewhere the nonces
// keep Discord from showing a part twice).
func (a *Adapter) Send(ctx context.Context, addr string, m moltbot.Message) error {
	ad, err := a.parseAddress(addr)
	if err != nil {
		return err
	}
	parts := channels.Split(m.Text(), maxContent, channels.Runes)
	if len(parts) == 0 {
		return nil
	}
	key := addr + "\x00" + m.ID
	a.mu.Lock()
	start := a.parts[key]
	a.mu.Unlock()
	for i := start; i < len(parts); i++ {
		if err := a.sendPart(ctx, ad, addr, m.ID, i, parts[i]); err != nil {
			return err
		}
		a.mu.Lock()
		if a.parts == nil || len(a.parts) >= 1024 {
			a.parts = map[string]int{}
		}
		a.parts[key] = i + 1
		a.mu.Unlock()
	}
	a.mu.Lock()
	delete(a.parts, key)
	delete(a.typed, ad.channel) // a message ends Discord's typing indicator
	a.mu.Unlock()
	return nil
}

func (a *Adapter) sendPart(ctx context.Context, ad address, addr, id string, i int, text string) error {
	body := createMessage{Content: text, AllowedMentions: allowedMentions{Parse: []string{}}}
	if ad.interaction && ad.token != "" && a.now().Before(snowflakeTime(ad.id).Add(interactionTokenLife-interactionTokenGrace)) {
		_, _, err := a.rest.call(ctx, "POST", "/webhooks/"+ad.app+"/"+ad.token, "/webhooks/{app}/{token}", ad.id, body, false)
		if err == nil {
			return nil
		}
		if c := moltbot.ErrorCode(err); c != moltbot.EUnauthorized && c != moltbot.ENotFound {
			return err
		}
		a.host.Log().Info("discord: interaction token refused: the reply goes to the channel", "interaction", ad.id, "err", channels.Redact(err.Error()))
	}
	body.Nonce, body.EnforceNonce = nonce(addr, id, i), id != ""
	if i == 0 && ad.message != "" {
		body.MessageReference = &messageRef{MessageID: ad.message, ChannelID: ad.channel}
	}
	_, _, err := a.rest.call(ctx, "POST", "/channels/"+ad.channel+"/messages", "/channels/{channel}/messages", ad.channel, body, true)
	return err
}

// Typing shows "the bot is typing" in the channel for about 10 s; an
// interaction's deferred response already shows it thinking.
func (a *Adapter) Typing(ctx context.Context, addr string) error {
	ad, err := a.parseAddress(addr)
	if err != nil {
		return err
	}
	if ad.interaction {
		return nil
	}
	// Discord shows typing for about 10 s: one call per channel within
	// typingEvery is enough, and spares the global 50 calls a second
	// for replies.
	now := a.now()
	a.mu.Lock()
	if at, ok := a.typed[ad.channel]; ok && now.Sub(at) < typingEvery {
		a.mu.Unlock()
		return nil
	}
	if a.typed == nil || len(a.typed) >= 1024 {
		a.typed = map[string]time.Time{}
	}
	a.typed[ad.channel] = now
	a.mu.Unlock()
	_, _, err = a.rest.call(ctx, "POST", "/channels/"+ad.channel+"/typing", "/channels/{channel}/typing", ad.channel, nil, true)
	if err != nil {
		a.mu.Lock()
		delete(a.typed, ad.channel)
		a.mu.Unlock()
	}
	return err
}

const typingEvery = 8 * time.Second
