package discord

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/moltbot/moltbot/channels/channeltest"
	"github.com/moltbot/moltbot/channels/discord/fakediscord"
)

const self = "900"

func TestFilter(t *testing.T) {
	base := func() wireMessage {
		return wireMessage{ID: "11", ChannelID: "22", GuildID: "33", Author: wireUser{ID: "44", Username: "ann"}, Content: "<@900> hi"}
	}
	cases := []struct {
		name    string
		edit    func(*wireMessage)
		mention bool
		why     string
		text    string
	}{
		{"mentioned", func(m *wireMessage) {}, true, "", "hi"},
		{"nickname mention", func(m *wireMessage) { m.Content = "hey <@!900>, hi" }, true, "", "hey , hi"},
		{"mentioned in mentions only", func(m *wireMessage) { m.Content = "hi"; m.Mentions = []wireUser{{ID: "900"}} }, true, "", "hi"},
		{"a reply to the bot", func(m *wireMessage) {
			m.Content = "and then?"
			m.Type = 19
			m.ReferencedMessage = &struct {
				Author wireUser `json:"author"`
			}{wireUser{ID: "900"}}
		}, true, "", "and then?"},
		{"not mentioned in a guild", func(m *wireMessage) { m.Content = "hi all" }, true, dropMention, ""},
		{"another user mentioned", func(m *wireMessage) { m.Content = "<@901> hi" }, true, dropMention, ""},
		{"no mention needed", func(m *wireMessage) { m.Content = "hi all" }, false, "", "hi all"},
		{"DM", func(m *wireMessage) { m.GuildID = ""; m.Content = "hi" }, true, "", "hi"},
		{"bot author", func(m *wireMessage) { m.Author.Bot = true }, true, dropBot, ""},
		{"webhook", func(m *wireMessage) { m.WebhookID = "5" }, true, dropWebhook, ""},
		{"ourselves", func(m *wireMessage) { m.Author.ID = self }, true, dropSelf, ""},
		{"system message", func(m *wireMessage) { m.Type = 7 }, true, dropType, ""},
		{"only the mention", func(m *wireMessage) { m.Content = "<@900>  " }, true, dropNoConten, ""},
		{"empty", func(m *wireMessage) { m.GuildID = ""; m.Content = "" }, true, dropNoConten, ""},
		{"a non-image attachment", func(m *wireMessage) {
			m.GuildID, m.Content = "", ""
			m.Attachments = []wireAttachment{{Filename: "a.pdf", ContentType: "application/pdf", Size: 5}}
		}, true, dropNoConten, ""},
		{"an oversized image", func(m *wireMessage) {
			m.GuildID, m.Content = "", ""
			m.Attachments = []wireAttachment{{Filename: "a.png", Size: channels.MaxImageBytes + 1}}
		}, true, dropNoConten, ""},
		{"bad channel id", func(m *wireMessage) { m.ChannelID = "../1" }, true, dropBadIDs, ""},
		{"bad message id", func(m *wireMessage) { m.ID = "" }, true, dropBadIDs, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.edit(&m)
			in, why := filter(&m, self, c.mention)
			if why != c.why {
				t.Fatalf("dropped for %q, want %q", why, c.why)
			}
			if why == "" && (in.msg.Text != c.text || in.msg.ID != m.ID || in.msg.Reply != "c/22/11") {
				t.Errorf("%+v", in.msg)
			}
		})
	}
	// An image alone is a message.
	m := base()
	m.Content = "<@900>"
	m.Attachments = []wireAttachment{{Filename: "x.JPG", Size: 10}, {ContentType: "image/webp", Size: 10}}
	if in, why := filter(&m, self, true); why != "" || len(in.images) != 2 {
		t.Errorf("images: %q %+v", why, in)
	}
}

// End to end: only the last of these becomes a turn (the worker takes
// them in order, so when it arrives the others were judged).
func TestFilteredOverTheGateway(t *testing.T) {
	f := newFake(t, fakediscord.Options{})
	h := &channeltest.Host{Accepted: make(chan channels.Message, 8)}
	run(t, testAdapter(t, f, h, nil))
	connected(t, f, h)
	bot := "<@" + fakediscord.BotID + "> "
	f.MessageCreate(fakediscord.Message{Content: bot + "from a bot", Author: "1100000000000000077", Bot: true})
	f.MessageCreate(fakediscord.Message{Content: bot + "from a webhook", WebhookID: "1100000000000000078"})
	f.MessageCreate(fakediscord.Message{Content: bot + "from ourselves", Author: fakediscord.BotID})
	f.MessageCreate(fakediscord.Message{Content: "not for the bot"})
	f.Dispatch("MESSAGE_UPDATE", map[string]any{"id": "1", "channel_id": fakediscord.ChannelID, "content": bot + "edited",
		"author": map[string]any{"id": fakediscord.UserID}})
	f.MessageCreate(fakediscord.Message{Content: "a reply", ReplyToBot: true})
	if m := accepted(t, h); m.Text != "a reply" {
		t.Errorf("accepted %+v", m)
	}
	if n := len(h.Messages()); n != 1 {
		t.Errorf("%d accepted", n)
	}
}

func TestOptions(t *testing.T) {
	good := map[string]string{"token": "abc.def"}
	if opt, err := parseOptions(good); err != nil || opt.intents != DefaultIntents || !opt.requireMention || opt.api != defaultAPI {
		t.Fatalf("%+v %v", opt, err)
	}
	if opt, err := parseOptions(map[string]string{"token": "t", "intents": "GUILD_MESSAGES|DIRECT_MESSAGES", "require_mention": "false"}); err != nil ||
		opt.intents != IntentGuildMessages|IntentDirectMessages || opt.requireMention {
		t.Errorf("%+v %v", opt, err)
	}
	for _, c := range []struct {
		opts map[string]string
		key  string
	}{
		{map[string]string{}, "token"},
		{map[string]string{"token": "a b"}, "token"},
		{map[string]string{"token": "t", "public_key": "zz"}, "public_key"},
		{map[string]string{"token": "t", "public_key": strings.Repeat("ab", 31)}, "public_key"},
		{map[string]string{"token": "t", "application_id": "app"}, "application_id"},
		{map[string]string{"token": "t", "api_url": "ftp://x"}, "api_url"},
		{map[string]string{"token": "t", "intents": "EVERYTHING"}, "intents"},
		{map[string]string{"token": "t", "intents": "-1"}, "intents"},
		{map[string]string{"token": "t", "require_mention": "maybe"}, "require_mention"},
	} {
		err := Type().Check(channels.Config{Options: c.opts})
		if err == nil || !strings.Contains(err.Error(), "option "+c.key) {
			t.Errorf("%v: %v, want an error naming option %s", c.opts, err, c.key)
		}
	}
}

func TestSnowflake(t *testing.T) {
	if !snowflake("1100000000000000001") || snowflake("") || snowflake("1a") || snowflake(strings.Repeat("1", 21)) {
		t.Error("snowflake")
	}
	if got := snowflakeTime("175928847299117063"); got.UTC().Format(time.RFC3339) != "2016-04-30T11:18:25Z" {
		t.Errorf("snowflakeTime: %v (Discord's documented example is 2016-04-30 11:18:25.796 UTC)", got.UTC())
	}
}

// FuzzGatewayPayload: any frame the gateway could send, through the
// parser and, as a MESSAGE_CREATE, the filter: no panic, and a kept
// message holds Discord ids only in its address.
func FuzzGatewayPayload(f *testing.F) {
	f.Add([]byte(`{"op":10,"d":{"heartbeat_interval":41250}}`))
	f.Add([]byte(`{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"id":"11","channel_id":"22","guild_id":"33","author":{"id":"44"},"content":"<@900> hi","mentions":[{"id":"900"}],"attachments":[{"filename":"a.png","size":3,"url":"https://cdn.discordapp.com/a.png"}]}}`))
	f.Add([]byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"abc","resume_gateway_url":"wss://x","user":{"id":"900"}}}`))
	f.Add([]byte(`{"op":9,"d":false}`))
	f.Add([]byte(`{"op":0,"s":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := parseFrame(data)
		if err != nil {
			return
		}
		var r ready
		json.Unmarshal(fr.D, &r)
		var m wireMessage
		if json.Unmarshal(fr.D, &m) != nil {
			return
		}
		for _, mention := range []bool{true, false} {
			in, why := filter(&m, self, mention)
			if why != "" {
				continue
			}
			if !snowflake(in.msg.Chat) || in.msg.Reply != "c/"+m.ChannelID+"/"+m.ID || strings.Contains(in.msg.Text, "<@900>") {
				t.Fatalf("kept %+v", in.msg)
			}
			if in.msg.Text == "" && len(in.images) == 0 {
				t.Fatal("kept an empty message")
			}
		}
	})
}
