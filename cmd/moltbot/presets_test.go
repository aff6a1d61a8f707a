package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/configs"
)

const presetsConfig = `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 64}}
models: {primary: sim/sim}
skills:
  presets:
    - {name: support-faq, use: faq, with: {file: faq.yaml}}
    - {name: pii, use: guard, with: {blocklist: [坏蛋, darn]}}
    - {name: calc, use: tools}
    - {name: mood, use: sentiment}
`

const presetsFAQ = `- q: [退货政策是什么？, "What is the return policy?"]
  a: 30 天内可无理由退货。Returns within 30 days.
`

// startPresetsNode starts a node on a new workspace with the simulator as
// its model and config's presets.
func startPresetsNode(t *testing.T, config string) (*Node, *syncBuf) {
	t.Helper()
	return startPresetsNodeIn(t, filepath.Join(t.TempDir(), "ws"), config)
}

// startPresetsNodeIn starts it on ws (a workspace it made before: the
// same data).
func startPresetsNodeIn(t *testing.T, ws, config string) (*Node, *syncBuf) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(ws, "skills"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "skills", "faq.yaml"), []byte(presetsFAQ), 0o600); err != nil {
		t.Fatal(err)
	}
	n, logs := startNodeIn(t, ws, config, slog.LevelInfo)
	return n, logs
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// The presets through the HTTP API, the simulator as the model: the faq
// and the tools answer without it; the guard masks the user's message
// before the model (the simulator's reply, a function of its prompt, is
// the one it gives the masked text) and the model's streamed reply as it
// streams (the simulator quotes a tool result that holds a phone number,
// a card and an e-mail address, a word at a time).
func TestPresetsThroughNode(t *testing.T) {
	n, logs := startPresetsNode(t, presetsConfig)
	ask := func(msg string) (string, string) { return askNode(t, n, msg) }

	if model, reply := ask("退货政策是什么"); reply != "30 天内可无理由退货。Returns within 30 days." || model != "preset/support-faq" {
		t.Errorf("faq: %q from %q", reply, model)
	}
	if model, reply := ask("what is the RETURN policy?"); reply != "30 天内可无理由退货。Returns within 30 days." {
		t.Errorf("faq (en): %q from %q", reply, model)
	}
	if model, reply := ask("(1+2)*3 等于多少？"); reply != "(1+2)*3 = 9" || model != "preset/calc" {
		t.Errorf("tools: %q from %q", reply, model)
	}
	if _, reply := ask("10公里等于多少英里"); reply != "10公里 = 6.21371英里" {
		t.Errorf("tools (units): %q", reply)
	}
	if _, reply := ask("2026-12-25是星期几"); reply != "2026-12-25 是星期五。" {
		t.Errorf("tools (dates): %q", reply)
	}

	// Input: the model gets the masked text.
	_, withPII := ask("我的邮箱是 alice@example.com，手机 13800138000")
	_, masked := ask("我的邮箱是 [email]，手机 [phone]")
	_, other := ask("我的邮箱是 bob，手机 110")
	if !strings.HasPrefix(withPII, "[simulated]") || withPII != masked || withPII == other {
		t.Errorf("the model did not get the masked message: %q, masked: %q, other: %q", withPII, masked, other)
	}

	// Output, streamed: no piece shows what is masked; the pieces add up
	// to the masked reply.
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json", strings.NewReader(guardedBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pieces []string
	for _, f := range sseFramesFrom(resp.Body) {
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(f), &ch); err != nil {
			t.Fatalf("%v: %s", err, f)
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != "" {
				pieces = append(pieces, c.Delta.Content)
			}
		}
	}
	text := strings.Join(pieces, "")
	want := guardedReply
	if text != want || len(pieces) < 5 {
		t.Errorf("streamed: %q in %d pieces %q, want %q", text, len(pieces), pieces, want)
	}
	leak := regexp.MustCompile(`\d{4}|@|darn`)
	for _, p := range pieces {
		if leak.MatchString(p) {
			t.Errorf("a piece shows what is masked: %q", p)
		}
	}

	for _, want := range []string{`"preset skill loaded"`, `"preset":"support-faq"`, `"preset":"pii"`, `"use":"sentiment"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %s in the logs", want)
		}
	}
}

// moltbot skills list shows the presets, and a preset that does not
// build (an FAQ that does not parse) is an error naming its file and line.
func TestPresetsList(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	if code, out, e := runCLI(t, "", "init", "--workspace", ws); code != 0 {
		t.Fatalf("init: %d %s %s", code, out, e)
	}
	cfg, err := os.ReadFile(filepath.Join(ws, "moltbot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte(`
skills:
  presets:
    - {name: support-faq, use: faq, with: {file: faq.yaml}}
    - {name: pii, use: guard, with: {action: refuse}}
    - {name: coder, use: code-gen, with: {model: code-generator}}
`)...)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSkill(t, ws, "faq.yaml", presetsFAQ)
	code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws)
	for _, want := range []string{"PRESET", "support-faq  faq", "1 curated answer(s)", "pii", "input (refuse)", "coder", "code-gen", "生成(.*)代码", "model: code-generator",
		"no skills: "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("list: want %q in %d %q %q", want, code, out, e)
		}
	}
	// skills test runs the presets first, the simulator as the model.
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "What is the return policy")
	if code != 0 || out != "preset: support-faq (faq)\nreply:\n30 天内可无理由退货。Returns within 30 days.\n" {
		t.Errorf("test (faq): %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "请帮我生成Go代码")
	for _, want := range []string{`model call 1: model "code-generator", 2 message(s), the last "请帮我生成Go代码"`, "answer (simulator): \"[simulated]", "preset: coder (code-gen)\nreply:\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("test (code-gen): want %q in %d %q %q", want, code, out, e)
		}
	}
	// What each preset did, and only that.
	cfgMood := append(slices.Clip(cfg), []byte("    - {name: mood, use: sentiment}\n")...)
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), cfgMood, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "服务太差了")
	if code != 0 || out != "preset mood (sentiment): note sentiment=negative\npreset mood (sentiment): note sentiment.score=-0.80\nno preset answers\nno skill matches\n" {
		t.Errorf("test (notes): %d %q %q", code, out, e)
	}
	if err := os.WriteFile(filepath.Join(ws, "moltbot.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "hello")
	if code != 0 || out != "no preset answers\nno skill matches\n" {
		t.Errorf("test (none): %d %q %q", code, out, e)
	}
	code, out, e = runCLI(t, "", "skills", "test", "--workspace", ws, "mail me: a@b.cn")
	if code != 0 || !strings.HasPrefix(out, "preset pii (guard): note pii.refused=true\npreset: pii (guard)\nreply:\n抱歉") {
		t.Errorf("test (guard refuses): %d %q %q", code, out, e)
	}

	writeSkill(t, ws, "faq.yaml", "- q: [a]\n  a: b\n- q: c\n  b: d\n")
	if code, out, e := runCLI(t, "", "skills", "list", "--workspace", ws); code != 1 || !strings.Contains(e, "skills/faq.yaml:4: [1]: b: unknown key (known: q, a)") ||
		!strings.Contains(e, "skills.presets[0] (support-faq)") {
		t.Errorf("list with a bad FAQ: %d %q %q", code, out, e)
	}
}

// README's presets example is a config that parses, and its FAQ a file
// that does.
func TestREADMEPresets(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Preset skills\n")
	if i < 0 {
		t.Fatal("README has no Preset skills section")
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(s[i:], 2)
	if len(blocks) != 2 {
		t.Fatalf("%d yaml blocks", len(blocks))
	}
	cfg, err := configs.Parse("README.md", []byte("providers:\n  - {name: sim, type: sim}\nmodels: {primary: sim/sim}\n"+blocks[0][1]), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Skills.Presets) != 9 {
		t.Errorf("%d presets", len(cfg.Skills.Presets))
	}
	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "skills"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "skills", "faq.yaml"), []byte(blocks[1][1]), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := buildPresets(cfg, ws)
	if err != nil {
		t.Fatal(err)
	}
	set := newPresetSet(ps, nil)
	if len(set.before) != 9 || len(set.around) != 1 {
		t.Errorf("%d stages before the model, %d around it", len(set.before), len(set.around))
	}
	st := &presetStage{}
	st.cur.Store(newPresetSet(nil, nil))
	if !(presetBefore{st}).Idle() || !(presetAround{st}).Idle() {
		t.Error("no presets: the stages do not idle")
	}
}

const collectConfig = `server: {host: 127.0.0.1, port: 0}
log: {level: info, format: json}
auth: {enabled: false}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 5}}
models: {primary: sim/sim}
skills:
  presets:
    - name: refund
      use: collect
      with:
        patterns: ['我要退(?:货|款)']
        slots:
          - {name: order_id, pattern: '\b(\d{12})\b', ask: 请提供 12 位订单号。}
          - {name: phone, pattern: '1[3-9]\d{9}', ask: 请留下手机号。}
        done: 订单 {order_id} 的退款已登记，我们会致电 {phone}。
    - {name: pii, use: guard}
`

// collect in a conversation, through the conversations API: it asks
// for each slot, keeps what it found in the conversation itself (its
// questions and the answers), so that a node restarted between two
// answers goes on where it was; after it is done, turns go to the model.
func TestPresetCollectAcrossRestart(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	n, _ := startPresetsNodeIn(t, ws, collectConfig)
	post := func(n *Node, path, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(n.URL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("%s: %d %v %v", path, resp.StatusCode, err, out)
		}
		return out
	}
	id := post(n, "/v1/conversations", `{}`)["id"].(string)
	say := func(n *Node, msg string) string {
		t.Helper()
		out := post(n, "/v1/conversations/"+id+"/messages", `{"content":`+jsonString(msg)+`}`)
		return out["message"].(map[string]any)["content"].(string)
	}
	if r := say(n, "你好，我要退款"); r != "请提供 12 位订单号。" {
		t.Fatalf("start: %q", r)
	}
	if r := say(n, "订单号 123456789012"); r != "请留下手机号。" {
		t.Fatalf("order id: %q", r)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	n2, _ := startPresetsNodeIn(t, ws, collectConfig)
	// The guard masks what reaches the user, the collect's own answer too
	// (it wraps the whole turn): the phone number it collected is kept in
	// the conversation, not shown again.
	if r := say(n2, "13800138000"); r != "订单 123456789012 的退款已登记，我们会致电 [phone]。" {
		t.Fatalf("after the restart: %q", r)
	}
	if r := say(n2, "谢谢，我的手机是 13800138000"); !strings.HasPrefix(r, "[simulated]") {
		t.Errorf("after the collection, the model: %q", r)
	}
}

// A reload (SIGHUP, moltbot keys reload: Node.Reload) reads the FAQ file
// again; one that does not parse keeps the answers in use, and the error
// names the preset, the file and the line.
func TestPresetsReload(t *testing.T) {
	n, logs := startPresetsNode(t, presetsConfig)
	faq := filepath.Join(n.Workspace, "skills", "faq.yaml")
	if err := os.WriteFile(faq, []byte("- q: 营业时间\n  a: 每天 8:00-20:00。\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, reply := askNode(t, n, "营业时间？"); reply != "每天 8:00-20:00。" {
		t.Errorf("after the reload: %q", reply)
	}
	if _, reply := askNode(t, n, "退货政策是什么"); strings.HasPrefix(reply, "30 天") {
		t.Errorf("an answer the new file does not have: %q", reply)
	}
	if err := os.WriteFile(faq, []byte("- q: 营业时间\n  a: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reload(); err == nil || !strings.Contains(err.Error(), "skills.presets[0] (support-faq): builtin: preset support-faq: skills/faq.yaml:2: [0]: a: want the answer's text") {
		t.Errorf("a bad file: %v", err)
	}
	if _, reply := askNode(t, n, "营业时间？"); reply != "每天 8:00-20:00。" {
		t.Errorf("after a failed reload: %q", reply)
	}
	if !strings.Contains(logs.String(), `"preset skill loaded"`) || !strings.Contains(logs.String(), `"skills.presets not reloaded; the presets in use stay"`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

// skills.presets itself reloads (SIGHUP, moltbot keys reload): a preset
// taken out of the file stops answering, one put in starts, without a
// restart.
func TestPresetsConfigReload(t *testing.T) {
	n, _ := startPresetsNode(t, presetsConfig)
	if model, _ := askNode(t, n, "(1+2)*3 等于多少？"); model != "preset/calc" {
		t.Fatalf("before: served by %q", model)
	}
	changed := strings.Replace(presetsConfig, "    - {name: calc, use: tools}\n", "    - {name: shop, use: faq, with: {file: shop.yaml}}\n", 1)
	if err := os.WriteFile(filepath.Join(n.Workspace, "skills", "shop.yaml"), []byte("- q: 营业时间\n  a: 每天 9:00-18:00。\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.Config.File, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if model, _ := askNode(t, n, "(1+2)*3 等于多少？"); model == "preset/calc" {
		t.Error("a preset taken out still answers")
	}
	if model, reply := askNode(t, n, "营业时间？"); model != "preset/shop" || reply != "每天 9:00-18:00。" {
		t.Errorf("a preset put in: %q from %q", reply, model)
	}
}

// checkBots knows the presets: a bot's skill or guard naming one is not
// warned of; a guard that is not a preset is; a bot that names none of
// the guards is told its turns go unwatched.
func TestPresetsCheckBots(t *testing.T) {
	cfg, err := configs.Parse("moltbot.yaml", []byte(`providers:
  - {name: sim, type: sim}
models: {primary: sim/sim}
skills:
  presets:
    - {name: pii, use: guard}
    - {name: calc, use: tools}
bots:
  - {name: a, skills: [calc], guards: [pii]}
  - {name: b, skills: [calc], guards: [nope]}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ps, err := buildPresets(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	n := &Node{Config: cfg, Log: slog.New(slog.NewJSONHandler(logs, nil)), presets: &presetStage{}}
	n.presets.cur.Store(newPresetSet(ps, nil))
	n.checkBots(cfg)
	out := logs.String()
	if strings.Contains(out, `"skill":"calc"`) || strings.Contains(out, `"bot":"a"`) {
		t.Errorf("a preset warned of as missing:\n%s", out)
	}
	if !strings.Contains(out, `"guard":"nope"`) || strings.Contains(out, `a bot names none of the guard presets`) {
		t.Errorf("no warning for bot b:\n%s", out)
	}
}

// guardedBody asks the simulator to quote a tool result that holds a
// phone number, a card, an e-mail address and a blocklisted word, a word
// at a time; guardedReply is its reply masked.
const (
	guardedBody = `{"model":"moltbot","stream":true,"messages":[{"role":"user","content":"look me up"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"phone 138 0013 8000, card 4111 1111 1111 1111, mail alice@example.com, darn"}]}`
	guardedReply = "[simulated] lookup returned phone [phone], card [card], mail [email], ***."
)

// The guard's output side is outside the output cache: a reply the cache
// replays is masked as it streams too, the same as the first time.
func TestPresetGuardOverCache(t *testing.T) {
	n, _ := startPresetsNode(t, presetsConfig+"cache: {type: memory, ttl: 1h}\n")
	for _, want := range []string{"miss", "hit"} {
		req, _ := http.NewRequest("POST", n.URL()+"/v1/chat/completions", strings.NewReader(guardedBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Moltbot-Cache", "use")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		text := sseDeltaText(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Moltbot-Cache"); got != want || text != guardedReply {
			t.Errorf("cache %q (want %q): %q", got, want, text)
		}
	}
}

// The guard's output side wraps the whole turn: an answer given before
// the model (here an FAQ listed before the guard, whose answer holds an
// e-mail address and a phone number; a flow's or a JavaScript skill's
// alike) is masked as the model's is, streamed or not.
func TestPresetGuardMasksAnswersBeforeTheModel(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	n, _ := startPresetsNodeIn(t, ws, presetsConfig)
	faq := presetsFAQ + "- q: [\"How do I reach support?\"]\n  a: \"Write to help@example.com or call 13800138000.\"\n"
	if err := os.WriteFile(filepath.Join(ws, "skills", "faq.yaml"), []byte(faq), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	const want = "Write to [email] or call [phone]."
	if model, reply := askNode(t, n, "How do I reach support?"); reply != want || model != "preset/support-faq" {
		t.Errorf("faq: %q from %q, want %q", reply, model, want)
	}
	defer func() {
		// The operator's own address and hotline, allowed, are given out;
		// another number still is not.
		allowed := strings.Replace(presetsConfig, "{blocklist: [坏蛋, darn]}", "{blocklist: [坏蛋, darn], allow: [HELP@example.com, 138-0013-8000]}", 1)
		n2, _ := startPresetsNodeIn(t, filepath.Join(t.TempDir(), "ws"), allowed)
		faq := presetsFAQ + "- q: [\"How do I reach support?\"]\n  a: \"Write to help@example.com or call 13800138000, not 13900139000.\"\n"
		os.WriteFile(filepath.Join(n2.Workspace, "skills", "faq.yaml"), []byte(faq), 0o600)
		if _, err := n2.Reload(); err != nil {
			t.Fatal(err)
		}
		if _, reply := askNode(t, n2, "How do I reach support?"); reply != "Write to help@example.com or call 13800138000, not [phone]." {
			t.Errorf("with allow: %q", reply)
		}
	}()
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"moltbot","stream":true,"messages":[{"role":"user","content":"How do I reach support?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text := sseDeltaText(resp.Body)
	if text != want {
		t.Errorf("streamed: %q, want %q", text, want)
	}
}
