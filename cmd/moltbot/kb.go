package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/skills/kb"
	"github.com/moltbot/moltbot/storage"
	"github.com/urfave/cli/v2"
)

// kbTag is the knowledge base's part of the cluster's shared state.
const kbTag = 0x01

// startKB opens the knowledge bases (storage.KB), shares them with the
// cluster (every node holds every document) and returns the stage before
// the model and what the management service needs.
//
// With an embedding chain (models.embeddings) the store embeds chunks
// through rt (once it is set: Start, after the runtime) and the stage
// fuses vectors with BM25.
func (n *Node) startKB(cfg *configs.Config, db storage.Namespaces, rt *atomic.Pointer[actors.Runtime]) (*kb.Stage, *manage.KB, error) {
	k := cfg.Skills.KB
	var embed moltbot.EmbedFunc
	if len(cfg.EmbedChain()) > 0 {
		embed = func(ctx context.Context, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
			r := rt.Load()
			if r == nil {
				return nil, moltbot.Errorf(moltbot.EUnavailable, "the runtime is not started")
			}
			return actors.EmbeddingsOf(r).Embed(ctx, req)
		}
	}
	st, err := kb.Open(kb.Config{KV: db.Namespace(storage.KB), MaxChunkRunes: k.ChunkRunes, Logger: n.Log, Embed: embed})
	if err != nil {
		return nil, nil, err
	}
	n.kb = st
	n.kbRef.Store(st)
	pub, err := n.sharePart(kbTag, st)
	if err != nil {
		return nil, nil, err
	}
	st.SetPublisher(pub)
	stage := kb.NewStage(st, kbStageConfig(cfg))
	return stage, &manage.KB{Store: st, Threshold: stage.Threshold}, nil
}

// kbStageConfig is the knowledge-base stage's part of cfg (skills.kb),
// at start and on every reload.
func kbStageConfig(cfg *configs.Config) kb.StageConfig {
	k := cfg.Skills.KB
	return kb.StageConfig{Default: k.Default, K: k.TopK, Threshold: k.Threshold, OnMiss: k.OnMiss, NoAnswer: k.NoAnswer, MinCosine: k.MinCosine}
}

// kbExts are the files `moltbot kb add DIR` sends.
var kbExts = []string{".md", ".markdown", ".txt"}

// kbBatchBytes bounds the text of one add request (the node takes 4 MiB
// bodies; JSON escaping may grow the text).
const kbBatchBytes = 1 << 20

// readKBFiles reads the documents of paths: files as they are named (by
// their base name), directories walked for .md, .markdown and .txt files
// (named by their path under the directory). Every document is checked
// here first, so that nothing is sent when one is wrong.
func readKBFiles(paths []string) ([]manage.KBDoc, error) {
	var docs []manage.KBDoc
	seen := map[string]string{}
	add := func(name, path string) error {
		if prev, dup := seen[name]; dup {
			return fail(2, "%s and %s would both be document %q", prev, path, name)
		}
		seen[name] = path
		if len(docs) >= kb.MaxDocs {
			return fail(2, "more than %d documents: a knowledge base holds at most %d", kb.MaxDocs, kb.MaxDocs)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fail(2, "%v", err)
		}
		if fi.Size() > kb.MaxDocBytes {
			return fail(2, "%s has %d bytes; a document is at most %d bytes: split it (at its headings)", path, fi.Size(), kb.MaxDocBytes)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fail(2, "%v", err)
		}
		if !utf8.Valid(b) {
			return fail(2, "%s is not UTF-8 text", path)
		}
		if !kb.ValidDocName(name) {
			return fail(2, "%s: %q cannot name a document", path, name)
		}
		docs = append(docs, manage.KBDoc{Name: name, Text: string(b)})
		return nil
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		if !fi.IsDir() {
			if err := add(filepath.Base(p), p); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			ext := strings.ToLower(filepath.Ext(path))
			if !d.Type().IsRegular() || !slicesContains(kbExts, ext) {
				return nil
			}
			rel, err := filepath.Rel(p, path)
			if err != nil {
				return err
			}
			return add(filepath.ToSlash(rel), path)
		})
		if err != nil {
			var ce cli.ExitCoder
			if errors.As(err, &ce) {
				return nil, err
			}
			return nil, fail(2, "%v", err)
		}
	}
	if len(docs) == 0 {
		return nil, fail(2, "no documents: give .md, .markdown or .txt files, or directories that hold some")
	}
	return docs, nil
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// batches cuts docs into requests of at most kbBatchBytes of text and the
// node's per-request count (one document over the bytes goes alone).
func batches(docs []manage.KBDoc) [][]manage.KBDoc {
	var out [][]manage.KBDoc
	var cur []manage.KBDoc
	size := 0
	for _, d := range docs {
		if len(cur) > 0 && (size+len(d.Text) > kbBatchBytes || len(cur) == 200) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur = append(cur, d)
		size += len(d.Text)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func kbTenantFlag() cli.Flag {
	return &cli.StringFlag{Name: "tenant", Usage: "the tenant whose knowledge bases (the operator's credential only; default: the credential's own)"}
}

func kbPath(name string, rest string, tenant string) string {
	p := "/v1/admin/kb"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	p += rest
	if tenant != "" {
		p += "?tenant=" + url.QueryEscape(tenant)
	}
	return p
}

func kbCommand() *cli.Command {
	return &cli.Command{
		Name:  "kb",
		Usage: "manage knowledge bases (through the node's admin API)",
		Description: `A knowledge base is a tenant's set of documents (Markdown or text) that its
bots search before they answer: a bot names its knowledge bases under bots:
(knowledge_bases: [support]). Documents are chunked at their headings and
indexed with BM25 (Chinese, Japanese and Korean by character bigrams) on every
node of a cluster; answers cite their sources.

Examples:
   moltbot kb add support examples/kb/lumen
   moltbot kb add support faq.md returns.md --tenant acme
   moltbot kb list
   moltbot kb search support "how long does a refund take"
   moltbot kb rm support returns.md
   moltbot kb rm support --all`,
		// HideHelpCommand on each: "help" may name a knowledge base (urfave
		// would take "kb add help DIR" for the help command).
		Subcommands: []*cli.Command{
			{
				Name: "add", HideHelpCommand: true, Usage: "add or replace documents: files, or directories of .md, .markdown and .txt files", ArgsUsage: "KB PATH...",
				Flags: append(adminFlags(), kbTenantFlag()),
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return fail(2, "usage: moltbot kb add KB PATH...")
					}
					name := c.Args().First()
					if !kb.ValidName(name) {
						return fail(2, "knowledge base name %q: %s", name, kb.NameRule)
					}
					docs, err := readKBFiles(c.Args().Tail())
					if err != nil {
						return err
					}
					n, err := adminTarget(c)
					if err != nil {
						return err
					}
					sent := 0
					for _, b := range batches(docs) {
						body := map[string]any{"documents": b}
						if t := c.String("tenant"); t != "" {
							body["tenant"] = t
						}
						if err := n.request(c, "POST", kbPath(name, "/documents", ""), body, nil); err != nil {
							return err
						}
						sent += len(b)
					}
					fmt.Fprintf(c.App.Writer, "added %d documents to knowledge base %s\n", sent, name)
					return nil
				},
			},
			{
				Name: "list", HideHelpCommand: true, Usage: "list the knowledge bases, or one's documents", ArgsUsage: "[KB]",
				Flags: append(adminFlags(), kbTenantFlag(), &cli.BoolFlag{Name: "json", Usage: "print the node's JSON"}),
				Action: func(c *cli.Context) error {
					name := c.Args().First()
					_, raw, err := adminShow(c, kbPath(name, "", c.String("tenant")))
					if err != nil || raw == nil {
						return err
					}
					var list []manage.KBInfo
					if name != "" {
						var one manage.KBInfo
						if err := json.Unmarshal(raw, &one); err != nil {
							return err
						}
						list = []manage.KBInfo{one}
					} else {
						var out struct {
							KBs []manage.KBInfo `json:"knowledge_bases"`
						}
						if err := json.Unmarshal(raw, &out); err != nil {
							return err
						}
						list = out.KBs
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					if name != "" {
						fmt.Fprintln(tw, "DOCUMENT\tBYTES\tSHA256")
						for _, d := range list[0].Docs {
							fmt.Fprintf(tw, "%s\t%d\t%s\n", d.Name, d.Bytes, d.Hash[:12])
						}
						return tw.Flush()
					}
					fmt.Fprintln(tw, "KNOWLEDGE BASE\tDOCUMENTS\tCHUNKS\tBYTES\tVECTORS")
					for _, b := range list {
						vec := "-"
						if b.EmbeddingModel != "" {
							vec = fmt.Sprintf("%d (%s)", b.Vectors, b.EmbeddingModel)
						}
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", b.Name, len(b.Docs), b.Chunks, b.Bytes, vec)
					}
					return tw.Flush()
				},
			},
			{
				Name: "rm", HideHelpCommand: true, Usage: "remove a document, or with --all every document of a knowledge base", ArgsUsage: "KB [DOCUMENT]",
				Flags: append(adminFlags(), kbTenantFlag(), &cli.BoolFlag{Name: "all", Usage: "remove every document (the knowledge base)"}),
				Action: func(c *cli.Context) error {
					name, doc := c.Args().Get(0), c.Args().Get(1)
					if name == "" || c.NArg() > 2 || (doc == "") != c.Bool("all") {
						return fail(2, "usage: moltbot kb rm KB DOCUMENT, or moltbot kb rm KB --all")
					}
					rest := ""
					if doc != "" {
						rest = "/documents/" + escapeDocPath(doc)
					}
					var out struct {
						Deleted int `json:"deleted"`
					}
					if err := adminCall(c, "DELETE", kbPath(name, rest, c.String("tenant")), nil, &out); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed %d documents from knowledge base %s\n", out.Deleted, name)
					return nil
				},
			},
			{
				Name: "search", HideHelpCommand: true, Usage: "search a knowledge base as a bot would", ArgsUsage: "KB QUERY",
				Flags: append(adminFlags(), kbTenantFlag(), &cli.IntFlag{Name: "k", Value: 4, Usage: "how many chunks"},
					&cli.BoolFlag{Name: "json", Usage: "print the node's JSON"}),
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return fail(2, "usage: moltbot kb search KB QUERY")
					}
					body := map[string]any{"query": strings.Join(c.Args().Tail(), " "), "k": c.Int("k")}
					if t := c.String("tenant"); t != "" {
						body["tenant"] = t
					}
					var res manage.KBSearchResult
					if err := adminCall(c, "POST", kbPath(c.Args().First(), "/search", ""), body, &res); err != nil {
						return err
					}
					if c.Bool("json") {
						b, _ := json.MarshalIndent(res, "", "  ")
						fmt.Fprintf(c.App.Writer, "%s\n", b)
						return nil
					}
					verdict := "hit"
					if !res.Hit {
						verdict = "no answer (below the threshold " + strconv.FormatFloat(res.Threshold, 'f', 2, 64) + ")"
					}
					fmt.Fprintf(c.App.Writer, "coverage %.2f: %s\n", res.Coverage, verdict)
					for _, r := range res.Results {
						fmt.Fprintf(c.App.Writer, "\n[%d] %s", r.N, r.Document)
						if r.Heading != "" {
							fmt.Fprintf(c.App.Writer, " — %s", r.Heading)
						}
						fmt.Fprintf(c.App.Writer, "  (score %.3f)\n%s\n", r.Score, indent(r.Snippet))
					}
					return nil
				},
			},
		},
	}
}

// escapeDocPath escapes each segment of a document's name for a URL path.
func escapeDocPath(doc string) string {
	segs := strings.Split(doc, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// kbSearch answers a JavaScript skill's context.search(name, query, k)
// for turn t: knowledge base name of t's tenant, which t's bot (if any)
// must name.
func (n *Node) kbSearch(ctx context.Context, t *moltbot.Turn, name, query string, k int) ([]moltbot.Citation, error) {
	st := n.kb
	switch {
	case st == nil:
		return nil, errors.New("this node has no knowledge bases")
	case t.Tenant == "":
		return nil, errors.New("this turn has no tenant")
	case t.Bot != nil && !slicesContains(t.Bot.KnowledgeBases, name):
		return nil, fmt.Errorf("bot %s does not name knowledge base %q (its knowledge_bases:)", t.Bot.Name, name)
	}
	found, _, err := st.Search(t.Tenant, []string{name}, kb.Query{Text: query, K: k})
	if err != nil {
		return nil, err
	}
	out := make([]moltbot.Citation, len(found))
	for i, f := range found {
		out[i] = kb.CitationOf(f)
	}
	return out, nil
}

// botsSearch reports whether some bot of cfg names a knowledge base.
func botsSearch(cfg *configs.Config) bool {
	for _, b := range cfg.Bots {
		if len(b.KnowledgeBases) > 0 {
			return true
		}
	}
	return false
}
