// Package resp is a small Redis client: RESP2 over pooled TCP connections,
// with the commands the output cache uses (GET, SET with PX, DEL, PING,
// SCAN, STRLEN) and AUTH and SELECT on connect. It exists so that the edge
// binary does not carry a general client (go-redis) for six commands.
//
// Every command is bounded in time (Config.IOTimeout, or the context's
// deadline when sooner); a connection that failed in any way but an error
// reply is closed, never reused. When every connection is busy a command
// fails at once with ErrBusy rather than wait: a cache that is slow to
// answer is worth less than no cache. The password is sent in AUTH and
// nowhere else: no error or log line names it.
package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Config configures a Client.
type Config struct {
	// Addr is host:port.
	Addr string
	// Password, when set, is sent with AUTH on each new connection.
	Password string
	// DB is SELECTed on each new connection when not 0.
	DB int
	// DialTimeout bounds a connect with its AUTH and SELECT (default 1 s);
	// IOTimeout one command (default 1 s).
	DialTimeout, IOTimeout time.Duration
	// PoolSize bounds the connections open at once (default 8).
	PoolSize int
	// MaxBulk bounds a bulk string in a reply (default 8 MiB): a larger one
	// drops the connection.
	MaxBulk int
}

// ErrBusy: every connection was in use.
var ErrBusy = errors.New("redis: every connection is in use")

// ErrClosed: the client was closed.
var ErrClosed = errors.New("redis: client closed")

// Client is a pool of connections to one server. Safe for concurrent use.
type Client struct {
	cfg   Config
	slots chan struct{} // a token per connection that may be open
	mu    sync.Mutex
	idle  []*conn
	done  bool
}

type conn struct {
	nc  net.Conn
	r   *bufio.Reader
	buf []byte
}

// New returns a client; it connects on first use.
func New(cfg Config) *Client {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = time.Second
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 8
	}
	if cfg.MaxBulk <= 0 {
		cfg.MaxBulk = 8 << 20
	}
	return &Client{cfg: cfg, slots: make(chan struct{}, cfg.PoolSize)}
}

// Close closes the idle connections; those in use close when their
// command ends. Later commands fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.done = nil, true
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
	return nil
}

// get takes a connection: an idle one, or a new one when a slot is free.
func (c *Client) get(ctx context.Context) (*conn, error) {
	select {
	case c.slots <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		<-c.slots
		return nil, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, nil
	}
	c.mu.Unlock()
	cn, err := c.dial(ctx)
	if err != nil {
		<-c.slots
		return nil, err
	}
	return cn, nil
}

// put gives cn back; bad closes it instead.
func (c *Client) put(cn *conn, bad bool) {
	c.mu.Lock()
	if bad || c.done {
		c.mu.Unlock()
		cn.nc.Close()
	} else {
		if cap(cn.buf) > 64<<10 {
			cn.buf = nil
		}
		c.idle = append(c.idle, cn)
		c.mu.Unlock()
	}
	<-c.slots
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", c.cfg.Addr, err)
	}
	cn := &conn{nc: nc, r: bufio.NewReaderSize(nc, 4096)}
	deadline, _ := dctx.Deadline()
	if c.cfg.Password != "" {
		cn.buf = appendArg(appendArg(appendHeader(cn.buf[:0], 2), "AUTH"), c.cfg.Password)
		if _, err := cn.roundTrip(deadline, c.cfg.MaxBulk); err != nil {
			nc.Close()
			var re *Error
			if errors.As(err, &re) {
				return nil, fmt.Errorf("redis: AUTH at %s refused: %w", c.cfg.Addr, err)
			}
			return nil, fmt.Errorf("redis: AUTH at %s: %w", c.cfg.Addr, err)
		}
	}
	if c.cfg.DB != 0 {
		cn.buf = appendArg(appendArg(appendHeader(cn.buf[:0], 2), "SELECT"), strconv.Itoa(c.cfg.DB))
		if _, err := cn.roundTrip(deadline, c.cfg.MaxBulk); err != nil {
			nc.Close()
			return nil, fmt.Errorf("redis: SELECT %d at %s: %w", c.cfg.DB, c.cfg.Addr, err)
		}
	}
	return cn, nil
}

// roundTrip writes cn.buf and reads one reply; an error reply is *Error.
func (cn *conn) roundTrip(deadline time.Time, maxBulk int) (Value, error) {
	if err := cn.nc.SetDeadline(deadline); err != nil {
		return Value{}, err
	}
	if _, err := cn.nc.Write(cn.buf); err != nil {
		return Value{}, err
	}
	v, err := readReply(cn.r, maxBulk)
	if err != nil {
		return Value{}, err
	}
	if v.Kind == Err {
		return v, &Error{Msg: string(v.Str)}
	}
	return v, nil
}

// do runs the command that build appends to a buffer, and reads n
// replies (a pipeline of n commands); the replies are given to each.
func (c *Client) do(ctx context.Context, n int, build func(b []byte) []byte, each func(i int, v Value) error) error {
	cn, err := c.get(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.cfg.IOTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	cn.buf = build(cn.buf[:0])
	bad := true
	defer func() { c.put(cn, bad) }()
	if err := cn.nc.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := cn.nc.Write(cn.buf); err != nil {
		return fmt.Errorf("redis: %s: %w", c.cfg.Addr, err)
	}
	var first error
	for i := 0; i < n; i++ {
		v, err := readReply(cn.r, c.cfg.MaxBulk)
		if err != nil {
			return fmt.Errorf("redis: %s: %w", c.cfg.Addr, err)
		}
		if v.Kind == Err {
			if first == nil {
				first = &Error{Msg: string(v.Str)}
			}
			continue
		}
		if err := each(i, v); err != nil && first == nil {
			first = err
		}
	}
	bad = false
	return first
}

// Do runs one command and returns its reply; an error reply is *Error.
func (c *Client) Do(ctx context.Context, args ...string) (Value, error) {
	var out Value
	err := c.do(ctx, 1, func(b []byte) []byte {
		b = appendHeader(b, len(args))
		for _, a := range args {
			b = appendArg(b, a)
		}
		return b
	}, func(_ int, v Value) error { out = v; return nil })
	return out, err
}

// Ping checks the server answers.
func (c *Client) Ping(ctx context.Context) error {
	v, err := c.Do(ctx, "PING")
	if err == nil && string(v.Str) != "PONG" {
		err = fmt.Errorf("%w: PING answered %q", ErrProtocol, v.Str)
	}
	return err
}

// Get returns key's value; found is false when there is none.
func (c *Client) Get(ctx context.Context, key string) (val []byte, found bool, err error) {
	err = c.do(ctx, 1, func(b []byte) []byte {
		return appendArg(appendArg(appendHeader(b, 2), "GET"), key)
	}, func(_ int, v Value) error {
		if v.Kind != Bulk {
			return fmt.Errorf("%w: GET answered type %q", ErrProtocol, v.Kind)
		}
		val, found = v.Str, !v.Null
		return nil
	})
	return val, found, err
}

// Set stores val under key for ttl (SET key val PX ms; 0: no expiry).
func (c *Client) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return c.do(ctx, 1, func(b []byte) []byte {
		if ttl <= 0 {
			return appendArg(appendArg(appendArg(appendHeader(b, 3), "SET"), key), val)
		}
		b = appendArg(appendArg(appendArg(appendHeader(b, 5), "SET"), key), val)
		return appendArg(appendArg(b, "PX"), strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
	}, func(int, Value) error { return nil })
}

// Del deletes keys and returns how many existed.
func (c *Client) Del(ctx context.Context, keys ...string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	var n int64
	err := c.do(ctx, 1, func(b []byte) []byte {
		b = appendArg(appendHeader(b, len(keys)+1), "DEL")
		for _, k := range keys {
			b = appendArg(b, k)
		}
		return b
	}, func(_ int, v Value) error { n = v.Int; return nil })
	return n, err
}

// Scan is one SCAN step: the keys matching match from cursor ("0" to
// begin), and the cursor of the next step ("0" when the scan is done).
func (c *Client) Scan(ctx context.Context, cursor, match string, count int) (next string, keys []string, err error) {
	v, err := c.Do(ctx, "SCAN", cursor, "MATCH", match, "COUNT", strconv.Itoa(count))
	if err != nil {
		return "", nil, err
	}
	if v.Kind != Array || len(v.Array) != 2 || v.Array[0].Kind != Bulk || v.Array[1].Kind != Array {
		return "", nil, fmt.Errorf("%w: SCAN answered an unexpected shape", ErrProtocol)
	}
	for _, k := range v.Array[1].Array {
		keys = append(keys, string(k.Str))
	}
	return string(v.Array[0].Str), keys, nil
}

// StrLen returns the length of each key's value (0 for a missing key), in
// one pipelined round trip.
func (c *Client) StrLen(ctx context.Context, keys []string) ([]int64, error) {
	out := make([]int64, len(keys))
	err := c.do(ctx, len(keys), func(b []byte) []byte {
		for _, k := range keys {
			b = appendArg(appendArg(appendHeader(b, 2), "STRLEN"), k)
		}
		return b
	}, func(i int, v Value) error { out[i] = v.Int; return nil })
	return out, err
}
