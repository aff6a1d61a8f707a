package slack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels/slack/fakeslack"
)

// FuzzVerify: the verifier never panics, accepts exactly the signature
// Slack would compute for the timestamp and body, and refuses it after
// any change to the body.
func FuzzVerify(f *testing.F) {
	f.Add("1700000100", "v0=abc", []byte(`{"type":"event_callback"}`), "secret")
	f.Add("", "", []byte{}, "")
	f.Add("99999999999999999999", "v0="+strings.Repeat("0", 64), []byte("x"), "s")
	f.Add("-1", "v0=", []byte("\x00"), "s")
	now := time.Unix(1700000100, 0)
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte, key string) {
		_ = verify([]byte(key), ts, sig, body, now)
		good := fakeslack.Sign(key, now.Unix(), body)
		if err := verify([]byte(key), "1700000100", good, body, now); err != nil {
			t.Fatalf("a good signature refused: %v", err)
		}
		changed := append([]byte("x"), body...)
		if verify([]byte(key), "1700000100", good, changed, now) == nil {
			t.Fatal("a changed body verified")
		}
		if sig != good && verify([]byte(key), "1700000100", sig, body, now) == nil {
			t.Fatalf("signature %q verified, want only %q", sig, good)
		}
	})
}

// FuzzEvent: any payload Slack (or an attacker past the signature) sends
// parses without panicking, and a message it makes is well formed: an ID
// of channel and ts, a reply address Send reads back to the same
// channel, within the contract's 1024 bytes.
func FuzzEvent(f *testing.F) {
	fake := fakeslack.New(botToken, appToken)
	defer fake.Close()
	f.Add([]byte(fake.Callback(mention("1700000001.000100", "<@UFAKEBOT> hi &amp; <@UFAKEBOT|bot> bye"))))
	f.Add([]byte(fake.Callback(fakeslack.Event{Type: "message", ChannelType: "im", User: "U1", Text: "x", TS: "1.2", ThreadTS: "1.1", Channel: "D1"})))
	f.Add([]byte(`{"type":"event_callback","event":{"type":"message","channel_type":"im","bot_id":"B1","text":"<@","ts":"1.","channel":"D1","edited":null}}`))
	f.Add([]byte(`{"type":"event_callback","event":{"type":"app_mention","user":"U1","text":"<@U1","ts":"1","channel":"C1","files":[{"mimetype":"image/png","url_private":"x"}]}}`))
	f.Add([]byte(`{"type":"events_api","envelope_id":"e","payload":{"type":"event_callback"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A Socket Mode frame around it, as the read loop decodes it.
		var fr frame
		_ = json.Unmarshal(data, &fr)
		var cb eventCallback
		if json.Unmarshal(data, &cb) != nil {
			return
		}
		for _, self := range []string{"", "U1", fakeslack.UserID} {
			m, why := message(&cb, self)
			if why != dropNone {
				continue
			}
			if m.ID != m.Chat+":"+cb.Event.TS || len(m.Reply) > 1024 {
				t.Fatalf("message %+v", m)
			}
			ch, thread, err := parseAddress(m.Reply)
			if err != nil || ch != m.Chat || thread != m.Thread {
				t.Fatalf("reply %q reads back as %q %q %v", m.Reply, ch, thread, err)
			}
			if self != "" && m.User == self {
				t.Fatal("our own message taken")
			}
		}
	})
}

// FuzzEscape: escaped text has no markup left and unescapes to itself.
func FuzzEscape(f *testing.F) {
	f.Add("<!channel> & <@U1>")
	f.Fuzz(func(t *testing.T, s string) {
		e := escape(s)
		if strings.ContainsAny(e, "<>") {
			t.Fatalf("escape(%q) = %q", s, e)
		}
		if cleanText(e, "") != strings.TrimSpace(s) {
			t.Fatalf("escape(%q) does not unescape", s)
		}
	})
}
