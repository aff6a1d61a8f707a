package handoff

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/moltbot/moltbot"
)

// Ticket is the body of the ticket webhook a queue's timeout posts.
type Ticket struct {
	Ticket       string `json:"ticket"`
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
	User         string `json:"user,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// Message is what the bot told the user (its id: the delivery's key,
	// the same on a retry).
	Message   string `json:"message"`
	MessageID string `json:"message_id"`
	// Transcript is the conversation's last messages (user and
	// assistant, at most TicketMessages, each cut to 2 KB).
	Transcript []TicketLine `json:"transcript"`
	Created    int64        `json:"created"`
}

// TicketLine is one message of a ticket's transcript.
type TicketLine struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Model   string `json:"model,omitempty"`
	Created int64  `json:"created,omitempty"`
}

// TicketMessages bounds a ticket's transcript.
const TicketMessages = 20

// Signature headers of the ticket webhook (moltbot.SignHook): the Unix
// time in seconds, and "sha256=" and the hex HMAC-SHA256, keyed by the
// secret, of "<timestamp>.<body>". A receiver checks the signature in
// constant time and refuses an old timestamp (replay).
const (
	HeaderTimestamp = moltbot.HeaderHookTimestamp
	HeaderSignature = moltbot.HeaderHookSignature
)

// Sign returns the signature header's value for body at ts.
func Sign(secret string, ts int64, body []byte) string { return moltbot.SignHook(secret, ts, body) }

// Verify checks a signed request's headers against body, in constant
// time, and that its timestamp is within skew of now.
func Verify(secret string, tsHeader, sigHeader string, body []byte, now time.Time, skew time.Duration) error {
	if err := moltbot.VerifyHook(secret, tsHeader, sigHeader, body, now, skew); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	return nil
}

// Tickets delivers the outbox's TicketChannel destinations: it posts the
// signed ticket to URL. It is a conv.Deliverer for that channel: an error
// is retried by the outbox (with backoff, across restarts), and a 4xx
// but 408/429 is given up.
type Tickets struct {
	URL, Secret string
	// Get reads the conversation (for its transcript and user).
	Get    func(ctx context.Context, space, id string) (*moltbot.Conversation, error)
	Client *http.Client
	Now    func() time.Time
}

// Deliver posts the ticket of message m (the resume notice) of conversation.
func (k *Tickets) Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error {
	if k.URL == "" {
		return &moltbot.Error{Code: moltbot.EInvalid, Message: "handoff.ticket_url is not set: the ticket stays in the conversation's outbox"}
	}
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	tk := Ticket{Ticket: to.Address, Tenant: moltbot.TenantOfSpace(space), Conversation: conversation, Message: m.Content, MessageID: m.ID,
		Created: now().UnixMilli(), Transcript: []TicketLine{}}
	if k.Get != nil {
		if c, err := k.Get(ctx, space, conversation); err == nil {
			tk.User = c.User
			if st, _, err := Decode(c.State[moltbot.HandoffStateName]); err == nil {
				tk.Reason = st.Reason
			}
			msgs := c.Messages
			if len(msgs) > TicketMessages {
				msgs = msgs[len(msgs)-TicketMessages:]
			}
			for _, x := range msgs {
				if x.Role == moltbot.RoleUser || x.Role == moltbot.RoleAssistant {
					tk.Transcript = append(tk.Transcript, TicketLine{Role: string(x.Role), Content: cut(x.Content, 2048), Model: x.Model, Created: x.Created})
				}
			}
		}
	}
	body, err := json.Marshal(tk)
	if err != nil {
		return err
	}
	ts := now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.URL, bytes.NewReader(body))
	if err != nil {
		return &moltbot.Error{Code: moltbot.EInvalid, Message: "handoff.ticket_url: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(k.Secret, ts, body))
	req.Header.Set("Idempotency-Key", to.Address)
	client := k.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("handoff: ticket webhook: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != 408 && resp.StatusCode != 429:
		return &moltbot.Error{Code: moltbot.EInvalid, Message: fmt.Sprintf("handoff: the ticket webhook refused the ticket (HTTP %d)", resp.StatusCode)}
	}
	return fmt.Errorf("handoff: the ticket webhook answered HTTP %d", resp.StatusCode)
}
