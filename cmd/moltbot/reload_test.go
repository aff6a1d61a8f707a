package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/testutil"
)

// What a node learned of a model from its server (Ollama's /api/show) is
// forgotten on a reload and asked again: a model pulled again with vision
// takes images after a SIGHUP, without a restart.
func TestReloadForgetsModelCapabilities(t *testing.T) {
	o := fastSim()
	o.Capabilities = map[string][]string{"m": {sim.CapCompletion}}
	u := newUpstream(t, o)
	ws := t.TempDir()
	path := filepath.Join(ws, "moltbot.yaml")
	yaml := fmt.Sprintf(`server: {port: 0, shutdown_timeout: 2s}
log: {level: error}
providers:
  - {name: local, type: ollama, url: "%s"}
models: {primary: local/m, health_interval: 1h}
`, u.srv.URL)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())

	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	image := `{"messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `"}}]}]}`
	testutil.Eventually(t, 10*time.Second, "the model's capabilities learned", func() bool {
		r := complete(t, n, image)
		return r.status == 400 && strings.Contains(r.body, "lacks vision")
	})
	// The model gains vision on its server: the node does not know yet.
	o.Capabilities = map[string][]string{"m": {sim.CapCompletion, sim.CapVision}}
	u.sim.Engine.SetOptions(o)
	if r := complete(t, n, image); r.status != 400 {
		t.Fatalf("before the reload: %d %s", r.status, r.body)
	}
	if _, err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the image served after the reload", func() bool { return complete(t, n, image).status == 200 })
}
