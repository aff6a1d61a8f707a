package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moltbot/moltbot/inference/sse"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// `moltbot chat`: a terminal chat with a node, over the conversations API.
// Ollama's REPL is the bar: commands are answered locally (/help never
// reaches the model), Ctrl-C cancels the reply that streams and only it,
// Ctrl-C at the prompt says how to leave, Ctrl-D leaves; on a terminal the
// line is edited and recalled (golang.org/x/term), elsewhere (a pipe, a
// file) lines are read as they come.

type chatClient struct {
	url  string
	key  string
	http *http.Client
}

func (cc *chatClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, cc.url+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cc.key != "" {
		req.Header.Set("Authorization", "Bearer "+cc.key)
	}
	resp, err := cc.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach moltbot at %s: %w", cc.url, err)
	}
	return resp, nil
}

func (cc *chatClient) create(ctx context.Context, system, model string) (string, error) {
	resp, err := cc.do(ctx, http.MethodPost, "/v1/conversations", map[string]string{"system": system, "model": model})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", apiError(resp)
	}
	var c struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return "", err
	}
	return c.ID, nil
}

// chatMessage is what the chat shows of a stored message.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// errNoConversation: the node has no such conversation (404).
var errNoConversation = errors.New("no such conversation")

// messages returns a conversation's messages (GET /v1/conversations/{id}).
func (cc *chatClient) messages(ctx context.Context, id string) ([]chatMessage, error) {
	resp, err := cc.do(ctx, http.MethodGet, "/v1/conversations/"+id, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNoConversation
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp)
	}
	var c struct {
		Messages []chatMessage `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("bad conversation: %v", err)
	}
	return c.Messages, nil
}

// turn sends one message and streams the reply to out; it returns the model
// that served it and whether the reply ended with a newline.
func (cc *chatClient) turn(ctx context.Context, id, text string, out io.Writer) (served string, nl bool, err error) {
	resp, err := cc.do(ctx, http.MethodPost, "/v1/conversations/"+id+"/messages", map[string]any{"content": text, "stream": true})
	if err != nil {
		return "", true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", true, apiError(resp)
	}
	served = resp.Header.Get("X-Moltbot-Provider")
	nl = true
	r := sse.NewReader(resp.Body, 0)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return served, nl, errors.New("the stream ended early")
		}
		if err != nil {
			return served, nl, err
		}
		if string(ev.Data) == "[DONE]" {
			return served, nl, nil
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(ev.Data, &ch); err != nil {
			return served, nl, fmt.Errorf("bad chunk: %v", err)
		}
		if ch.Error != nil {
			return served, nl, errors.New(ch.Error.Message)
		}
		for _, c := range ch.Choices {
			if c.Delta.Content == "" {
				continue
			}
			io.WriteString(out, c.Delta.Content)
			nl = strings.HasSuffix(c.Delta.Content, "\n")
			if f, ok := out.(interface{ Flush() error }); ok {
				f.Flush()
			}
		}
	}
}

// chatHelp is what /help (and /?) prints; it never reaches the model.
const chatHelp = `Commands:
  /new          start a new conversation (with the same --system and --model)
  /id           print this conversation's id (resume it: moltbot chat --conversation ID)
  /history      print this conversation's messages
  /help, /?     this help
  /bye, /quit   leave (Ctrl+D on an empty line too)
  //text        send "/text" as a message (a line that starts with one / is a command)

Keys: Ctrl+C cancels a reply as it streams (the node keeps your message);
up/down recall earlier lines, left/right, Ctrl+A/E move, backspace,
Ctrl+U/W/K delete, Ctrl+L clears the screen (on a terminal).
`

// chatResumeShown is how many past messages resuming shows (/history
// shows them all).
const chatResumeShown = 20

// errInterrupt: Ctrl-C at the prompt.
var errInterrupt = errors.New("interrupted")

// lineReader reads the user's lines: io.EOF at the end of input (Ctrl-D),
// errInterrupt for Ctrl-C at the prompt.
type lineReader interface {
	ReadLine() (string, error)
}

// plainLines reads lines from a reader that is not a terminal (a pipe, a
// file): the prompt goes to w; SIGINT at the prompt ends the input.
type plainLines struct {
	w      io.Writer
	prompt string
	lines  chan string
	sigs   <-chan os.Signal
	stop   chan struct{} // closed by Close
}

func newPlainLines(r io.Reader, w io.Writer, prompt string, sigs <-chan os.Signal) *plainLines {
	p := &plainLines{w: w, prompt: prompt, lines: make(chan string), sigs: sigs, stop: make(chan struct{})}
	go func() {
		defer close(p.lines)
		in := bufio.NewScanner(r)
		in.Buffer(make([]byte, 64<<10), 1<<20)
		for in.Scan() {
			select {
			case p.lines <- in.Text():
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

// Close lets the reader's goroutine go once it has read its line (a read
// in progress is not interrupted).
func (p *plainLines) Close() { close(p.stop) }

// SetPrompt sets the prompt of the lines to come ("... " in a message of
// several lines).
func (p *plainLines) SetPrompt(s string) { p.prompt = s }

func (p *plainLines) ReadLine() (string, error) {
	fmt.Fprint(p.w, p.prompt)
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", io.EOF
		}
		return l, nil
	case <-p.sigs:
		return "", io.EOF
	}
}

// ttyLines reads lines from a terminal with x/term's line editor: the
// terminal is in raw mode only while a line is read (deferred restore:
// also on a panic), so a reply streams in the terminal's own mode and
// Ctrl-C there is SIGINT. In raw mode Ctrl-C is the byte 0x03, which
// ctrlCReader turns into the end of the line, flagged.
type ttyLines struct {
	fd   int
	in   *ctrlCReader
	t    *term.Terminal
	mu   sync.Mutex
	raw  *term.State // while a line is read, the state to restore
	hist *chatHistory
}

func newTTYLines(in *os.File, out io.Writer, prompt string) *ttyLines {
	l := &ttyLines{fd: int(in.Fd()), in: &ctrlCReader{r: in}}
	l.hist = &chatHistory{skip: func() bool { return l.in.interrupted }}
	l.hist.open(historyPath())
	l.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{l.in, out}, prompt)
	l.t.History = l.hist
	return l
}

// SetPrompt sets the prompt of the lines to come.
func (l *ttyLines) SetPrompt(s string) { l.t.SetPrompt(s) }

func (l *ttyLines) ReadLine() (string, error) {
	old, err := term.MakeRaw(l.fd)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.raw = old
	l.mu.Unlock()
	defer l.restore()
	if w, h, err := term.GetSize(l.fd); err == nil && w > 0 {
		l.t.SetSize(w, h)
	}
	l.in.interrupted = false
	line, err := l.t.ReadLine()
	if err != nil {
		return "", err
	}
	if l.in.interrupted {
		return line, errInterrupt
	}
	return line, nil
}

// restore puts the terminal back in the mode it had before ReadLine (once).
func (l *ttyLines) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.raw != nil {
		term.Restore(l.fd, l.raw)
		l.raw = nil
	}
}

// ctrlCReader passes a terminal's bytes to x/term's line editor, Ctrl-C
// (0x03) made an Enter that it flags: the editor returns the line typed so
// far, which the chat drops. (x/term returns io.EOF for Ctrl-C, as for
// Ctrl-D, and keeps the line typed.)
type ctrlCReader struct {
	r           io.Reader
	pending     []byte
	buf         [256]byte
	interrupted bool
}

func (c *ctrlCReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pending) == 0 {
		n, err := c.r.Read(c.buf[:])
		if n == 0 {
			return 0, err
		}
		c.pending = c.buf[:n]
	}
	if i := bytes.IndexByte(c.pending, 3); i >= 0 {
		if i > 0 { // what comes before it first, as its own read
			n := copy(p, c.pending[:i])
			c.pending = c.pending[n:]
			return n, nil
		}
		c.pending = c.pending[1:]
		c.interrupted = true
		p[0] = '\r'
		return 1, nil
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// chatHistory is the line editor's history: no empty lines, no line twice
// in a row, no line dropped by Ctrl-C; at most 1000. Kept across sessions
// in a file of the user's own (0600), as Ollama keeps ~/.ollama/history:
// historyPath says where, and MOLTBOT_NOHISTORY=1 keeps none.
type chatHistory struct {
	lines []string // oldest first
	skip  func() bool
	file  *os.File // appended to; nil: the session's alone
}

const historyMax = 1000

// historyPath is where the chat's history is kept: $XDG_STATE_HOME/moltbot/
// history, else ~/.local/state/moltbot/history; "" with MOLTBOT_NOHISTORY
// set (to anything but 0 or false) or no home.
func historyPath() string {
	if v := os.Getenv("MOLTBOT_NOHISTORY"); v != "" && v != "0" && v != "false" {
		return ""
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "moltbot", "history")
}

// open reads the last historyMax lines of path and appends to it from
// then on (a file grown past twice that is cut back first). A file it
// cannot read or write leaves the history to the session, silently: the
// chat works without it.
func (h *chatHistory) open(path string) {
	if path == "" || os.MkdirAll(filepath.Dir(path), 0o700) != nil {
		return
	}
	if b, err := os.ReadFile(path); err == nil {
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(all) == 1 && all[0] == "" {
			all = nil
		}
		h.lines = all[max(0, len(all)-historyMax):]
		if len(all) > 2*historyMax {
			_ = os.WriteFile(path, []byte(strings.Join(h.lines, "\n")+"\n"), 0o600)
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	_ = f.Chmod(0o600) // a file made looser by hand
	h.file = f
}

func (h *chatHistory) Add(s string) {
	if strings.TrimSpace(s) == "" || h.skip() || (len(h.lines) > 0 && h.lines[len(h.lines)-1] == s) {
		return
	}
	if len(h.lines) == historyMax {
		h.lines = h.lines[1:]
	}
	h.lines = append(h.lines, s)
	if h.file != nil && !strings.ContainsAny(s, "\n\r") {
		_, _ = h.file.WriteString(s + "\n")
	}
}

func (h *chatHistory) Len() int { return len(h.lines) }

func (h *chatHistory) At(i int) string { return h.lines[len(h.lines)-1-i] }

// isTerminal: f is an *os.File on a terminal.
func isTerminal(f any) (*os.File, bool) {
	if file, ok := f.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		return file, true
	}
	return nil, false
}

// chatSession is one run of `moltbot chat`.
type chatSession struct {
	cc     *chatClient
	id     string
	system string
	model  string
	out    *bufio.Writer // replies
	errw   io.Writer     // everything else
	sigs   chan os.Signal
}

// interruptible runs fn with a context that SIGINT cancels; it reports
// whether one did. A SIGINT that came before is dropped.
func (s *chatSession) interruptible(fn func(ctx context.Context) error) (interrupted bool, err error) {
	for len(s.sigs) > 0 {
		<-s.sigs
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, joined := make(chan struct{}), make(chan bool)
	go func() {
		select {
		case <-s.sigs:
			cancel()
			<-done
			joined <- true
		case <-done:
			joined <- false
		}
	}()
	err = fn(ctx)
	close(done)
	return <-joined, err
}

// printMessages prints the user's and the assistant's messages of a
// conversation, the last max of them (max < 0: all), saying how many were
// left out.
func (s *chatSession) printMessages(msgs []chatMessage, max int) {
	var shown []chatMessage
	for _, m := range msgs {
		if (m.Role == "user" || m.Role == "assistant") && strings.TrimSpace(m.Content) != "" {
			shown = append(shown, m)
		}
	}
	if max >= 0 && len(shown) > max {
		fmt.Fprintf(s.errw, "(%d earlier messages not shown; /history shows them all)\n", len(shown)-max)
		shown = shown[len(shown)-max:]
	}
	for _, m := range shown {
		if m.Role == "user" {
			fmt.Fprintf(s.errw, "> %s\n", m.Content)
			continue
		}
		fmt.Fprint(s.errw, m.Content)
		if !strings.HasSuffix(m.Content, "\n") {
			fmt.Fprintln(s.errw)
		}
	}
}

// command runs a line that starts with "/"; it reports whether the chat
// ends.
func (s *chatSession) command(line string) (quit bool) {
	name := strings.Fields(line)[0]
	switch name {
	case "/quit", "/bye", "/exit":
		return true
	case "/help", "/?":
		fmt.Fprint(s.errw, chatHelp)
	case "/id":
		fmt.Fprintln(s.errw, s.id)
	case "/new":
		var id string
		if _, err := s.interruptible(func(ctx context.Context) (err error) {
			id, err = s.cc.create(ctx, s.system, s.model)
			return err
		}); err != nil {
			fmt.Fprintln(s.errw, "error:", err)
			return false
		}
		s.id = id
		fmt.Fprintf(s.errw, "conversation %s\n", id)
	case "/history":
		var msgs []chatMessage
		if _, err := s.interruptible(func(ctx context.Context) (err error) {
			msgs, err = s.cc.messages(ctx, s.id)
			return err
		}); err != nil {
			fmt.Fprintln(s.errw, "error:", err)
			return false
		}
		s.printMessages(msgs, -1)
	default:
		fmt.Fprintf(s.errw, "unknown command %s; /help lists them\n", name)
	}
	return false
}

// send streams the reply to one message; Ctrl-C (SIGINT) cancels it.
func (s *chatSession) send(text string) {
	var served string
	nl := true
	interrupted, err := s.interruptible(func(ctx context.Context) (err error) {
		served, nl, err = s.cc.turn(ctx, s.id, text, s.out)
		return err
	})
	if !nl {
		s.out.WriteString("\n")
	}
	s.out.Flush()
	switch {
	case interrupted:
		fmt.Fprintln(s.errw, "  (reply canceled)")
	case err != nil:
		fmt.Fprintln(s.errw, "error:", err)
	default:
		fmt.Fprintf(s.errw, "  (served by %s)\n", served)
	}
}

// loop reads lines until the end of input or /bye.
func (s *chatSession) loop(lines lineReader) error {
	for {
		raw, err := lines.ReadLine()
		if errors.Is(err, errInterrupt) {
			if strings.TrimSpace(raw) == "" {
				fmt.Fprintln(s.errw, "Use Ctrl+D or /bye to exit.")
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(s.errw)
			return nil
		}
		if err != nil {
			return fail(1, "reading input: %v", err)
		}
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, `"""`) {
			// A message of several lines, between """ and """ (Ollama's
			// way): Ctrl-C drops it, the end of input quits.
			text, done, err := multiLine(lines, line)
			if err != nil {
				fmt.Fprintln(s.errw)
				return nil
			}
			if done && strings.TrimSpace(text) != "" {
				s.send(text)
			}
			continue
		}
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "//"):
			line = line[1:]
		case strings.HasPrefix(line, "/"):
			if s.command(line) {
				return nil
			}
			continue
		}
		s.send(line)
	}
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:  "chat",
		Usage: "chat with a node in the terminal",
		Description: `An interactive chat: type a message, the reply streams back as it is generated,
followed by the model that served it. The conversation lives on the node and
survives restarts: resume it with --conversation, which shows its last
messages first (an id the node does not have is an error at start).

Commands, answered by the chat itself (never sent to the model): /new (a
fresh conversation), /id (its id), /history (its messages), /help or /?,
/bye or /quit. Any other line that starts with "/" is an unknown command;
"//text" sends "/text".

Ctrl+C cancels the reply that streams (the node keeps your message) and
returns to the prompt; at the prompt it says how to leave: Ctrl+D on an
empty line, or /bye. On a terminal the line can be edited (left/right,
Ctrl+A/E, backspace, Ctrl+U/W/K) and earlier lines recalled (up/down).
When input is not a terminal (a pipe, a file) lines are read as they come
and the end of input quits.

Examples:
   moltbot chat
   moltbot chat --url http://10.0.0.5:3000 --conversation c_abc123
   moltbot chat --url https://moltbot.lan:3000 --ca-file ca.pem
   echo "hello" | moltbot chat --system "answer in French"`,
		Flags: []cli.Flag{
			urlFlag(),
			&cli.StringFlag{Name: "conversation", Usage: "resume this conversation id (its last messages are shown first)"},
			&cli.StringFlag{Name: "system", Usage: "system prompt of a new conversation"},
			&cli.StringFlag{Name: "model", Usage: `model of a new conversation ("moltbot" = the configured chain, or provider/model)`},
			apiKeyFlag(),
			caFileFlag(),
		},
		Action: func(c *cli.Context) error {
			hc, err := httpClient(c)
			if err != nil {
				return err
			}
			base, err := nodeURL(c)
			if err != nil {
				return err
			}
			s := &chatSession{
				cc:     &chatClient{url: base, key: c.String("api-key"), http: hc},
				system: c.String("system"),
				model:  c.String("model"),
				out:    bufio.NewWriter(c.App.Writer),
				errw:   c.App.ErrWriter,
				sigs:   make(chan os.Signal, 1),
			}
			signal.Notify(s.sigs, os.Interrupt)
			defer signal.Stop(s.sigs)
			defer s.out.Flush()

			s.id = c.String("conversation")
			var past []chatMessage
			interrupted, err := s.interruptible(func(ctx context.Context) (err error) {
				if s.id == "" {
					s.id, err = s.cc.create(ctx, s.system, s.model)
					return err
				}
				past, err = s.cc.messages(ctx, s.id)
				return err
			})
			switch {
			case interrupted:
				return fail(130, "interrupted")
			case errors.Is(err, errNoConversation):
				return fail(1, "--conversation %s: no such conversation on the node at %s (leave out --conversation to start a new one)", s.id, base)
			case err != nil && c.String("conversation") != "":
				return fail(1, "--conversation %s: %v", s.id, err)
			case err != nil:
				return fail(1, "%v", err)
			}

			in, inTTY := isTerminal(c.App.Reader)
			ttyOut, outTTY := isTerminal(c.App.ErrWriter)
			tty := inTTY && outTTY
			if c.String("conversation") != "" {
				fmt.Fprintf(s.errw, "conversation %s (resumed; /help lists the commands, Ctrl+D or /bye quits)\n", s.id)
				s.printMessages(past, chatResumeShown)
			} else {
				fmt.Fprintf(s.errw, "conversation %s (/help lists the commands, Ctrl+D or /bye quits)\n", s.id)
			}
			if !tty {
				lines := newPlainLines(c.App.Reader, s.errw, "> ", s.sigs)
				defer lines.Close()
				return s.loop(lines)
			}
			lines := newTTYLines(in, ttyOut, "> ")
			defer lines.restore()
			// SIGTERM while a line is read: put the terminal back first.
			terms := make(chan os.Signal, 1)
			signal.Notify(terms, sigterm)
			defer signal.Stop(terms)
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-terms:
					lines.restore()
					os.Exit(143)
				case <-done:
				}
			}()
			return s.loop(lines)
		},
	}
}

// multiLine reads a message of several lines that began with first (which
// starts with """) up to the line that ends with """: the text between,
// with its line breaks. done is false when Ctrl-C dropped it; an error is
// the end of input.
func multiLine(lines lineReader, first string) (text string, done bool, err error) {
	rest := strings.TrimPrefix(first, `"""`)
	if len(rest) >= 3 && strings.HasSuffix(rest, `"""`) {
		return strings.TrimSuffix(rest, `"""`), true, nil
	}
	var b strings.Builder
	b.WriteString(rest)
	p, canPrompt := lines.(interface{ SetPrompt(string) })
	if canPrompt {
		p.SetPrompt("... ")
		defer p.SetPrompt("> ")
	}
	for {
		raw, err := lines.ReadLine()
		if errors.Is(err, errInterrupt) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		if b.Len() > 0 || rest != "" {
			b.WriteByte('\n')
		}
		if t := strings.TrimRight(raw, " \t"); strings.HasSuffix(t, `"""`) {
			b.WriteString(strings.TrimSuffix(t, `"""`))
			return strings.TrimRight(b.String(), "\n"), true, nil
		}
		b.WriteString(raw)
	}
}
