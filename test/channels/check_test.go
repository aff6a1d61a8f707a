// Package channels checks the channel adapters' fake platforms against
// the platforms' official npm clients: grammy against faketelegram,
// @larksuiteoapi/node-sdk against fakefeishu. A fake that the real client
// accepts speaks the real protocol, so the adapters' tests against it
// mean something. Each client lives in its own directory here with its
// package.json and lock (make acceptance-deps runs npm ci in them);
// without Node 20+ or the packages installed, the tests skip, saying why.
package channels

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/channels/feishu/fakefeishu"
	"github.com/moltbot/moltbot/channels/telegram/faketelegram"
)

// needNode skips unless Node 20+ is on PATH and dir's npm packages are
// installed at the versions its lock pins.
func needNode(t *testing.T, dir string, pkgs ...string) {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: the npm client checks need Node 20 or later (make acceptance-deps installs their packages)")
	}
	out, err := exec.Command(nodeBin, "--version").Output()
	if err != nil {
		t.Skipf("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if major, _ := strconv.Atoi(strings.Split(v, ".")[0]); major < 20 {
		t.Skipf("node %s: the npm client checks need Node 20 or later", v)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range pkgs {
		want := lock.Packages["node_modules/"+pkg].Version
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", pkg, "package.json"))
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("npm package %s is not installed in test/channels/%s: run make acceptance-deps (npm ci there)", pkg, dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Version string `json:"version"`
		}
		json.Unmarshal(b, &got)
		if got.Version != want {
			t.Fatalf("npm package %s is %s in test/channels/%s, the lock says %s: run make acceptance-deps", pkg, got.Version, dir, want)
		}
	}
}

// script runs node dir/check.mjs with env; each line it prints that
// starts with "LISTEN " goes to listen (whose return closes the script's
// stdin); the "RESULT " line is decoded into out.
func script(t *testing.T, dir string, env []string, listen func(url string), out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var result string
	var printed []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	closed := false
	for sc.Scan() {
		line := sc.Text()
		printed = append(printed, line)
		switch {
		case strings.HasPrefix(line, "LISTEN "):
			if listen != nil {
				listen(strings.TrimPrefix(line, "LISTEN "))
			}
			stdin.Close()
			closed = true
		case strings.HasPrefix(line, "RESULT "):
			result = strings.TrimPrefix(line, "RESULT ")
		}
	}
	if !closed {
		stdin.Close()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node %s/check.mjs: %v\nstdout:\n%s\nstderr:\n%s", dir, err, strings.Join(printed, "\n"), stderr.String())
	}
	if err := json.Unmarshal([]byte(result), out); err != nil {
		t.Fatalf("node %s/check.mjs printed no RESULT: %v\nstdout:\n%s\nstderr:\n%s", dir, err, strings.Join(printed, "\n"), stderr.String())
	}
}

func TestGrammyAgainstFakeTelegram(t *testing.T) {
	needNode(t, "telegram", "grammy")
	const token = "424242:GrammyCheckToken_x"
	fake := faketelegram.New(token)
	defer fake.Close()
	fake.Push(faketelegram.Text(1001, "private", 7, false, "hello grammy", 55))
	fake.RateLimit(2002, 7)

	var res struct {
		Polled struct {
			Chat int64
			Text string
			From int64
			Me   string
		}
		PollError string
		Limited   struct {
			Name       string
			Code       int
			RetryAfter int `json:"retry_after"`
		}
		Webhook []string
	}
	var hookCodes []int
	listen := func(url string) {
		ctx := context.Background()
		for _, c := range []struct {
			secret, text string
		}{{"", "no secret"}, {"wrong", "wrong secret"}, {"hook_Secret-1", "through the hook"}} {
			u := faketelegram.Text(1003, "private", 8, false, c.text, 60+int64(len(hookCodes)))
			u["update_id"] = 9000 + len(hookCodes)
			code, err := faketelegram.PostWebhook(ctx, url, c.secret, u)
			if err != nil {
				t.Error(err)
			}
			hookCodes = append(hookCodes, code)
		}
	}
	script(t, "telegram", []string{"TG_API=" + fake.URL(), "TG_TOKEN=" + token, "TG_LIMITED_CHAT=2002"}, listen, &res)

	if res.PollError != "" {
		t.Fatalf("grammy's polling failed: %s", res.PollError)
	}
	if res.Polled.Chat != 1001 || res.Polled.Text != "hello grammy" || res.Polled.From != 7 || res.Polled.Me != fake.BotUsername {
		t.Errorf("grammy polled %+v", res.Polled)
	}
	if fake.Calls("getUpdates") == 0 || fake.Calls("deleteWebhook") == 0 {
		t.Errorf("grammy's start: %d getUpdates, %d deleteWebhook", fake.Calls("getUpdates"), fake.Calls("deleteWebhook"))
	}
	if fake.Pending() != 0 {
		t.Errorf("%d updates left unconfirmed after grammy stopped", fake.Pending())
	}
	if res.Limited.Name != "GrammyError" || res.Limited.Code != 429 || res.Limited.RetryAfter != 7 {
		t.Errorf("grammy on a 429: %+v", res.Limited)
	}
	if len(hookCodes) != 3 || hookCodes[0] != 401 || hookCodes[1] != 401 || hookCodes[2] != 200 {
		t.Errorf("the webhook POSTs (none, wrong, right secret): %v, want 401 401 200", hookCodes)
	}
	if len(res.Webhook) != 1 || res.Webhook[0] != "through the hook" {
		t.Errorf("grammy's webhook took %q", res.Webhook)
	}
	sent := fake.Sent()
	if len(sent) != 2 || sent[0].ChatID != 1001 || sent[0].Text != "echo: hello grammy" || sent[0].ReplyTo != 55 ||
		sent[1].ChatID != 1003 || sent[1].Text != "hook: through the hook" {
		t.Errorf("sent %+v", sent)
	}
}

func TestLarkSDKAgainstFakeFeishu(t *testing.T) {
	needNode(t, "feishu", "@larksuiteoapi/node-sdk")
	const (
		appID, secret = "cli_sdkcheck", "sdk-check-secret"
		ekey, vtok    = "sdk-encrypt-key", "sdk-verification-token"
	)
	fake := fakefeishu.New(appID, secret)
	defer fake.Close()

	type event struct {
		Body    string            `json:"body"`
		Headers map[string]string `json:"headers"`
	}
	lower := func(h http.Header) map[string]string {
		m := map[string]string{}
		for k := range h {
			m[strings.ToLower(k)] = h.Get(k)
		}
		return m
	}
	good := fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "ev-sdk-1", "om_sdk1", "oc_sdk", "p2p", "user", "ou_u1", "你好 lark"))
	bad := fakefeishu.Encrypt(ekey, fakefeishu.Event(vtok, "ev-sdk-2", "om_sdk2", "oc_sdk", "p2p", "user", "ou_u1", "forged"))
	badHeaders := lower(fakefeishu.Sign(ekey, time.Now(), bad))
	badHeaders["x-lark-signature"] = strings.Repeat("a", 64)
	events, _ := json.Marshal([]event{
		{Body: string(good), Headers: lower(fakefeishu.Sign(ekey, time.Now(), good))},
		{Body: string(bad), Headers: badHeaders},
	})
	challenge := fakefeishu.Encrypt(ekey, fakefeishu.Challenge(vtok, "ch-sdk"))

	var res struct {
		Create, Reply struct {
			Code      int
			MessageID string `json:"message_id"`
		}
		Events []struct {
			EventID   string `json:"event_id"`
			Token     string
			MessageID string `json:"message_id"`
			ChatType  string `json:"chat_type"`
			Text      string
		}
		Invoked   []any
		Challenge map[string]string
	}
	script(t, "feishu", []string{"FS_API=" + fake.URL(), "FS_APP_ID=" + appID, "FS_APP_SECRET=" + secret,
		"FS_ENCRYPT_KEY=" + ekey, "FS_VERIFICATION_TOKEN=" + vtok, "FS_EVENTS=" + string(events), "FS_CHALLENGE=" + string(challenge)}, nil, &res)

	if res.Create.Code != 0 || res.Create.MessageID == "" || res.Reply.Code != 0 || res.Reply.MessageID == "" {
		t.Errorf("the SDK's create %+v, reply %+v", res.Create, res.Reply)
	}
	if n := fake.TokenCalls(); n != 1 {
		t.Errorf("the SDK asked for %d tenant tokens, want 1 (then cached)", n)
	}
	sent := fake.Sent()
	if len(sent) != 2 || sent[0].ChatID != "oc_sdk" || sent[0].Text != "from the sdk" || sent[1].ReplyTo != "om_user1" ||
		sent[1].Text != "a reply" || !strings.HasPrefix(sent[0].Token, "t-") {
		t.Errorf("sent %+v", sent)
	}
	if len(res.Events) != 1 || res.Events[0].EventID != "ev-sdk-1" || res.Events[0].MessageID != "om_sdk1" ||
		res.Events[0].Text != "你好 lark" || res.Events[0].Token != vtok || res.Events[0].ChatType != "p2p" {
		t.Errorf("the SDK's dispatcher decoded %+v, want ev-sdk-1 only", res.Events)
	}
	if len(res.Invoked) != 2 || res.Invoked[0] != "handled" || res.Invoked[1] != nil {
		t.Errorf("the dispatcher answered %v, want [handled null] (the second's signature is wrong)", res.Invoked)
	}
	if res.Challenge["type"] != "url_verification" || res.Challenge["challenge"] != "ch-sdk" {
		t.Errorf("the SDK's AESCipher read the challenge as %v", res.Challenge)
	}
}
