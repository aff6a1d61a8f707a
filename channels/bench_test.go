package channels

import (
	"context"
	"strconv"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// nopChat answers every turn at once.
type nopChat struct{}

func (nopChat) Turn(context.Context, *moltbot.Principal, string, moltbot.TurnInput) (*moltbot.TurnResult, error) {
	return &moltbot.TurnResult{}, nil
}

func (nopChat) Create(context.Context, *moltbot.Principal, moltbot.NewConversation) (*moltbot.Conversation, error) {
	return &moltbot.Conversation{}, nil
}

// BenchmarkAccept is Host.Accept alone, over an inbox in memory (no
// fsync): the checks, the record's encoding and write, the queueing; the
// turns run beside on the workers (a chat that answers at once).
//
//	go test -run '^$' -bench Accept -benchmem ./channels/
func BenchmarkAccept(b *testing.B) {
	mem := storage.NewMemory()
	tt := &toyType{}
	c := NewCore(CoreConfig{Chat: nopChat{}, Inbox: mem.Namespace(storage.ChannelsInbox), Metrics: metrics.New(""), Budget: 1 << 30})
	if err := c.Set([]Spec{{Config: Config{Name: "c1", Type: "toy", Tenant: "default", Conversations: PerUser}, Type: tt.Type()}}); err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h := c.channel("c1")
	m := Message{User: "U1", Chat: "C1", Text: "where is my order?", Reply: "C1"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		m.ID = strconv.Itoa(i)
		m.User = "U" + strconv.Itoa(i%512)
		if err := h.Accept(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
}
