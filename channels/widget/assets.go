package widget

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"html"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// The script and its style sheet are files of this package (no build
// step), served by every node; the page is made per channel from its
// title and key. Each has a strong ETag (a hash of its bytes), so a
// browser revalidates with If-None-Match and gets a 304.

//go:embed assets/widget.js
var widgetJS []byte

//go:embed assets/widget.css
var widgetCSS []byte

type asset struct {
	body  []byte
	etag  string
	ctype string
}

func newAsset(body []byte, ctype string) asset {
	sum := sha256.Sum256(body)
	return asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: ctype}
}

// Made at first use, not at start: a node without a widget hashes nothing.
var (
	script = sync.OnceValue(func() asset { return newAsset(widgetJS, "text/javascript; charset=utf-8") })
	style  = sync.OnceValue(func() asset { return newAsset(widgetCSS, "text/css; charset=utf-8") })
)

// Scripts come only from files of the node, never inline; the page may be
// framed only by the channel's origins.
const assetCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"

// pageAsset is this channel's page: the widget in page mode.
func (w *Widget) pageAsset() asset {
	w.assetsOnce.Do(func() {
		var b strings.Builder
		b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
		b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
		b.WriteString("<meta name=\"referrer\" content=\"no-referrer\">\n")
		b.WriteString("<title>" + html.EscapeString(w.o.title) + "</title>\n")
		b.WriteString("<link rel=\"stylesheet\" href=\"widget.css\">\n")
		b.WriteString("<script src=\"widget.js\" data-key=\"" + html.EscapeString(w.o.key) + "\" data-mode=\"page\" defer></script>\n")
		b.WriteString("</head><body class=\"mb-page\"><noscript>This chat needs JavaScript.</noscript></body></html>\n")
		w.page = newAsset([]byte(b.String()), "text/html; charset=utf-8")
	})
	return w.page
}

// frameAncestors is who may show the page in a frame: the node itself and
// the channel's origins.
func (w *Widget) frameAncestors() string {
	if w.o.any {
		return "frame-ancestors *"
	}
	list := make([]string, 0, len(w.o.origins)+1)
	for o := range w.o.origins {
		list = append(list, o)
	}
	sort.Strings(list)
	return "frame-ancestors 'self' " + strings.Join(list, " ")
}

// serveAsset answers GET and HEAD of a with its ETag (304 on a match) and
// caching: five minutes, then revalidation.
func (w *Widget) serveAsset(rw http.ResponseWriter, r *http.Request, a asset, page bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		writeError(rw, errMethod("GET"))
		return
	}
	h := rw.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=300")
	if page {
		h.Set("Content-Security-Policy", assetCSP+"; "+w.frameAncestors())
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidate: a reload may change the title
	} else {
		// Loaded by other sites' pages: a script tag, a style sheet.
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		h.Set("Content-Security-Policy", "default-src 'none'")
	}
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(a.body))
}
