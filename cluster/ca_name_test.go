package cluster

import (
	"regexp"
	"strings"
	"testing"
)

// nodeNameRE is what ValidNodeName checks by hand.
var nodeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

func TestValidNodeName(t *testing.T) {
	for name, want := range map[string]bool{
		"n1": true, "a": true, "node-1.eu_west": true, "9": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "-n": false, ".n": false, "_n": false,
		"n 1": false, "n/1": false, "né": false, "n\x00": false, "n1\n": false,
	} {
		if got := ValidNodeName(name); got != want || nodeNameRE.MatchString(name) != want {
			t.Errorf("ValidNodeName(%q) = %v, the expression %v; want %v", name, got, nodeNameRE.MatchString(name), want)
		}
	}
}

// FuzzValidNodeName: the hand-written check agrees with the regular
// expression it replaced on any input.
func FuzzValidNodeName(f *testing.F) {
	for _, s := range []string{"n1", "", "-n", "a.b_c-d", strings.Repeat("x", 63), strings.Repeat("x", 64), "n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := ValidNodeName(name), nodeNameRE.MatchString(name); got != want {
			t.Fatalf("ValidNodeName(%q) = %v, the expression says %v", name, got, want)
		}
	})
}
