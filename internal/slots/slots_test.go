package slots

import (
	"net"
	"net/netip"
	"testing"
)

func TestCounter(t *testing.T) {
	var c Counter
	var rel []func()
	for i := 0; i < 2; i++ {
		r, ok := c.Take("a", 2, 3)
		if !ok {
			t.Fatalf("slot %d refused", i)
		}
		rel = append(rel, r)
	}
	if _, ok := c.Take("a", 2, 3); ok {
		t.Fatal("a third slot for one key")
	}
	r, ok := c.Take("b", 2, 3)
	if !ok {
		t.Fatal("another key refused under the total")
	}
	if _, ok := c.Take("c", 0, 3); ok {
		t.Fatal("past the total")
	}
	rel[0]()
	if _, ok := c.Take("a", 2, 3); !ok || c.Held() != 3 {
		t.Fatalf("a released slot is not free again (held %d)", c.Held())
	}
	r()
	if c.Held() != 2 {
		t.Fatalf("held %d", c.Held())
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::1":   "2001:db8:1:2::/64",
		"::1":                  "::/64",
	} {
		if got := Key(netip.MustParseAddr(in)); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
	if got := KeyOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 80}); got != "2001:db8::/64" {
		t.Errorf("KeyOf = %s", got)
	}
	if got := KeyOf(pipeAddr{}); got != "pipe" {
		t.Errorf("KeyOf(pipe) = %s", got)
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
