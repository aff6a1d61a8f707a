package slack

import (
	"strings"
	"testing"
)

func TestCleanText(t *testing.T) {
	for _, tc := range []struct{ in, self, want string }{
		{"<@U1> hi", "U1", "hi"},
		{"hi <@U1|bot>, and <@U1>!", "U1", "hi , and !"},
		{"<@U12> is not me", "U1", "<@U12> is not me"},
		{"<@U1", "U1", "<@U1"},
		{"<@U1|never closed", "U1", "<@U1|never closed"},
		{"a &lt;b&gt; &amp;lt; c", "", "a <b> &lt; c"},
		{"<@U1><@U1><@U1>x", "U1", "x"},
		{"  <@U2> &amp;  ", "U1", "<@U2> &"},
	} {
		if got := cleanText(tc.in, tc.self); got != tc.want {
			t.Errorf("cleanText(%q, %q) = %q, want %q", tc.in, tc.self, got, tc.want)
		}
	}
	// Linear: a message made of our mentions (Slack's 40,000 characters
	// and more) is cleaned in one pass.
	long := strings.Repeat("<@U1> ", 200000) + "end"
	if got := cleanText(long, "U1"); got != "end" {
		t.Fatalf("got %q", got[:min(len(got), 40)])
	}
}

// A mention in a DM arrives as app_mention (no channel_type) and as
// message.im: both make the same Message, whichever comes first.
func TestMessageDMTwins(t *testing.T) {
	mk := func(typ, ctype string) *eventCallback {
		return &eventCallback{Type: "event_callback", Event: event{Type: typ, ChannelType: ctype, User: "U0ALICE",
			Text: "<@UB> hi", TS: "1700000001.000100", Channel: "D0ALICE"}}
	}
	a, why1 := message(mk("app_mention", ""), "UB")
	b, why2 := message(mk("message", "im"), "UB")
	if why1 != dropNone || why2 != dropNone || a.ID != b.ID || a.Reply != b.Reply || a.Thread != b.Thread || a.Text != b.Text || a.Reply != "D0ALICE" {
		t.Fatalf("twins differ:\n%+v\n%+v", a, b)
	}
}
