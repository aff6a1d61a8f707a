package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/moltbot/moltbot/inference/sse"
)

// Target is one endpoint to time.
type Target struct {
	URL  string
	Body []byte
	// Stream: time to the first SSE event (TTFT) instead of the whole body.
	Stream bool
}

// OverheadConfig configures Overhead.
type OverheadConfig struct {
	Direct, Via Target
	Rounds      int // default 10
	PerRound    int // requests to each target per round, default 200
	Warmup      int // requests to each before measuring, default 50
	Client      *http.Client
}

// Round is one round's percentiles in milliseconds.
type Round struct {
	DirectP50 float64 `json:"direct_p50_ms"`
	DirectP99 float64 `json:"direct_p99_ms"`
	ViaP50    float64 `json:"via_p50_ms"`
	ViaP99    float64 `json:"via_p99_ms"`
}

// OverheadResult is the latency added by going through Via instead of Direct.
type OverheadResult struct {
	Rounds []Round `json:"rounds"`
	// Added p50 and p99 (ms): the median over rounds of (via - direct), and
	// the smallest and largest round.
	AddedP50    float64 `json:"added_p50_ms"`
	AddedP50Min float64 `json:"added_p50_min_ms"`
	AddedP50Max float64 `json:"added_p50_max_ms"`
	AddedP99    float64 `json:"added_p99_ms"`
	AddedP99Min float64 `json:"added_p99_min_ms"`
	AddedP99Max float64 `json:"added_p99_max_ms"`
	// Medians over rounds of each side.
	DirectP50 float64 `json:"direct_p50_ms"`
	ViaP50    float64 `json:"via_p50_ms"`
	DirectP99 float64 `json:"direct_p99_ms"`
	ViaP99    float64 `json:"via_p99_ms"`
}

// Overhead measures at concurrency 1, interleaving requests to Direct and Via
// (d, v, d, v, ...) so that both see the same machine state, in several
// rounds; each round gives p50 and p99 per target and their difference.
func Overhead(ctx context.Context, cfg OverheadConfig) (*OverheadResult, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	if cfg.PerRound <= 0 {
		cfg.PerRound = 200
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 50
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	}
	for i := 0; i < cfg.Warmup; i++ {
		for _, t := range []Target{cfg.Direct, cfg.Via} {
			if _, err := Time(ctx, cfg.Client, t); err != nil {
				return nil, err
			}
		}
	}
	res := &OverheadResult{}
	var d50, d99, v50, v99, a50, a99 []float64
	for r := 0; r < cfg.Rounds; r++ {
		direct := make([]float64, 0, cfg.PerRound)
		via := make([]float64, 0, cfg.PerRound)
		for i := 0; i < cfg.PerRound; i++ {
			first, second := cfg.Direct, cfg.Via
			if i%2 == 1 { // alternate which goes first
				first, second = second, first
			}
			for _, t := range []Target{first, second} {
				d, err := Time(ctx, cfg.Client, t)
				if err != nil {
					return nil, err
				}
				ms := float64(d) / float64(time.Millisecond)
				if t.URL == cfg.Direct.URL {
					direct = append(direct, ms)
				} else {
					via = append(via, ms)
				}
			}
		}
		sort.Float64s(direct)
		sort.Float64s(via)
		rd := Round{DirectP50: Percentile(direct, 50), DirectP99: Percentile(direct, 99), ViaP50: Percentile(via, 50), ViaP99: Percentile(via, 99)}
		res.Rounds = append(res.Rounds, rd)
		d50, d99 = append(d50, rd.DirectP50), append(d99, rd.DirectP99)
		v50, v99 = append(v50, rd.ViaP50), append(v99, rd.ViaP99)
		a50, a99 = append(a50, rd.ViaP50-rd.DirectP50), append(a99, rd.ViaP99-rd.DirectP99)
	}
	res.AddedP50, res.AddedP99 = Median(a50), Median(a99)
	res.AddedP50Min, res.AddedP50Max = minMax(a50)
	res.AddedP99Min, res.AddedP99Max = minMax(a99)
	res.DirectP50, res.DirectP99, res.ViaP50, res.ViaP99 = Median(d50), Median(d99), Median(v50), Median(v99)
	return res, nil
}

func minMax(v []float64) (float64, float64) {
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	return c[0], c[len(c)-1]
}

// Time sends one request and returns how long it took: to the end of the
// body, or to the first SSE event for a stream.
func Time(ctx context.Context, c *http.Client, t Target) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s: %s: %s", t.URL, resp.Status, b)
	}
	var d time.Duration
	if t.Stream {
		if _, err := sse.NewReader(resp.Body, 0).Next(); err != nil {
			return 0, fmt.Errorf("%s: stream ended before data: %v", t.URL, err)
		}
		d = time.Since(t0)
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
		d = time.Since(t0)
	}
	return d, err
}
