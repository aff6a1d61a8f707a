//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/moltbot/moltbot/internal/testutil"
)

// openPTY opens a pseudo-terminal pair (/dev/ptmx, then its /dev/pts/N),
// 200 columns by 50 rows.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	ioctl := func(f *os.File, req uintptr, arg unsafe.Pointer) error {
		rc, err := f.SyscallConn()
		if err != nil {
			return err
		}
		var errno syscall.Errno
		if err := rc.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
		}); err != nil {
			return err
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
	var unlock int32
	var n uint32
	if err := ioctl(m, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		m.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	if err := ioctl(m, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		m.Close()
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	ws := struct{ row, col, x, y uint16 }{50, 200, 0, 0}
	if err := ioctl(s, syscall.TIOCSWINSZ, unsafe.Pointer(&ws)); err != nil {
		t.Fatalf("window size: %v", err)
	}
	return m, s
}

// ptyProc is `moltbot ARGS` (the test binary as moltbot) on a
// pseudo-terminal: its controlling terminal, stdin, stdout and stderr.
type ptyProc struct {
	t       *testing.T
	master  *os.File
	out     *syncBuf      // all it wrote
	mark    int           // expect looks after this
	done    chan struct{} // the process exited (err)
	err     error
	drained chan struct{} // and all it wrote has been read
}

func startPTY(t *testing.T, args ...string) *ptyProc {
	t.Helper()
	master, slave := openPTY(t)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MOLTBOT_TEST_MAIN=1", "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	p := &ptyProc{t: t, master: master, out: &syncBuf{}, done: make(chan struct{}), drained: make(chan struct{})}
	read := p.drained
	go func() { // until the child and every copy of the slave are gone (EIO)
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		master.Close()
		<-read
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in moltbot %v", args)
		}
		if t.Failed() || os.Getenv("CHAT_PTY_SHOW") != "" {
			t.Logf("the terminal of moltbot %v:\n%q", args, p.out.String())
		}
	})
	return p
}

// send types s on the terminal.
func (p *ptyProc) send(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatalf("typing %q: %v", s, err)
	}
}

// expect waits (20 s at most) for want in what the process wrote after
// the mark, moves the mark past it and returns what came before it.
func (p *ptyProc) expect(want string) string {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.out.String()
		if i := strings.Index(s[p.mark:], want); i >= 0 {
			before := s[p.mark : p.mark+i]
			p.mark += i + len(want)
			return before
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q within 20s; after the mark:\n%q", want, s[p.mark:])
		}
		select {
		case <-p.drained: // the process and its terminal are gone
			if s := p.out.String(); !strings.Contains(s[p.mark:], want) {
				p.t.Fatalf("the process exited (%v) without writing %q; after the mark:\n%q", p.err, want, s[p.mark:])
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// alive fails the test if the process has exited.
func (p *ptyProc) alive() {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("the chat exited (%v)", p.err)
	default:
	}
}

// exitCode waits (20 s at most) for the process to exit.
func (p *ptyProc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatal("the chat did not exit within 20s")
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

// `moltbot chat` on a pseudo-terminal, as a person uses it: the reply
// streams; /help is answered by the chat and never reaches the node;
// Ctrl-C while a reply streams cancels that reply only (the chat goes on,
// the node kept the message) and Ctrl-C at the prompt says how to leave;
// up-arrow recalls the line before; Ctrl-D quits with 0; --conversation
// shows the past turns before the prompt.
func TestChatPTY(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state) // the history file, the test's own
	// 150 tokens 20 ms apart: a reply streams for 3 s, long enough to be
	// interrupted once its first token has been seen.
	n, _ := startNodeIn(t, t.TempDir(), `server: {host: 127.0.0.1, port: 0}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 20ms, tokens: 150}}
models: {primary: sim/sim}
`, slog.LevelWarn)
	p := startPTY(t, "chat", "--url", n.URL())
	p.expect("conversation ")
	id := strings.Fields(p.expect("\n"))[0]
	p.expect("> ")

	// A message: its reply streams, then the model that served it.
	p.send("hello there\r")
	p.expect("[simulated]")
	p.expect("(served by sim/sim)")
	p.expect("> ")
	if got := getConv(t, n.URL(), id).Messages; len(got) != 2 || got[0].Content != "hello there" || got[1].Role != "assistant" {
		t.Fatalf("after one message: %+v", got)
	}

	// /help and /? are the chat's: the node gets no turn.
	p.send("/help\r")
	help := p.expect("> ")
	for _, want := range []string{"/new", "/id", "/history", "/bye", "Ctrl+C"} {
		if !strings.Contains(help, want) {
			t.Errorf("/help lacks %q:\n%s", want, help)
		}
	}
	p.send("/frobnicate now\r")
	if got := p.expect("> "); !strings.Contains(got, "unknown command /frobnicate; /help lists them") {
		t.Errorf("an unknown command: %q", got)
	}
	if got := getConv(t, n.URL(), id).Messages; len(got) != 2 {
		t.Fatalf("/help or an unknown command reached the node: %+v", got)
	}

	// Ctrl-C while the reply streams: the reply stops, the prompt is back,
	// the chat is alive; the node kept the message.
	p.send("tell me a very long story about a lighthouse keeper\r")
	p.expect("[simulated]")
	p.send("\x03")
	canceled := p.expect("(reply canceled)")
	if strings.Contains(canceled, "served by") {
		t.Fatalf("the reply was not canceled: %q", canceled)
	}
	p.expect("> ")
	p.alive()
	testutil.Eventually(t, 10*time.Second, "the node keeps the canceled turn's message", func() bool {
		for _, m := range getConv(t, n.URL(), id).Messages {
			if m.Role == "user" && strings.Contains(m.Content, "lighthouse keeper") {
				return true
			}
		}
		return false
	})

	// Another message works.
	p.send("second message\r")
	p.expect("[simulated]")
	p.expect("(served by sim/sim)")
	p.expect("> ")

	// Up-arrow recalls the line before (sent again, it is a new turn).
	p.send("\x1b[A")
	p.expect("second message")
	p.send("\r")
	p.expect("(served by sim/sim)")
	p.expect("> ")
	msgs := getConv(t, n.URL(), id).Messages
	if last := msgs[len(msgs)-2]; last.Role != "user" || last.Content != "second message" {
		t.Fatalf("up-arrow did not send the line before again: %+v", msgs)
	}
	users := 0
	for _, m := range msgs {
		if m.Role == "user" {
			users++
		}
	}
	if users != 4 {
		t.Fatalf("want 4 user messages (hello, the canceled one, second twice): %+v", msgs)
	}

	// Line editing: type, go home (Ctrl-A), fix the start, end (Ctrl-E),
	// delete a word (Ctrl-W), then send.
	p.send("xxx\x01\x1b[3~\x1b[3~\x1b[3~/id\x05 junk\x17\r")
	if got := p.expect("> "); !strings.Contains(got, id) {
		t.Errorf("the edited line was not /id: %q", got)
	}

	// Ctrl-C at the prompt: the hint, and the chat goes on; a line typed
	// and dropped by Ctrl-C is not sent.
	p.send("\x03")
	p.expect("Use Ctrl+D or /bye to exit.")
	p.expect("> ")
	p.send("never sent\x03")
	p.expect("> ")
	p.alive()
	if got := getConv(t, n.URL(), id).Messages; len(got) != len(msgs) {
		t.Fatalf("Ctrl-C at the prompt sent something: %+v", got)
	}

	// Ctrl-D on an empty line quits, with 0.
	p.send("\x04")
	if code := p.exitCode(); code != 0 {
		t.Fatalf("Ctrl-D: exit %d", code)
	}

	// Resuming shows the past turns before the prompt.
	r := startPTY(t, "chat", "--url", n.URL(), "--conversation", id)
	r.expect("conversation " + id)
	past := r.expect("> second message")
	for _, want := range []string{"> hello there", "[simulated]", "> tell me a very long story"} {
		if !strings.Contains(past, want) {
			t.Errorf("resuming does not show %q:\n%s", want, past)
		}
	}
	r.expect("> second message") // sent twice
	r.expect("[simulated]")
	r.expect("\n> ") // the prompt
	// The history outlives the session (as Ollama's does): up-arrow
	// recalls the first session's last line, /id.
	r.send("\x1b[A\r")
	if got := r.expect("> "); !strings.Contains(got, id) {
		t.Errorf("up-arrow in a new session did not recall /id: %q", got)
	}
	r.send("/bye\r")
	if code := r.exitCode(); code != 0 {
		t.Fatalf("/bye: exit %d", code)
	}
	path := filepath.Join(state, "moltbot", "history")
	st, err := os.Stat(path)
	b, _ := os.ReadFile(path)
	if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(string(b), "hello there\n") || strings.Contains(string(b), "never sent") {
		t.Errorf("history file: %v %v %q", err, st, b)
	}
	// MOLTBOT_NOHISTORY keeps none.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("MOLTBOT_NOHISTORY", "1")
	if historyPath() != "" {
		t.Error("MOLTBOT_NOHISTORY=1 still keeps a history")
	}
}
