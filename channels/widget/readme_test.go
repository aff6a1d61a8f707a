package widget

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/moltbot/moltbot/channels"
)

// README's widget example, as written: its channel's options pass the
// type's check (the secret's ${VAR} given a value), and the script tag
// names the channel's path and its publishable key.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n### Web chat widget\n")
	if i < 0 {
		t.Fatal("README has no Web chat widget section")
	}
	s = s[i:]
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(s)
	tag := regexp.MustCompile("(?s)```html\n(.*?)```").FindStringSubmatch(s)
	if block == nil || tag == nil {
		t.Fatal("the section has no yaml or html block")
	}
	cfg := channels.Config{Options: map[string]string{}}
	for _, line := range strings.Split(block[1], "\n") {
		line, _, _ = strings.Cut(line, " #")
		line = strings.TrimPrefix(strings.TrimSpace(line), "- ")
		k, v, ok := strings.Cut(line, ":")
		if !ok || line == "channels:" {
			continue
		}
		v = strings.TrimSpace(v)
		v = strings.ReplaceAll(v, "${WIDGET_SECRET}", strings.Repeat("ab", 32))
		switch k = strings.TrimSpace(k); k {
		case "name":
			cfg.Name = v
		case "type":
			cfg.Type = v
		case "bot":
			cfg.Bot = v
		default:
			cfg.Options[k] = v
		}
	}
	if cfg.Type != "widget" || cfg.Name == "" {
		t.Fatalf("the example's channel: %+v", cfg)
	}
	if err := Type(func() Core { return Core{} }).Check(cfg); err != nil {
		t.Fatalf("README's widget config: %v", err)
	}
	if !strings.Contains(tag[1], "/channels/"+cfg.Name+"/widget.js") || !strings.Contains(tag[1], `data-key="`+cfg.Options[optKey]+`"`) {
		t.Fatalf("the script tag %q does not match the channel %+v", tag[1], cfg)
	}
}
