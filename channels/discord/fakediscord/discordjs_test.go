package fakediscord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const jsDir = "../../../test/channels/discord"

// needDiscordJS skips unless node 18+ and the lock's discord.js are
// installed (make test runs npm ci there first).
func needDiscordJS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node on PATH: the discord.js check of the fake needs Node 18 or later (make test installs discord.js with npm ci)")
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Skipf("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if major, _ := strconv.Atoi(strings.Split(v, ".")[0]); major < 18 {
		t.Skipf("node %s: discord.js needs Node 18 or later", v)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(jsDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	want := lock.Packages["node_modules/discord.js"].Version
	b, err = os.ReadFile(filepath.Join(jsDir, "node_modules", "discord.js", "package.json"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("discord.js is not installed in test/channels/discord: run make acceptance-deps (npm ci there)")
	}
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version string `json:"version"`
	}
	json.Unmarshal(b, &got)
	if got.Version != want {
		t.Fatalf("discord.js %s in test/channels/discord/node_modules, the lock says %s: run make acceptance-deps", got.Version, want)
	}
}

// TestDiscordJS runs discord.js, Discord's own client library, against
// the fake: if the fake spoke the protocol wrong, discord.js would not
// log in, see the messages, reply, take the 429 or resume.
func TestDiscordJS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node")
	}
	needDiscordJS(t)
	f := New(Options{HeartbeatInterval: 2 * time.Second})
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check.mjs")
	cmd.Dir = jsDir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "FAKE_DISCORD_URL=" + f.URL, "FAKE_DISCORD_TOKEN=test-token"}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	step := func(prefix string) string {
		t.Helper()
		e, ok := f.Wait(prefix, 60*time.Second)
		if !ok {
			cancel()
			<-exited
			t.Fatalf("no %q; fake log %v\nstdout %s\nstderr %s", prefix, f.Log(), stdout.String(), stderr.String())
		}
		return e
	}
	if e := step("identify"); e != "identify intents=37377" {
		t.Errorf("%s: want GUILDS|GUILD_MESSAGES|DIRECT_MESSAGES|MESSAGE_CONTENT", e)
	}
	step("heartbeat") // discord.js beats and takes the ACKs
	f.Throttle(1, 200*time.Millisecond, false)
	f.MessageCreate(Message{ID: "1300000000000000001", Content: "<@" + BotID + "> first"})
	step("429")
	step("message " + ChannelID)
	f.Reconnect() // op 7: discord.js resumes on resume_gateway_url
	step("connect /resume")
	step("resume")
	f.MessageCreate(Message{ID: "1300000000000000002", Channel: DMID, Content: "second"})
	step("message " + DMID)
	iid, _ := f.InteractionCreate("what is moltbot?", time.Hour)
	if e := step("callback"); e != "callback "+iid+" 5" {
		t.Errorf("%s: discord.js's deferReply, want type 5 for %s", e, iid)
	}
	step("webhook")
	if err := <-exited; err != nil {
		t.Fatalf("node check.mjs: %v\nstdout %s\nstderr %s", err, stdout.String(), stderr.String())
	}
	var out struct {
		Ready struct {
			User, Application string
			Bot               bool
			Guilds, Channels  []string
		}
		Messages     []struct{ ID, Channel, Guild, Author, Content string }
		Replies      []struct{ ID, Content, Channel string }
		Interactions []struct{ ID, Command, Text, User, FollowUp string }
		Errors       []string
		Debug        []string
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("check.mjs printed no JSON: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if len(out.Errors) > 0 {
		t.Errorf("discord.js errors: %v", out.Errors)
	}
	if out.Ready.User != BotID || !out.Ready.Bot || out.Ready.Application != AppID || len(out.Ready.Guilds) != 1 || out.Ready.Guilds[0] != GuildID {
		t.Errorf("ready: %+v", out.Ready)
	}
	if len(out.Messages) != 2 || out.Messages[0].Content != "<@"+BotID+"> first" || out.Messages[0].Guild != GuildID ||
		out.Messages[1].Content != "second" || out.Messages[1].Channel != DMID || out.Messages[0].Author != UserID {
		t.Errorf("messages: %+v", out.Messages)
	}
	created := f.Created()
	if len(created) != 3 || created[0].Reference != "1300000000000000001" || created[1].Reference != "1300000000000000002" ||
		created[0].Content != "echo: <@"+BotID+"> first" || string(created[0].AllowedMentions) == "" {
		t.Errorf("created: %+v", created)
	}
	if len(out.Replies) != 2 || out.Replies[0].ID != created[0].ID || out.Replies[1].Channel != DMID {
		t.Errorf("replies as discord.js saw them: %+v", out.Replies)
	}
	if len(out.Interactions) != 1 || out.Interactions[0].ID != iid || out.Interactions[0].Command != "ask" ||
		out.Interactions[0].Text != "what is moltbot?" || out.Interactions[0].User != UserID {
		t.Errorf("interactions as discord.js saw them: %+v", out.Interactions)
	}
	if c := f.Created(); len(c) != 3 || !c[2].Webhook || c[2].Content != "answer to what is moltbot?" || c[2].ID != out.Interactions[0].FollowUp {
		t.Errorf("the follow-up: %+v", c)
	}
	log := strings.Join(f.Log(), "\n")
	if strings.Count(log, "identify") != 1 {
		t.Errorf("discord.js identified more than once (the resume failed?):\n%s", log)
	}
	t.Logf("discord.js debug: %v", out.Debug)
}
