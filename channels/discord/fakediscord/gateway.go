package fakediscord

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The Gateway: HELLO on connect; op 1 answered by op 11 (unless
// DropACKs); op 2 checked (token: 4004, intents: 4014, twice: 4005) and
// answered by READY and a GUILD_CREATE; op 6 resumes a known session,
// replaying its dispatches after the given seq, then RESUMED (an unknown
// session gets op 9 false); anything else before identifying closes with
// 4003; a frame that is not JSON closes with 4002; more than 120 sends a
// minute (heartbeats aside) close with 4008; a client frame over 4096 bytes with 4002.
func (s *Server) gateway(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("v") != "10" || q.Get("encoding") != "json" || q.Has("compress") {
		http.Error(w, "fakediscord: want ?v=10&encoding=json without compress", 400)
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(4096)
	c := &gconn{ws: ws}
	s.mu.Lock()
	s.live = append(s.live, c)
	s.mu.Unlock()
	s.note("connect %s", r.URL.Path)
	defer func() {
		s.mu.Lock()
		for i, l := range s.live {
			if l == c {
				s.live = append(s.live[:i], s.live[i+1:]...)
				break
			}
		}
		if c.sess != nil && c.sess.conn == c {
			c.sess.conn = nil
		}
		s.mu.Unlock()
		ws.Close()
	}()
	c.write(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": s.opt.HeartbeatInterval.Milliseconds()}, "s": nil, "t": nil})
	var sent []time.Time
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				s.note("client closed %d", ce.Code)
			} else {
				s.note("client gone")
			}
			return
		}
		var f struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if json.Unmarshal(data, &f) != nil {
			s.closeWith(c, 4002, "Error while decoding payload.")
			return
		}
		// Heartbeats are paced by the interval a test may shorten: the
		// limit counts the rest.
		if now := time.Now(); f.Op != 1 {
			for len(sent) > 0 && now.Sub(sent[0]) >= time.Minute {
				sent = sent[1:]
			}
			if sent = append(sent, now); len(sent) > 120 {
				s.closeWith(c, 4008, "Rate limited.")
				return
			}
		}
		switch f.Op {
		case 1:
			var seq int64
			json.Unmarshal(f.D, &seq)
			s.mu.Lock()
			s.heartbeat = append(s.heartbeat, seq)
			drop := s.noACK
			s.mu.Unlock()
			s.note("heartbeat %d", seq)
			if !drop {
				c.write(map[string]any{"op": 11, "d": nil})
			}
		case 2:
			var id struct {
				Token    string          `json:"token"`
				Intents  int             `json:"intents"`
				Compress bool            `json:"compress"`
				Props    json.RawMessage `json:"properties"`
			}
			json.Unmarshal(f.D, &id)
			switch {
			case c.sess != nil:
				s.closeWith(c, 4005, "Already authenticated.")
				return
			case id.Token != s.opt.Token && id.Token != "Bot "+s.opt.Token:
				s.closeWith(c, 4004, "Authentication failed.")
				return
			case id.Intents&^s.opt.AllowedIntents != 0:
				s.closeWith(c, 4014, "Disallowed intent(s).")
				return
			case len(id.Props) == 0:
				s.closeWith(c, 4002, "Error while decoding payload.")
				return
			}
			s.mu.Lock()
			sess := &session{id: "fakesession" + s.id(), conn: c}
			s.sessions[sess.id] = sess
			c.sess = sess
			s.mu.Unlock()
			s.note("identify intents=%d", id.Intents)
			s.dispatch(sess, "READY", map[string]any{
				"v": 10, "user": botUser(), "session_id": sess.id, "session_type": "normal",
				"resume_gateway_url": "ws" + strings.TrimPrefix(s.URL, "http") + "/resume",
				"guilds":             []any{map[string]any{"id": GuildID, "unavailable": true}},
				"application":        map[string]any{"id": AppID, "flags": 0},
				"private_channels":   []any{}, "relationships": []any{}, "presences": []any{},
				"user_settings": map[string]any{}, "geo_ordered_rtc_regions": []any{}, "shard": []int{0, 1},
			})
			s.dispatch(sess, "GUILD_CREATE", guild())
		case 6:
			var rs struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
				Seq       int64  `json:"seq"`
			}
			json.Unmarshal(f.D, &rs)
			if rs.Token != s.opt.Token {
				s.closeWith(c, 4004, "Authentication failed.")
				return
			}
			s.mu.Lock()
			sess := s.sessions[rs.SessionID]
			if sess == nil || rs.Seq > sess.seq {
				s.mu.Unlock()
				s.note("resume refused %s", rs.SessionID)
				c.write(map[string]any{"op": 9, "d": false})
				continue
			}
			if old := sess.conn; old != nil && old != c {
				old.ws.Close() // the session moved to this connection
			}
			// The missed dispatches, then RESUMED, before anything new:
			// the session is this connection's only after them.
			sess.seq++
			resumed, _ := json.Marshal(map[string]any{"op": 0, "s": sess.seq, "t": "RESUMED", "d": map[string]any{}})
			replay := append(sess.events[rs.Seq:len(sess.events):len(sess.events)], resumed)
			sess.events = append(sess.events, resumed)
			for _, e := range replay {
				c.writeRaw(e)
			}
			sess.conn, c.sess = c, sess
			s.mu.Unlock()
			s.note("resume %d", rs.Seq)
		default:
			if c.sess == nil {
				s.closeWith(c, 4003, "Not authenticated.")
				return
			}
		}
	}
}

func guild() map[string]any {
	return map[string]any{
		"id": GuildID, "name": "fake guild", "owner_id": UserID, "unavailable": false,
		"roles":  []any{map[string]any{"id": GuildID, "name": "@everyone", "permissions": "104324673", "position": 0, "color": 0, "hoist": false, "managed": false, "mentionable": false}},
		"emojis": []any{}, "features": []any{}, "members": []any{}, "presences": []any{}, "voice_states": []any{},
		"threads": []any{}, "stickers": []any{}, "stage_instances": []any{}, "guild_scheduled_events": []any{},
		"member_count": 2, "large": false, "joined_at": "2026-01-01T00:00:00.000000+00:00",
		"channels": []any{map[string]any{"id": ChannelID, "type": 0, "name": "general", "guild_id": GuildID, "position": 0, "permission_overwrites": []any{}}},
	}
}

func (c *gconn) write(v any) error {
	data, _ := json.Marshal(v)
	return c.writeRaw(data)
}

func (c *gconn) writeRaw(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

func (s *Server) closeWith(c *gconn, code int, text string) {
	s.note("close %d", code)
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	c.ws.Close()
}

// dispatch numbers an event in sess and sends it when sess is connected
// (else it waits in the session for a resume).
func (s *Server) dispatch(sess *session, t string, d any) {
	s.mu.Lock()
	sess.seq++
	data, _ := json.Marshal(map[string]any{"op": 0, "s": sess.seq, "t": t, "d": d})
	sess.events = append(sess.events, data)
	c := sess.conn
	s.mu.Unlock()
	if c != nil {
		c.writeRaw(data)
	}
}

// current is the newest session (nil before an IDENTIFY).
func (s *Server) current() *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *session
	for _, ss := range s.sessions {
		if best == nil || ss.id > best.id {
			best = ss
		}
	}
	return best
}

// Dispatch sends event t with d in the newest session; false without one.
func (s *Server) Dispatch(t string, d any) bool {
	sess := s.current()
	if sess == nil {
		return false
	}
	s.dispatch(sess, t, d)
	return true
}

// Message is a MESSAGE_CREATE's d: content by author in channel (guild
// set for ChannelID), with the message id id.
type Message struct {
	ID, Channel, Content string
	Author               string // a user id (UserID by default)
	Bot                  bool
	WebhookID            string
	Mentions             []string
	Attachments          []map[string]any
	ReplyToBot           bool
	Type                 int
}

// MessageCreate dispatches m.
func (s *Server) MessageCreate(m Message) bool {
	if m.Author == "" {
		m.Author = UserID
	}
	if m.Channel == "" {
		m.Channel = ChannelID
	}
	if m.ID == "" {
		s.mu.Lock()
		m.ID = s.id()
		s.mu.Unlock()
	}
	mentions := []any{}
	for _, id := range m.Mentions {
		mentions = append(mentions, map[string]any{"id": id, "username": "u" + id, "discriminator": "0"})
	}
	att := []any{}
	for _, a := range m.Attachments {
		att = append(att, a)
	}
	d := map[string]any{
		"id": m.ID, "channel_id": m.Channel, "type": m.Type, "content": m.Content,
		"author":    map[string]any{"id": m.Author, "username": "user" + m.Author[len(m.Author)-2:], "global_name": "A User", "discriminator": "0", "bot": m.Bot, "avatar": nil},
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "edited_timestamp": nil, "tts": false,
		"mention_everyone": false, "mentions": mentions, "mention_roles": []any{}, "attachments": att,
		"embeds": []any{}, "pinned": false, "flags": 0, "components": []any{},
	}
	// channel_type: 1 a DM (discord.js makes a DM channel of it), 0 a
	// guild text channel.
	d["channel_type"] = 1
	if m.Channel == ChannelID {
		d["channel_type"] = 0
		d["guild_id"] = GuildID
		d["member"] = map[string]any{"roles": []any{}, "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0}
	}
	if m.WebhookID != "" {
		d["webhook_id"] = m.WebhookID
	}
	if m.ReplyToBot {
		d["type"] = 19
		d["message_reference"] = map[string]any{"message_id": "1", "channel_id": m.Channel}
		d["referenced_message"] = map[string]any{"id": "1", "channel_id": m.Channel, "author": botUser(), "content": "earlier", "type": 0}
	}
	return s.Dispatch("MESSAGE_CREATE", d)
}

// Reconnect sends op 7 to every connection.
func (s *Server) Reconnect() { s.each(func(c *gconn) { c.write(map[string]any{"op": 7, "d": nil}) }) }

// InvalidSession sends op 9 with resumable to every connection.
func (s *Server) InvalidSession(resumable bool) {
	s.each(func(c *gconn) { c.write(map[string]any{"op": 9, "d": resumable}) })
}

// AskHeartbeat sends op 1 to every connection.
func (s *Server) AskHeartbeat() {
	s.each(func(c *gconn) { c.write(map[string]any{"op": 1, "d": nil}) })
}

// CloseAll closes every connection with code.
func (s *Server) CloseAll(code int) {
	s.each(func(c *gconn) { s.closeWith(c, code, "closed by the test") })
}

// DropACKs makes the gateway stop (or start again) answering heartbeats.
func (s *Server) DropACKs(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noACK = drop
}

// Heartbeats is the d of every heartbeat received.
func (s *Server) Heartbeats() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.heartbeat...)
}

// Connections is how many gateway connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// Seq is the newest session's last sequence number.
func (s *Server) Seq() int64 {
	sess := s.current()
	if sess == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return sess.seq
}

func (s *Server) each(f func(*gconn)) {
	s.mu.Lock()
	live := append([]*gconn(nil), s.live...)
	s.mu.Unlock()
	for _, c := range live {
		f(c)
	}
}
