//go:build !edge

package main

import (
	"strings"
	"testing"
)

func TestSimCapabilities(t *testing.T) {
	caps, err := simCapabilities([]string{"llama3.2:1b=completion+tools", "llava=completion+vision"})
	if err != nil || strings.Join(caps["llama3.2:1b"], ",") != "completion,tools" || strings.Join(caps["llava"], ",") != "completion,vision" {
		t.Errorf("%v %v", caps, err)
	}
	for _, bad := range []string{"llava", "=tools", "x=fly", "x=tools+"} {
		if _, err := simCapabilities([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	code, _, stderr := runCLI(t, "", "sim", "--capabilities", "x=fly")
	if code != 2 || !strings.Contains(stderr, "--capabilities") {
		t.Errorf("%d %q", code, stderr)
	}
}
