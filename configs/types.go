package configs

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("3000ms", "5m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d *Duration) parse(s string) error {
	s = strings.TrimSpace(s)
	if s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 3000ms, 30s or 5m, got %q", s)
	}
	if v < 0 {
		return fmt.Errorf("must not be negative, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// KeepAlive is how long Ollama keeps a model in memory after a call, as
// Ollama writes it: a duration ("30m"), or -1 for good. Set reports
// whether it was written (unset: the server's own default).
type KeepAlive struct {
	D   time.Duration
	Set bool
}

// MarshalYAML writes it back as it is read.
func (k KeepAlive) MarshalYAML() (any, error) {
	if k.D < 0 {
		return "-1", nil
	}
	return k.D.String(), nil
}

func (k *KeepAlive) parse(s string) error {
	s = strings.TrimSpace(s)
	if s == "-1" || s == "-1s" || s == "-1m" {
		*k = KeepAlive{D: -1, Set: true}
		return nil
	}
	var d Duration
	if err := d.parse(s); err != nil {
		return fmt.Errorf("want a duration such as 30m, or -1 to keep the model loaded for good, got %q", s)
	}
	*k = KeepAlive{D: d.D(), Set: true}
	return nil
}

// Seconds is a duration written as whole seconds (3600) or as a Go
// duration ("1h", "90s"): the seed's cache block writes a TTL in seconds.
type Seconds time.Duration

// D returns s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

func (s Seconds) String() string { return time.Duration(s).String() }

// MarshalYAML writes the duration back as a string.
func (s Seconds) MarshalYAML() (any, error) { return s.String(), nil }

func (s *Seconds) parse(v string) error {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 1<<31 {
			return fmt.Errorf("want whole seconds between 0 and %d, got %q", int64(1<<31), v)
		}
		*s = Seconds(time.Duration(n) * time.Second)
		return nil
	}
	var d Duration
	if err := d.parse(v); err != nil {
		return fmt.Errorf("want whole seconds such as 3600, or a duration such as 1h, got %q", v)
	}
	*s = Seconds(d)
	return nil
}

// Percent is a fraction in [0,1] written as "5%" or 0.05.
type Percent float64

func (p Percent) String() string {
	return strconv.FormatFloat(float64(p)*100, 'g', -1, 64) + "%"
}

// MarshalYAML writes the fraction back as a percentage.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

func (p *Percent) parse(s string) error {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return fmt.Errorf("want a percentage such as 5%% or a fraction such as 0.05, got %q", s)
		}
		*p = Percent(v / 100)
	} else {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a percentage such as 5%% or a fraction such as 0.05, got %q", s)
		}
		*p = Percent(v)
	}
	if *p < 0 || *p > 1 {
		return fmt.Errorf("must be between 0%% and 100%%, got %q", s)
	}
	return nil
}

// ByteSize is a size in bytes written as 1048576, "1MiB", "512KiB" or "8MB".
type ByteSize int64

func (b ByteSize) String() string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return strconv.FormatInt(int64(b>>30), 10) + "GiB"
	case b >= 1<<20 && b%(1<<20) == 0:
		return strconv.FormatInt(int64(b>>20), 10) + "MiB"
	case b >= 1<<10 && b%(1<<10) == 0:
		return strconv.FormatInt(int64(b>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML writes the size back in its shortest unit.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

func (b *ByteSize) parse(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			mult, num = u.mult, strings.TrimSpace(rest)
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<50)/mult {
		return fmt.Errorf("want a size such as 1048576, 512KiB or 1MiB, got %q", s)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Secret is a string that never prints: logs, errors and YAML dumps show [REDACTED].
type Secret string

// Value returns the secret itself; call it only where the secret is used.
func (s Secret) Value() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML redacts the secret in dumps.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts the secret in JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return strconv.AppendQuote(nil, s.String()), nil }

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format keeps every fmt verb from printing the secret.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// scalarParser is implemented by the types above; the decoder calls it with the
// scalar's text after ${VAR} expansion.
type scalarParser interface{ parse(string) error }

func (s *Secret) parse(v string) error { *s = Secret(v); return nil }
