package widget

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The type's option keys (channels.Config.Options).
const (
	optKey         = "publishable_key"
	optOrigins     = "origins"
	optAnyOrigin   = "allow_any_origin"
	optTitle       = "title"
	optGreeting    = "greeting"
	optSecret      = "visitor_secret"
	optRate        = "rate"
	optNewVisitors = "new_visitors"
	optTTL         = "visitor_ttl"
	optMaxMessage  = "max_message_bytes"
	optProxies     = "trusted_proxies"
	optMaxImage    = "max_image_bytes"
)

var optionKeys = []string{optKey, optOrigins, optAnyOrigin, optTitle, optGreeting, optSecret, optRate, optNewVisitors, optTTL, optMaxMessage, optMaxImage, optProxies}

var requiredKeys = []string{optKey, optOrigins, optSecret}

// Defaults of the options a channel may leave out.
const (
	defaultRate        = "10/min"
	defaultNewVisitors = "30/h"
	defaultTTL         = 30 * 24 * time.Hour
	defaultMaxMessage  = 4000
	maxMaxMessage      = 32 << 10
	defaultMaxImage    = 256 << 10
	maxMaxImage        = 360 << 10 // two, in base64, within the core's 1 MiB body cap
	defaultTitle       = "Chat"
	maxTitle           = 80
	maxGreeting        = 1000
	minSecret          = 32
	minKeyTail         = 24
	maxKey             = 128
	maxOrigins         = 64
)

// options is a channel's options, checked.
type options struct {
	key      string
	origins  map[string]bool // exact origins ("https://shop.example")
	any      bool            // allow_any_origin: every origin (still one named by the browser)
	title    string
	greeting string
	secret   []byte
	rate     rateSpec // per visitor, every API call
	fresh    rateSpec // new visitors per client address
	ttl      time.Duration
	maxMsg   int
	maxImage int // bytes of an attached image; 0: none taken
	proxies  []netip.Prefix
}

// rateSpec is "N/unit": N calls per Per, in a burst of N.
type rateSpec struct {
	N   int
	Per time.Duration
}

func (r rateSpec) String() string {
	unit := "hour"
	switch r.Per {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "min"
	}
	return strconv.Itoa(r.N) + "/" + unit
}

// optionError names the key at fault.
func optionError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// parseOptions checks a channel's options (every error names its key).
func parseOptions(o map[string]string) (*options, error) {
	for k := range o {
		known := false
		for _, n := range optionKeys {
			known = known || k == n
		}
		if !known {
			return nil, optionError(k, "not an option of a widget channel (known: %s)", strings.Join(optionKeys, ", "))
		}
	}
	for _, k := range requiredKeys {
		if strings.TrimSpace(o[k]) == "" {
			return nil, optionError(k, "required by a widget channel")
		}
	}
	out := &options{title: defaultTitle, ttl: defaultTTL, maxMsg: defaultMaxMessage, maxImage: defaultMaxImage}
	key := o[optKey]
	if !strings.HasPrefix(key, "pk_") || len(key)-3 < minKeyTail || len(key) > maxKey || !tokenChars(key[3:]) {
		return nil, optionError(optKey, "a publishable key is pk_ and %d to %d letters, digits, '-' or '_' (it is public: it goes in the page's script tag)", minKeyTail, maxKey-3)
	}
	out.key = key
	if s := o[optSecret]; len(s) < minSecret {
		return nil, optionError(optSecret, "is %d bytes; at least %d are needed (a random string, the same on every node: `openssl rand -hex 32`, given as ${VAR})", len(s), minSecret)
	} else if s == key {
		return nil, optionError(optSecret, "must not be the publishable key (which is public)")
	} else {
		out.secret = []byte(s)
	}
	switch v := strings.TrimSpace(o[optAnyOrigin]); v {
	case "", "false":
	case "true":
		out.any = true
	default:
		return nil, optionError(optAnyOrigin, "is true or false, not %q", v)
	}
	out.origins = map[string]bool{}
	for _, s := range strings.Split(o[optOrigins], ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			continue
		case s == "*":
			if !out.any {
				return nil, optionError(optOrigins, "\"*\" lets every web site embed this bot; list the sites' origins, or set allow_any_origin: true to mean it")
			}
			continue
		}
		if err := checkOrigin(s); err != nil {
			return nil, optionError(optOrigins, "%q: %v", s, err)
		}
		out.origins[s] = true
	}
	if len(out.origins) == 0 && !out.any {
		return nil, optionError(optOrigins, "names no origin (comma-separated, like https://shop.example)")
	}
	if len(out.origins) > maxOrigins {
		return nil, optionError(optOrigins, "lists %d origins; at most %d", len(out.origins), maxOrigins)
	}
	if t, ok := o[optTitle]; ok {
		if len(t) > maxTitle || strings.TrimSpace(t) == "" {
			return nil, optionError(optTitle, "is 1 to %d bytes", maxTitle)
		}
		out.title = t
	}
	if g := o[optGreeting]; len(g) > maxGreeting {
		return nil, optionError(optGreeting, "is %d bytes; at most %d", len(g), maxGreeting)
	} else {
		out.greeting = g
	}
	var err error
	if out.rate, err = parseRate(optRate, o[optRate], defaultRate); err != nil {
		return nil, err
	}
	if out.fresh, err = parseRate(optNewVisitors, o[optNewVisitors], defaultNewVisitors); err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(o[optTTL]); s != "" {
		d, err := parseDuration(s)
		if err != nil || d < time.Hour || d > 400*24*time.Hour {
			return nil, optionError(optTTL, "is a duration from 1h to 400d (like 720h or 30d), not %q", s)
		}
		out.ttl = d
	}
	if s := strings.TrimSpace(o[optMaxMessage]); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxMaxMessage {
			return nil, optionError(optMaxMessage, "is a number of bytes from 1 to %d, not %q", maxMaxMessage, s)
		}
		out.maxMsg = n
	}
	if s := strings.TrimSpace(o[optMaxImage]); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxMaxImage {
			return nil, optionError(optMaxImage, "is a number of bytes from 0 (no images) to %d, not %q", maxMaxImage, s)
		}
		out.maxImage = n
	}
	for _, s := range strings.Split(o[optProxies], ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, optionError(optProxies, "%q is neither an address nor a CIDR prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out.proxies = append(out.proxies, p.Masked())
	}
	return out, nil
}

// checkOrigin accepts an exact web origin: https://host[:port], or plain
// http for a loopback host (a developer's machine). No path, no wildcard.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("an origin is scheme://host[:port], nothing after it")
	}
	if strings.ContainsAny(u.Host, "*") {
		return fmt.Errorf("origins are matched exactly: no wildcards")
	}
	if u.Host != strings.ToLower(u.Host) || u.Scheme != strings.ToLower(u.Scheme) {
		return fmt.Errorf("write it in lower case, as browsers send it")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return nil
		}
		return fmt.Errorf("plain http is accepted for localhost only; use https")
	}
	return fmt.Errorf("the scheme is https")
}

// parseRate reads "N/unit" (unit: s, sec, second, m, min, minute, h, hour).
func parseRate(key, s, def string) (rateSpec, error) {
	if s = strings.TrimSpace(s); s == "" {
		s = def
	}
	n, unit, ok := strings.Cut(s, "/")
	v, err := strconv.Atoi(strings.TrimSpace(n))
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	}
	if !ok || err != nil || v < 1 || v > 1_000_000 || per == 0 {
		return rateSpec{}, optionError(key, "is a count per second, minute or hour, like 10/min, not %q", s)
	}
	return rateSpec{N: v, Per: per}, nil
}

// parseDuration is time.ParseDuration with days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// tokenChars reports whether s is letters, digits, '-' and '_' only.
func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
