package manage

import (
	"context"
	"fmt"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills/handoff"
)

// HandoffEntry is a conversation in the hand-off queue (or with an agent).
type HandoffEntry = handoff.Entry

// Handoff is the hand-off queue as the service uses it (wired in cmd):
// the cluster-wide index, and the operations, each run as a turn on the
// conversation's owner (fenced there by the epoch).
type Handoff interface {
	List(space string) []HandoffEntry
	Operate(ctx context.Context, space, conversation string, in moltbot.TurnInput) (*moltbot.TurnResult, error)
}

// HandoffResult is what an operation did: the conversation's owner and
// epoch after it, and the stored reply (an agent's reply; a release's
// notice, when one is configured).
type HandoffResult struct {
	Conversation string           `json:"conversation"`
	Owner        string           `json:"owner"`
	Epoch        uint64           `json:"epoch"`
	Agent        string           `json:"agent,omitempty"`
	Message      *moltbot.Message `json:"message,omitempty"`
}

// HandoffRequest is an operation on a conversation of the caller's tenant.
type HandoffRequest struct {
	Conversation string
	Op           string // moltbot.HandoffClaim, HandoffReply, HandoffRelease
	Epoch        uint64
	Text         string // reply
	// ID, when set, makes a reply idempotent: sent again, it is not said
	// twice (the stored one is answered).
	ID string
}

// agentOf is who p is as a hand-off agent (its key, its token's subject),
// or an error when p may not work the queue: an agent's key, or a
// tenant's admin.
func agentOf(p *moltbot.Principal) (string, error) {
	if !p.Agent() && !p.Admin() {
		return "", moltbot.Errorf(moltbot.EForbidden, "the hand-off queue needs a credential of scope agent or admin")
	}
	switch {
	case p.KeyID != "":
		return "key:" + p.KeyID, nil
	case p.Subject != "":
		return "sub:" + p.Subject, nil
	}
	return "operator", nil
}

func (s *Service) handoffOn() error {
	if s.cfg.Handoff == nil {
		return moltbot.Errorf(moltbot.ENotFound, "this node has no hand-off queue")
	}
	return nil
}

// HandoffQueue is the conversations of p's tenant waiting for a person or
// with one, the longest waiting first, whichever node owns them.
func (s *Service) HandoffQueue(p *moltbot.Principal) ([]HandoffEntry, error) {
	if _, err := agentOf(p); err != nil {
		return nil, err
	}
	if err := s.handoffOn(); err != nil {
		return nil, err
	}
	return s.cfg.Handoff.List(p.Space), nil
}

// Handoff runs an agent's operation on a conversation of p's tenant.
func (s *Service) Handoff(ctx context.Context, p *moltbot.Principal, r HandoffRequest) (*HandoffResult, error) {
	agent, err := agentOf(p)
	if err != nil {
		return nil, err
	}
	if err := s.handoffOn(); err != nil {
		return nil, err
	}
	op := &moltbot.HandoffOp{Op: r.Op, Epoch: r.Epoch, Agent: agent}
	in := moltbot.TurnInput{Handoff: op}
	out := &HandoffResult{Conversation: r.Conversation}
	switch r.Op {
	case moltbot.HandoffClaim:
		out.Owner, out.Epoch, out.Agent = handoff.OwnerAgent, r.Epoch+1, agent
	case moltbot.HandoffReply:
		if strings.TrimSpace(r.Text) == "" {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "text", Message: "text is required: the agent's reply"}
		}
		if len(r.Text) > moltbot.MaxHandoffText {
			return nil, &moltbot.Error{Code: moltbot.ETooLarge, Param: "text", Message: fmt.Sprintf("text is %d bytes; at most %d", len(r.Text), moltbot.MaxHandoffText)}
		}
		if r.ID != "" {
			if len(r.ID) > 64 || !moltbot.ValidRequestID(r.ID) {
				return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "id", Message: "id is 1-64 letters, digits, '-', '_', '.' or ':'"}
			}
			in.ExternalID = "agent:" + r.ID
		}
		op.Text = r.Text
		out.Owner, out.Epoch, out.Agent = handoff.OwnerAgent, r.Epoch, agent
	case moltbot.HandoffRelease:
		out.Owner, out.Epoch = handoff.OwnerBot, r.Epoch+1
	default:
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "op", Message: fmt.Sprintf("%q is not claim, reply or release", r.Op)}
	}
	res, err := s.cfg.Handoff.Operate(ctx, p.Space, r.Conversation, in)
	if err != nil {
		return nil, err
	}
	if res != nil && res.Message.Content != "" {
		m := res.Message
		out.Message = &m
	}
	return out, nil
}
