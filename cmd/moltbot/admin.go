package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot/audit"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
	"github.com/urfave/cli/v2"
)

// adminKeyFile is the operator credential moltbot init writes into a workspace.
const adminKeyFile = "admin.key"

func adminFlags() []cli.Flag {
	return []cli.Flag{
		workspaceFlag(),
		urlFlag(),
		&cli.StringFlag{Name: "admin-key-file", Usage: "file holding the admin key (default: WORKSPACE/admin.key)"},
		caFileFlag(),
	}
}

// adminNode is where the admin commands go and with what.
type adminNode struct {
	base, key string
	client    *http.Client
}

// adminTarget finds the node and a credential: --url, else the workspace's
// configured address (https:// with server.tls, trusting the workspace's
// certificate besides --ca-file and the system's); --admin-key-file, else
// WORKSPACE/admin.key, else $MOLTBOT_API_KEY.
func adminTarget(c *cli.Context) (*adminNode, error) {
	ws := c.String("workspace")
	base, err := nodeURL(c)
	if err != nil {
		return nil, err
	}
	n := &adminNode{base: base}
	var wsCert []string
	if !c.IsSet("url") && os.Getenv("MOLTBOT_URL") == "" {
		if cfg, err := configs.Load(filepath.Join(ws, "moltbot.yaml")); err == nil {
			host := cfg.Server.Host
			if host == "0.0.0.0" || host == "::" || host == "" {
				host = "127.0.0.1"
			}
			scheme := "http://"
			if t := cfg.Server.TLS; t.Enabled() {
				scheme = "https://"
				cert := t.CertFile
				if !filepath.IsAbs(cert) {
					cert = filepath.Join(ws, cert)
				}
				wsCert = append(wsCert, cert)
			}
			n.base = scheme + net.JoinHostPort(host, strconv.Itoa(cfg.Server.Port))
		}
	}
	if n.client, err = httpClient(c, wsCert...); err != nil {
		return nil, err
	}
	path := c.String("admin-key-file")
	if path == "" {
		path = filepath.Join(ws, adminKeyFile)
		if _, err := os.Stat(path); err != nil {
			n.key = os.Getenv("MOLTBOT_API_KEY")
			return n, nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fail(2, "--admin-key-file: %v", err)
	}
	n.key = strings.TrimSpace(string(b))
	return n, nil
}

// adminCall sends a request to the node's admin API and decodes the reply.
func adminCall(c *cli.Context, method, path string, body any, out any) error {
	n, err := adminTarget(c)
	if err != nil {
		return err
	}
	return n.request(c, method, path, body, out)
}

// adminShow gets path from the admin API for a command with --json: it
// prints the raw body itself (and returns nil raw), or returns the body and
// the node's base URL for the command to print.
func adminShow(c *cli.Context, path string) (base string, raw json.RawMessage, err error) {
	n, err := adminTarget(c)
	if err != nil {
		return "", nil, err
	}
	if err := n.request(c, "GET", path, nil, &raw); err != nil {
		return "", nil, err
	}
	if c.Bool("json") {
		c.App.Writer.Write(append(raw, '\n'))
		return n.base, nil, nil
	}
	return n.base, raw, nil
}

// request sends one request to the admin API.
func (n *adminNode) request(c *cli.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.Context, method, n.base+path, rd)
	if err != nil {
		return fail(2, "--url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if n.key != "" {
		req.Header.Set("Authorization", "Bearer "+n.key)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fail(1, "cannot reach moltbot at %s: %v", n.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := apiError(resp)
		if resp.StatusCode == http.StatusUnauthorized {
			return fail(1, "%v (give an admin key: --admin-key-file, or WORKSPACE/admin.key from moltbot init)", err)
		}
		return fail(1, "%v", err)
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
			return fail(1, "unexpected reply: %v", err)
		}
	}
	return nil
}

func when(unix int64) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).UTC().Format("2006-01-02 15:04")
}

type keyOut struct {
	Key string `json:"key"`
	auth.KeyInfo
}

func printNewKey(c *cli.Context, k keyOut) {
	fmt.Fprintf(c.App.Writer, "%s\n", k.Key)
	bot := ""
	if k.Bot != "" {
		bot = ", bot " + k.Bot
	}
	fmt.Fprintf(c.App.ErrWriter, "key %s for tenant %s, scope %s%s, expires %s. It is shown once: keep it now.\n", k.ID, k.Tenant, k.Scope, bot, when(k.Expires))
}

// ollamaKeyLine is the public key line --ollama-key gives: the line itself
// ("ssh-ed25519 AAAA..."), or the file that holds it.
func ollamaKeyLine(v string) (string, error) {
	if strings.HasPrefix(strings.TrimSpace(v), "ssh-") {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fail(2, "--ollama-key: want the line of ~/.ollama/id_ed25519.pub (ssh-ed25519 AAAA...) or that file: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage API keys (through the node's admin API)",
		Description: `Creates, lists, revokes and rotates API keys. A key is printed once, when
created or rotated; the node keeps only its hash. The node and an admin
credential are found from --workspace (its moltbot.yaml and admin.key, written
by moltbot init); --url and --admin-key-file override.

Examples:
   moltbot keys create --tenant acme --name ci --ttl 720h
   moltbot keys create --tenant acme --name widget --bot support
   moltbot keys create --tenant acme --name laptop --ollama-key ~/.ollama/id_ed25519.pub --ollama-proof proof.sig
   moltbot keys list --tenant acme
   moltbot keys rotate k3x9ab2q --grace 24h
   moltbot keys revoke k3x9ab2q
   moltbot keys reload        # re-read provider credentials (also: SIGHUP)`,
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "issue a key; prints it once",
				Flags: append(adminFlags(),
					&cli.StringFlag{Name: "tenant", Value: auth.DefaultTenant, Usage: "tenant of the key"},
					&cli.StringFlag{Name: "name", Usage: "a label"},
					&cli.DurationFlag{Name: "ttl", Usage: "lifetime (default: the tenant's rotate_every, or none)"},
					&cli.StringFlag{Name: "scope", Value: "chat", Usage: "chat or admin"},
					&cli.StringFlag{Name: "bot", Usage: "bind the key to a bot of its tenant (bots: in the config; moltbot bots list): it speaks as the bot, scope chat"},
					&cli.StringFlag{Name: "ollama-key", Usage: "register the ollama CLI's public key instead (the line of ~/.ollama/id_ed25519.pub, or that file): " +
						"requests it signs with OLLAMA_AUTH=1 are the tenant's, scope chat"},
					&cli.StringFlag{Name: "ollama-proof", Usage: "with --ollama-key: the file of the key holder's SSH signature of the tenant's name, made on their machine with: " +
						auth.OllamaProofCommand("TENANT")}),
				Action: func(c *cli.Context) error {
					var k keyOut
					body := map[string]string{"tenant": c.String("tenant"), "name": c.String("name"), "scope": c.String("scope")}
					if c.IsSet("ttl") {
						body["ttl"] = c.Duration("ttl").String()
					}
					if b := c.String("bot"); b != "" {
						body["bot"] = b
					}
					if v := c.String("ollama-key"); v != "" {
						line, err := ollamaKeyLine(v)
						if err != nil {
							return err
						}
						body["ollama_key"] = line
						pf := c.String("ollama-proof")
						if pf == "" {
							return fail(2, "--ollama-proof is required with --ollama-key: the key's holder signs the tenant's name with it, on their machine:\n  %s",
								auth.OllamaProofCommand(c.String("tenant")))
						}
						proof, err := os.ReadFile(pf)
						if err != nil {
							return fail(2, "--ollama-proof: %v", err)
						}
						body["ollama_proof"] = string(proof)
					}
					if err := adminCall(c, "POST", "/v1/admin/keys", body, &k); err != nil {
						return err
					}
					if k.Kind == "ollama" {
						fmt.Fprintf(c.App.Writer, "%s\n", k.ID)
						fmt.Fprintf(c.App.ErrWriter, "ollama key %s (%s) registered for tenant %s, scope %s, expires %s. "+
							"The ollama CLI signs with it when run with OLLAMA_AUTH=1 and OLLAMA_HOST set to this node.\n",
							k.ID, k.Fingerprint, k.Tenant, k.Scope, when(k.Expires))
						return nil
					}
					printNewKey(c, k)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list keys (never their secrets)",
				Flags: append(adminFlags(), &cli.StringFlag{Name: "tenant", Usage: "only this tenant's keys"}),
				Action: func(c *cli.Context) error {
					var out struct {
						Keys []auth.KeyInfo `json:"keys"`
					}
					path := "/v1/admin/keys"
					if t := c.String("tenant"); t != "" {
						path += "?tenant=" + t
					}
					if err := adminCall(c, "GET", path, nil, &out); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tTENANT\tNAME\tSCOPE\tSTATE\tCREATED\tEXPIRES\tSUCCESSOR\tKIND\tBOT")
					for _, k := range out.Keys {
						kind := "api"
						if k.Kind != "" {
							kind = strings.TrimSpace(k.Kind + " " + k.Fingerprint)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, k.Name, k.Scope, k.State, when(k.Created), when(k.Expires), k.Successor, kind, orDash(k.Bot))
					}
					return tw.Flush()
				},
			},
			{
				Name: "revoke", Usage: "stop a key at once", ArgsUsage: "ID", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "moltbot keys revoke ID")
					if err != nil {
						return err
					}
					if err := adminCall(c, "DELETE", "/v1/admin/keys/"+id, nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "key %s revoked\n", id)
					return nil
				},
			},
			{
				Name: "rotate", Usage: "issue a successor; the old key works until the grace ends", ArgsUsage: "ID",
				Flags: append(adminFlags(), &cli.DurationFlag{Name: "grace", DefaultText: "24h",
					Usage: "how long the old key keeps working; 0s stops it now"}),
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "moltbot keys rotate ID [--grace 24h]")
					if err != nil {
						return err
					}
					body := map[string]string{} // no grace: the node's default
					if c.IsSet("grace") {
						if c.Duration("grace") < 0 {
							return fail(2, "--grace: must not be negative")
						}
						body["grace"] = c.Duration("grace").String()
					}
					var k keyOut
					if err := adminCall(c, "POST", "/v1/admin/keys/"+id+"/rotate", body, &k); err != nil {
						return err
					}
					printNewKey(c, k)
					return nil
				},
			},
			{
				Name: "reload", Usage: "re-read provider credentials and tenants from the config file, without a restart", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					var out struct {
						Providers int `json:"providers"`
					}
					if err := adminCall(c, "POST", "/v1/admin/keys/reload", struct{}{}, &out); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "provider credentials reloaded (%d providers)\n", out.Providers)
					return nil
				},
			},
		},
	}
}

func retentionCommand() *cli.Command {
	return &cli.Command{
		Name:  "retention",
		Usage: "apply the tenants' retention policies (through the node's admin API; operator only)",
		Description: `Each node sweeps the conversations it owns every retention.interval: those idle
past their tenant's retention.days are deleted, those longer than
retention.messages trimmed (archived first with archive: true). "sweep" runs
one now on the node asked; in a cluster, ask each node.`,
		Subcommands: []*cli.Command{{
			Name: "sweep", Usage: "sweep this node's conversations now", Flags: adminFlags(),
			Action: func(c *cli.Context) error {
				var r manage.SweepResult
				if err := adminCall(c, "POST", "/v1/admin/retention/sweep", map[string]any{}, &r); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "scanned %d conversations: %d deleted, %d trimmed, %d archived, %d skipped, %d errors\n",
					r.Scanned, r.Deleted, r.Trimmed, r.Archived, r.Skipped, r.Errors)
				return nil
			},
		}},
	}
}

func tenantsCommand() *cli.Command {
	return &cli.Command{
		Name:  "tenants",
		Usage: "manage tenants (through the node's admin API; operator only)",
		Description: `Tenants are the isolated customers or teams of one deployment: each has its own
conversations, keys and limits. "default" always exists; tenants of the config
file cannot be deleted here.

Examples:
   moltbot tenants create acme --name "ACME Corp" --rpm 600 --tpm 200000 --models local/llama3.2
   moltbot tenants list
   moltbot tenants delete acme`,
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "add a tenant", ArgsUsage: "ID",
				Flags: append(adminFlags(),
					&cli.StringFlag{Name: "name"},
					&cli.StringSliceFlag{Name: "models", Usage: "allowed models (default: all)"},
					&cli.IntFlag{Name: "rpm", Usage: "requests per minute (0: unlimited)"},
					&cli.IntFlag{Name: "tpm", Usage: "tokens per minute (0: unlimited)"},
					&cli.Int64Flag{Name: "max-conversations", Usage: "conversations the tenant may keep (0: unlimited)"},
					&cli.Int64Flag{Name: "max-stored-bytes", Usage: "bytes its conversations may take (0: unlimited)"},
					&cli.IntFlag{Name: "retention-days", Usage: "delete conversations idle longer (0: keep)"},
					&cli.IntFlag{Name: "retention-messages", Usage: "trim conversations to their newest N messages (0: keep all)"},
					&cli.BoolFlag{Name: "archive", Usage: "archive what retention deletes or trims (WORKSPACE/archive/ID/)"},
					&cli.DurationFlag{Name: "rotate-every", Usage: "the tenant's keys expire after this"}),
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "moltbot tenants create ID [--name N] [--models a,b] [--rpm N] [--tpm N] [--max-conversations N] [--max-stored-bytes N] [--retention-days N] [--retention-messages N] [--archive]")
					if err != nil {
						return err
					}
					body := map[string]any{"id": id, "name": c.String("name"), "models": c.StringSlice("models"),
						"limits": map[string]int64{"requests_per_minute": int64(c.Int("rpm")), "tokens_per_minute": int64(c.Int("tpm")),
							"max_conversations": c.Int64("max-conversations"), "max_stored_bytes": c.Int64("max-stored-bytes")}}
					if c.IsSet("retention-days") || c.IsSet("retention-messages") || c.Bool("archive") {
						body["retention"] = map[string]any{"days": c.Int("retention-days"), "messages": c.Int("retention-messages"), "archive": c.Bool("archive")}
					}
					if c.IsSet("rotate-every") {
						body["rotate_every"] = c.Duration("rotate-every").String()
					}
					if err := adminCall(c, "POST", "/v1/admin/tenants", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "tenant %s created\n", id)
					return nil
				},
			},
			{
				Name: "list", Usage: "list tenants", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					var out struct {
						Tenants []auth.Tenant `json:"tenants"`
					}
					if err := adminCall(c, "GET", "/v1/admin/tenants", nil, &out); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tMODELS\tREQ/MIN\tTOKENS/MIN\tMAX CONV\tMAX BYTES\tRETENTION\tKEYS EXPIRE\tSOURCE")
					for _, t := range out.Tenants {
						src, models, every, keep := "api", "all", "-", "-"
						if t.FromConfig {
							src = "config"
						}
						if len(t.Models) > 0 {
							models = strings.Join(t.Models, ",")
						}
						if t.RotateEvery > 0 {
							every = t.RotateEvery.String()
						}
						if r := t.Retention; r != nil {
							keep = fmt.Sprintf("days=%d messages=%d archive=%v", r.Days, r.Messages, r.Archive)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.ID, t.Name, models, t.Limits.RequestsPerMinute, t.Limits.TokensPerMinute,
							t.Limits.MaxConversations, t.Limits.MaxStoredBytes, keep, every, src)
					}
					return tw.Flush()
				},
			},
			{
				Name: "delete", Usage: "remove a tenant and revoke its keys", ArgsUsage: "ID", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "moltbot tenants delete ID")
					if err != nil {
						return err
					}
					if err := adminCall(c, "DELETE", "/v1/admin/tenants/"+id, nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "tenant %s deleted\n", id)
					return nil
				},
			},
		},
	}
}

// writeAdminKey creates an operator key in the workspace's store and writes
// it to WORKSPACE/admin.key (mode 0600), unless that file exists.
func writeAdminKey(ws string, cfg *configs.Config) (bool, error) {
	path := filepath.Join(ws, adminKeyFile)
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	dir := cfg.Storage.Path
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(ws, dir)
	}
	store, err := storage.Open(dir, storage.Options{CacheSize: 1 << 20, MemtableSize: 1 << 20})
	if err != nil {
		return false, err
	}
	defer store.Close()
	as, err := auth.New(auth.Config{}, store)
	if err != nil {
		return false, err
	}
	defer as.Close()
	key, info, err := as.CreateKey(auth.DefaultTenant, "operator (moltbot init)", auth.ScopeAdmin, 0)
	if err != nil {
		return false, err
	}
	if al, err := audit.New(store, audit.Config{MaxEvents: cfg.Audit.MaxEvents, MaxAge: cfg.Audit.MaxAge.D()}); err == nil {
		al.Record(audit.Event{Actor: audit.Actor{Method: "cli"}, Action: "key.create", Target: "key:" + info.ID,
			Tenant: auth.DefaultTenant, Remote: "local", Outcome: audit.OK, Detail: "operator key written to " + path + " by moltbot init"})
	}
	return true, os.WriteFile(path, []byte(key+"\n"), 0o600)
}

// args returns the positional arguments of c and applies any flags written
// after them ("keys revoke ID --workspace W"): urfave/cli stops parsing flags
// at the first argument.
func args(c *cli.Context) ([]string, error) {
	var pos []string
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var flag cli.Flag
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					flag = f
				}
			}
		}
		if flag == nil {
			return nil, fail(2, "flag provided but not defined: -%s", name)
		}
		if _, isBool := flag.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 >= len(rest) {
				return nil, fail(2, "flag needs an argument: -%s", name)
			}
			i++
			value = rest[i]
		}
		// By the flag's first name: an alias (-w) is a flag of its own in
		// the flag set, which the command never reads.
		if err := c.Set(flag.Names()[0], value); err != nil {
			return nil, fail(2, "-%s: %v", name, err)
		}
	}
	return pos, nil
}

// oneArg returns the single positional argument, or a usage error.
func oneArg(c *cli.Context, usage string) (string, error) {
	pos, err := args(c)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fail(2, "usage: %s", usage)
	}
	return pos[0], nil
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fail(2, "--since: want an RFC 3339 time (2026-03-01T12:00:00Z) or a duration back from now (24h), got %q", v)
}

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "show the audit log of admin actions (through the node's admin API; operator only)",
		Description: `Prints what was done to keys, tenants, the config and the cluster: when, by
whom (tenant, key id or token subject, and how they authenticated; "signal"
for SIGHUP, "cli" for moltbot init), the action and its target, the client
address and the outcome (ok, denied, not_found, conflict, invalid, error).
Refused attempts are recorded too. No secret is ever recorded. Each node
keeps the log of the requests it served.

Examples:
   moltbot audit                       # the newest 50 events
   moltbot audit --since 24h --limit 200
   moltbot audit --since 2026-03-01T00:00:00Z --json`,
		Flags: append(adminFlags(),
			&cli.StringFlag{Name: "since", Usage: "events from this time on: RFC 3339, or a duration back from now (24h)"},
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many events (1 to 1000)"},
			&cli.BoolFlag{Name: "json", Usage: "print the API's JSON"}),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(c.Int("limit"))}}
			if c.Int("limit") < 1 || c.Int("limit") > 1000 {
				return fail(2, "--limit: want 1 to 1000, got %d", c.Int("limit"))
			}
			if v := c.String("since"); v != "" {
				t, err := parseSince(v, time.Now())
				if err != nil {
					return err
				}
				q.Set("since", t.UTC().Format(time.RFC3339Nano))
			}
			_, raw, err := adminShow(c, "/v1/admin/audit?"+q.Encode())
			if err != nil || raw == nil {
				return err
			}
			var page struct {
				Events []audit.Event `json:"events"`
				More   bool          `json:"more"`
				Next   string        `json:"next"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return fail(1, "unexpected reply: %v", err)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tOUTCOME\tFROM\tDETAIL")
			for _, e := range page.Events {
				who := e.Actor.Method
				switch {
				case e.Actor.KeyID != "":
					who = e.Actor.Tenant + "/" + e.Actor.KeyID
				case e.Actor.Subject != "":
					who = e.Actor.Tenant + "/" + e.Actor.Subject + " (jwt)"
				case e.Actor.Tenant != "" && e.Actor.Method == "none":
					who = e.Actor.Tenant + " (auth off)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), who, e.Action,
					orDash(e.Target), e.Outcome, orDash(e.Remote), strings.ReplaceAll(e.Detail, "\n", " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.More {
				fmt.Fprintf(c.App.ErrWriter, "more events: moltbot audit --since %s\n", page.Next)
			}
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
