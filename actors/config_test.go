package actors

import (
	"reflect"
	"testing"
)

// DefaultConfig is what a zero Config resolves to, but for the fields
// whose zero is a setting of its own (MaxQueuedTurns: none wait).
func TestDefaultConfig(t *testing.T) {
	var c Config
	c.Providers = []ProviderSpec{{}}
	c.ensureDefaults()
	c.Metrics, c.Logger, c.clock = nil, nil, nil
	p := c.Providers[0]
	c.Providers = nil
	d := DefaultConfig()
	d.MaxQueuedTurns = 0
	if !reflect.DeepEqual(c, d) {
		t.Errorf("zero resolves to\n%+v\nDefaultConfig is\n%+v", c, d)
	}
	dp := DefaultProviderSpec()
	dp.MaxQueue = 0
	if !reflect.DeepEqual(p, dp) {
		t.Errorf("zero provider resolves to %+v, DefaultProviderSpec is %+v", p, dp)
	}
	// Defaults stay defaults: resolving DefaultConfig changes nothing.
	c = DefaultConfig()
	c.ensureDefaults()
	c.Metrics, c.Logger, c.clock = nil, nil, nil
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("DefaultConfig resolves to %+v", c)
	}
}
