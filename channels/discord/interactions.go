package discord

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/channels"
)

// Interaction types and callback types.
const (
	interactionPing    = 1
	interactionCommand = 2
	callbackPong       = 1
	callbackMessage    = 4
	callbackDeferred   = 5
	flagEphemeral      = 1 << 6
	maxSkew            = 5 * time.Minute
)

// interaction is an Interactions endpoint request, the fields read.
type interaction struct {
	ID            string `json:"id"`
	ApplicationID string `json:"application_id"`
	Type          int    `json:"type"`
	Token         string `json:"token"`
	ChannelID     string `json:"channel_id"`
	GuildID       string `json:"guild_id"`
	Member        *struct {
		User wireUser `json:"user"`
	} `json:"member"`
	User *wireUser `json:"user"`
	Data struct {
		Name    string `json:"name"`
		Options []struct {
			Name  string          `json:"name"`
			Type  int             `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"options"`
	} `json:"data"`
}

// verify checks Discord's signature: Ed25519 over the timestamp and the
// raw body, the timestamp within maxSkew of now.
func verify(pub ed25519.PublicKey, sigHex, ts string, body []byte, now time.Time) bool {
	if len(sigHex) != 2*ed25519.SignatureSize || ts == "" || len(ts) > 20 {
		return false
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(secs, 0)); d > maxSkew || d < -maxSkew {
		return false
	}
	msg := make([]byte, 0, len(ts)+len(body))
	msg = append(append(msg, ts...), body...)
	return ed25519.Verify(pub, msg, sig)
}

// parseInteraction reads a verified body.
func parseInteraction(body []byte) (*interaction, error) {
	var it interaction
	if err := json.Unmarshal(body, &it); err != nil {
		return nil, errors.New("the body is not an interaction (JSON)")
	}
	if it.Type == interactionPing {
		return &it, nil
	}
	if !snowflake(it.ID) || !snowflake(it.ApplicationID) || it.Token == "" || len(it.Token) > 512 {
		return nil, errors.New("an interaction without its id, application_id or token")
	}
	for i := 0; i < len(it.Token); i++ {
		if c := it.Token[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '%' {
			return nil, errors.New("an interaction token with a character a URL path cannot carry")
		}
	}
	return &it, nil
}

// text is a command's text: its option named text (or prompt,
// question), else its first string option.
func (it *interaction) text() string {
	first := ""
	for _, o := range it.Data.Options {
		if o.Type != 3 { // STRING
			continue
		}
		var s string
		if json.Unmarshal(o.Value, &s) != nil {
			continue
		}
		switch o.Name {
		case "text", "prompt", "question", "message":
			return s
		}
		if first == "" {
			first = s
		}
	}
	return first
}

func (it *interaction) user() wireUser {
	if it.Member != nil && it.Member.User.ID != "" {
		return it.Member.User
	}
	if it.User != nil {
		return *it.User
	}
	return wireUser{}
}

// ServeHTTP is the Interactions endpoint (the channel's public_key set):
// the signature checked over the raw body before anything is parsed (401
// otherwise, PINGs included); a PING answered; an application command
// made a turn and answered with a deferred response (type 5), its reply
// sent later as a follow-up message through the interaction's webhook.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.opt.publicKey == nil {
		jsonError(w, http.StatusNotFound, "discord: this channel has no public_key: its interactions endpoint is off")
		return
	}
	if r.URL.Path != "/" && r.URL.Path != "" && r.URL.Path != "/interactions" {
		jsonError(w, http.StatusNotFound, "discord: the interactions endpoint is /channels/{name}/")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		jsonError(w, http.StatusMethodNotAllowed, "discord: the interactions endpoint takes POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInteraction))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			jsonError(w, http.StatusRequestEntityTooLarge, "discord: an interaction body over 256 KiB")
		} else {
			jsonError(w, http.StatusBadRequest, "discord: the request body could not be read")
		}
		return
	}
	if !verify(a.opt.publicKey, r.Header.Get("X-Signature-Ed25519"), r.Header.Get("X-Signature-Timestamp"), body, a.now()) {
		jsonError(w, http.StatusUnauthorized, "discord: bad request signature (X-Signature-Ed25519 over X-Signature-Timestamp and the body, timestamp within 5 minutes)")
		return
	}
	it, err := parseInteraction(body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "discord: "+err.Error())
		return
	}
	switch it.Type {
	case interactionPing:
		writeJSON(w, map[string]int{"type": callbackPong})
		return
	case interactionCommand:
	default:
		jsonError(w, http.StatusBadRequest, "discord: interaction type "+strconv.Itoa(it.Type)+" is not handled (only application commands)")
		return
	}
	resp, err := a.command(r.Context(), it)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, resp)
}

// command takes an application command: the response to give Discord
// (deferred when the turn is taken, an ephemeral message when not), or
// an error for a malformed one.
func (a *Adapter) command(ctx context.Context, it *interaction) (any, error) {
	if a.opt.appID != "" && it.ApplicationID != a.opt.appID {
		return nil, errors.New("discord: an interaction of application " + it.ApplicationID + ", not of option application_id")
	}
	u := it.user()
	channel := it.ChannelID
	if !snowflake(u.ID) || !snowflake(channel) {
		return nil, errors.New("discord: an interaction without a user or channel id")
	}
	text := strings.TrimSpace(it.text())
	if text == "" || u.Bot {
		return ephemeral("Write your question after the command, e.g. /" + it.Data.Name + " text: hello"), nil
	}
	app := it.ApplicationID
	m := channels.Message{
		ID:       it.ID,
		User:     u.ID,
		UserName: u.name(),
		Chat:     channel,
		Text:     text,
		Reply:    "i/" + app + "/" + channel + "/" + it.ID + "/" + a.seal(it.ID, it.Token),
		At:       snowflakeTime(it.ID),
	}
	// Discord waits 3 s for the first response.
	ctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if err := a.host.Accept(ctx, m); err != nil && !errors.Is(err, channels.ErrDuplicate) {
		a.host.Log().Warn("discord: interaction not taken", "id", it.ID, "err", err)
		return ephemeral("Sorry, I cannot take this message now."), nil
	}
	return map[string]int{"type": callbackDeferred}, nil
}

// interactGateway takes an INTERACTION_CREATE (the application has no
// endpoint URL: Discord sends interactions over the Gateway) and answers
// it with POST /interactions/{id}/{token}/callback.
func (a *Adapter) interactGateway(ctx context.Context, d json.RawMessage) {
	it, err := parseInteraction(d)
	if err != nil || it.Type != interactionCommand {
		return
	}
	resp, err := a.command(ctx, it)
	if err != nil {
		a.host.Log().Debug("discord: a gateway interaction dropped", "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, _, err := a.rest.call(cctx, "POST", "/interactions/"+it.ID+"/"+it.Token+"/callback", "/interactions/{id}/{token}/callback", it.ID, resp, false); err != nil {
		a.host.Log().Warn("discord: interaction callback", "id", it.ID, "err", err)
	}
}

func ephemeral(text string) any {
	return map[string]any{"type": callbackMessage, "data": map[string]any{
		"content": text, "flags": flagEphemeral, "allowed_mentions": allowedMentions{Parse: []string{}},
	}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"message": msg}}) // as the channels' core answers
}
