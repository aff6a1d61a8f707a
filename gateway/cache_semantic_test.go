package gateway

import (
	"net/http/httptest"
	"testing"

	"github.com/moltbot/moltbot"
)

// A hit of the semantic tier says so beside X-Moltbot-Cache: hit; an
// exact hit does not.
func TestCacheWriterSemantic(t *testing.T) {
	for _, semantic := range []bool{false, true} {
		rec := httptest.NewRecorder()
		w := &cacheWriter{ResponseWriter: rec}
		if semantic {
			w.cc.SetSemanticHit()
		} else {
			w.cc.SetResult(moltbot.CacheHit)
		}
		w.Write([]byte("{}"))
		if got := rec.Header().Get("X-Moltbot-Cache"); got != "hit" {
			t.Errorf("semantic %v: X-Moltbot-Cache %q", semantic, got)
		}
		want := ""
		if semantic {
			want = "semantic"
		}
		if got := rec.Header().Get("X-Moltbot-Cache-Match"); got != want {
			t.Errorf("semantic %v: X-Moltbot-Cache-Match %q", semantic, got)
		}
	}
}
