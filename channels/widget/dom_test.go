package widget

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The script, run: test/widget/widget.mjs loads widget.js in a DOM (jsdom)
// as a shop's page that embeds it, opens the panel, writes a message and
// waits for the streamed reply. What the panel shows is what the visitor's
// history holds, and the token the page stored is that visitor's. It
// needs node and test/widget's npm packages (make test installs them);
// without them it skips, saying so.
func TestWidgetInDOM(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the script is not run in a DOM")
	}
	dir, _ := filepath.Abs("../../test/widget")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jsdom")); err != nil {
		t.Skip("test/widget's npm packages are not installed (make widget-deps): the script is not run in a DOM")
	}
	f := newFixture(t, testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "widget.mjs", f.srv.URL+"/channels/support/", testKey, shop)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node widget.mjs: %v\n%s", err, stderr.String())
	}
	var got struct {
		HiddenBefore, HiddenAfter, SendEnabled bool
		Expanded, Title, Stylesheet            string
		Bubbles                                []struct{ Cls, Text string }
		Stored, Requests                       []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !got.HiddenBefore || got.HiddenAfter || got.Expanded != "true" || !got.SendEnabled {
		t.Errorf("the panel: %+v", got)
	}
	if got.Title != "Shop <help>" || got.Stylesheet != f.srv.URL+"/channels/support/widget.css" {
		t.Errorf("title %q, style sheet %q", got.Title, got.Stylesheet)
	}
	if len(got.Stored) != 1 {
		t.Fatalf("the page stored %q", got.Stored)
	}
	v, _, err := f.w.sign.verify(got.Stored[0], time.Now())
	if err != nil {
		t.Fatalf("the stored token: %v", err)
	}
	h := f.history(got.Stored[0])
	if len(h.Data) != 2 {
		t.Fatalf("visitor %s's history: %+v", v, h)
	}
	want := []struct{ cls, text string }{
		{"mb-msg mb-bot mb-greeting", "Hi! How can we help?"},
		{"mb-msg mb-user", "hello there"},
		{"mb-msg mb-bot", h.Data[1].Content},
	}
	if len(got.Bubbles) != len(want) {
		t.Fatalf("the panel shows %+v", got.Bubbles)
	}
	for i, w := range want {
		if strings.TrimSpace(got.Bubbles[i].Cls) != w.cls || got.Bubbles[i].Text != w.text {
			t.Errorf("bubble %d: %+v, want %+v", i, got.Bubbles[i], w)
		}
	}
	if strings.Join(got.Requests, ", ") != "POST /channels/support/api/session, GET /channels/support/api/history, POST /channels/support/api/messages" {
		t.Errorf("the script's calls: %q", got.Requests)
	}
}

// The channel's own page in a DOM: it loads widget.js from the node, shows
// the panel at once (no launcher), and its same-origin calls (a browser's
// Sec-Fetch-Site) open a session and stream a reply.
func TestWidgetPageInDOM(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the page is not run in a DOM")
	}
	dir, _ := filepath.Abs("../../test/widget")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jsdom")); err != nil {
		t.Skip("test/widget's npm packages are not installed (make widget-deps): the page is not run in a DOM")
	}
	f := newFixture(t, testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "widget.mjs", f.srv.URL+"/channels/support/", testKey, shop, "page")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node widget.mjs page: %v\n%s", err, stderr.String())
	}
	var got struct {
		Launcher, Full, HiddenBefore bool
		Title, PageTitle             string
		Bubbles                      []struct{ Cls, Text string }
		Stored                       []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Launcher || !got.Full || got.HiddenBefore || got.Title != "Shop <help>" || got.PageTitle != "Shop <help>" || len(got.Stored) != 1 {
		t.Fatalf("the page: %+v", got)
	}
	h := f.history(got.Stored[0])
	if len(got.Bubbles) != 3 || len(h.Data) != 2 || got.Bubbles[2].Text != h.Data[1].Content {
		t.Fatalf("the page shows %+v; the history %+v", got.Bubbles, h)
	}
}

// An image chosen in the panel's file input goes with the next message:
// the panel shows it, the conversation stores it as an image part.
func TestWidgetImageInDOM(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the script is not run in a DOM")
	}
	dir, _ := filepath.Abs("../../test/widget")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jsdom")); err != nil {
		t.Skip("test/widget's npm packages are not installed (make widget-deps): the script is not run in a DOM")
	}
	f := newFixture(t, testOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "widget.mjs", f.srv.URL+"/channels/support/", testKey, shop, "image")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node widget.mjs image: %v\n%s", err, stderr.String())
	}
	var got struct {
		Bubbles []struct {
			Cls, Text string
			Images    []string
		}
		Stored []string
	}
	if err := json.Unmarshal(out, &got); err != nil || len(got.Stored) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got.Bubbles) != 5 || got.Bubbles[3].Text != "and this?" || len(got.Bubbles[3].Images) != 1 || got.Bubbles[3].Images[0] != "data:image/png;base64,"[:22] {
		t.Fatalf("the panel shows %+v", got.Bubbles)
	}
	h := f.history(got.Stored[0])
	if len(h.Data) != 4 || h.Data[2].Content != "and this?" || h.Data[2].Images != 1 {
		t.Fatalf("history: %+v", h)
	}
}
