package storage

import (
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// A conversation that used tools (an assistant's calls, then one tool
// message per result, a large one kept apart) comes back as it was, from
// the store (message records) and from the wire (Encode).
func TestToolMessagesRoundTrip(t *testing.T) {
	build := func() *moltbot.Conversation {
		c := conversation("c", 2)
		add(c, moltbot.Message{ID: "t1", Role: moltbot.RoleUser, Content: "weather?"})
		add(c, moltbot.Message{ID: "t1:a", Role: moltbot.RoleAssistant, Content: "Let me check.", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "Let me check."},
			{Type: moltbot.PartToolCall, CallID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "call_2", Name: "get_weather", Arguments: `{}`}}})
		add(c, moltbot.Message{ID: "t2:0", Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_2", Content: "snow"}}})
		add(c, moltbot.Message{ID: "t2", Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1",
			Content: strings.Repeat("r", BlobThreshold+1)}}})
		return c
	}
	s := NewMemory()
	if err := s.Put(build(), true); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("default", "c")
	if err != nil {
		t.Fatal(err)
	}
	want, last := build(), len(got.Messages)-1
	want.Messages[last].Parts[0].Ref = got.Messages[last].Parts[0].Ref
	if got.Messages[last].Parts[0].Ref == "" || !reflect.DeepEqual(got, want) {
		t.Fatalf("holds\n%+v\nwant\n%+v", got, want)
	}
	back, err := Decode(Encode(nil, build()))
	if err != nil || !reflect.DeepEqual(back, build()) {
		t.Fatalf("the wire: %v\n%+v", err, back)
	}
}
