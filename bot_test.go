package moltbot

import "testing"

func TestBotAllows(t *testing.T) {
	b := &Bot{Name: "s", Chain: []ModelRef{{Provider: "local", Model: "llama3.2"}, {Provider: "cloud", Model: "gpt"}}}
	for model, want := range map[string]bool{"": true, ChainModel: true, "local/llama3.2": true, "cloud/gpt": true,
		"llama3.2": false, "local/other": false, "other/llama3.2": false} {
		if b.Allows(model) != want {
			t.Errorf("Allows(%q) = %v", model, !want)
		}
	}
	if !(&Bot{}).Allows("any/model") {
		t.Error("a bot without a chain of its own narrows nothing by model")
	}
	var none *Bot
	if !none.HasSkill("x") || (&Bot{}).HasSkill("x") || !(&Bot{Skills: []string{"x"}}).HasSkill("x") {
		t.Error("HasSkill: no bot runs every skill; a bot its own only")
	}
	if b.ChainString() != "local/llama3.2, cloud/gpt" || (&Bot{}).ChainString() != ChainModel {
		t.Error(b.ChainString())
	}
	if TenantOfSpace("acme:abc") != "acme" || TenantOfSpace("default") != "default" {
		t.Error("TenantOfSpace")
	}
	p := &Principal{Bot: "s"}
	if !p.SeesBot("s") || p.SeesBot("") || p.SeesBot("t") || !(&Principal{}).SeesBot("s") {
		t.Error("SeesBot")
	}
}
