package builtin

import (
	"regexp"
	"sync"
)

// lazyRE is a regular expression compiled on its first use: the node
// links this package whether or not its config uses it, and compiling
// every pattern at start cost each node's start 0.3-0.6 ms, some
// thousand allocations and the pages they touch.
func lazyRE(pat string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pat) })
}
