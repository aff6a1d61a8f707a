package configs

import (
	"strings"
	"testing"
	"time"
)

// A tenant's quotas and retention policy, and the sweep's interval, are
// read with their defaults; a bad value names its key and line.
func TestRetentionAndQuotas(t *testing.T) {
	c, err := Parse("m.yaml", []byte(minimal+`tenants:
  - id: acme
    limits: {max_conversations: 100, max_stored_bytes: 64MiB}
    retention: {days: 30, messages: 200, archive: true}
  - id: free
retention: {interval: 10m}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, f := c.Tenants[0], c.Tenants[1]
	if a.Limits.MaxConversations != 100 || a.Limits.MaxStoredBytes != 64<<20 || a.Retention != (TenantRetentionConfig{Days: 30, Messages: 200, Archive: true}) {
		t.Fatalf("acme %+v", a)
	}
	if f.Limits.MaxConversations != 0 || f.Retention != (TenantRetentionConfig{}) || c.Retention.Interval.D() != 10*time.Minute {
		t.Fatalf("free %+v, interval %s", f, c.Retention.Interval)
	}
	if d := parse(t, minimalSim); d.Retention.Interval.D() != time.Hour {
		t.Fatalf("default interval %s", d.Retention.Interval)
	}
	for yaml, want := range map[string]string{
		"tenants:\n  - id: acme\n    limits: {max_conversations: -1}\n":        "m.yaml:10: tenants[0].limits.max_conversations: must be between 0 (unlimited)",
		"tenants:\n  - id: acme\n    limits: {max_stored_bytes: 2PiB}\n":       "tenants[0].limits.max_stored_bytes:",
		"tenants:\n  - id: acme\n    retention:\n      days: -3\n":             "m.yaml:11: tenants[0].retention.days: must be between 0 (keep) and 36500, got -3",
		"tenants:\n  - id: acme\n    retention:\n      messages: 2000000000\n": "m.yaml:11: tenants[0].retention.messages: must be between 0 (keep all)",
		"tenants:\n  - id: acme\n    retention:\n      archive: true\n":        "m.yaml:11: tenants[0].retention.archive: archives what days or messages remove",
		"tenants:\n  - id: acme\n    retention:\n      dayz: 3\n":              `m.yaml:11: tenants[0].retention.dayz: unknown key (did you mean "days"?)`,
		"retention:\n  interval: 10ms\n":                                       "m.yaml:9: retention.interval: must be at least 1s, got 10ms",
	} {
		if _, err := Parse("m.yaml", []byte(minimal+yaml), env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\n(want %q)", yaml, err, want)
		}
	}
}
