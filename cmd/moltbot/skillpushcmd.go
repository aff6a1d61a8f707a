package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/skills"
	"github.com/urfave/cli/v2"
)

// skillFilesURL is the admin API's path of a tenant's pushed skills (path
// "": all of them).
func skillFilesURL(path, tenant string) string {
	p := "/v1/admin/skills/files"
	if path != "" {
		p += "/" + escapeDocPath(path)
	}
	if tenant != "" {
		p += "?tenant=" + url.QueryEscape(tenant)
	}
	return p
}

func skillTenantFlag() cli.Flag {
	return &cli.StringFlag{Name: "tenant", Usage: "the tenant whose skills (the operator's credential only; default: the credential's own)"}
}

// readSkillFiles reads the files of paths as a push sends them: a file
// by its name (NAME.js, intents.yaml; another .yaml or .yml file is a
// flow, flows/NAME.yaml), a directory as a workspace's skills/ is laid
// out (*.js and intents.yaml at its top, flows/*.yaml below). Every file is checked here first (its path, size,
// UTF-8), so that nothing is sent when one is wrong.
func readSkillFiles(paths []string) ([]manage.SkillFile, error) {
	var out []manage.SkillFile
	seen := map[string]string{}
	add := func(name, path string) error {
		if prev, dup := seen[name]; dup {
			return fail(2, "%s and %s would both be %s", prev, path, name)
		}
		seen[name] = path
		if err := skills.CheckPushedPath(name); err != nil {
			return fail(2, "%s: %v", path, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fail(2, "%v", err)
		}
		if fi.Size() > skills.MaxPushedFile {
			return fail(2, "%s has %d bytes; a pushed file is at most %d", path, fi.Size(), skills.MaxPushedFile)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fail(2, "%v", err)
		}
		if !utf8.Valid(b) {
			return fail(2, "%s is not UTF-8 text", path)
		}
		out = append(out, manage.SkillFile{Path: name, Source: string(b)})
		return nil
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		if !fi.IsDir() {
			name := filepath.Base(p)
			if ext := filepath.Ext(name); (ext == ".yaml" || ext == ".yml") && name != skills.IntentsFile {
				name = skills.FlowsDir + name
			}
			if err := add(name, p); err != nil {
				return nil, err
			}
			continue
		}
		// A directory: *.js and intents.yaml at its top, flows/*.yaml;
		// nothing else.
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), ".js") || e.Name() == skills.IntentsFile) {
				if err := add(e.Name(), filepath.Join(p, e.Name())); err != nil {
					return nil, err
				}
			}
		}
		ents, err = os.ReadDir(filepath.Join(p, "flows"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fail(2, "%v", err)
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if e.Type().IsRegular() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
				if err := add(skills.FlowsDir+e.Name(), filepath.Join(p, "flows", e.Name())); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fail(2, "no skill files: give NAME.js, NAME.yaml (a flow) and intents.yaml files, or a directory laid out as skills/ (*.js, intents.yaml, flows/*.yaml)")
	}
	return out, nil
}

func printSkillFiles(c *cli.Context, l *manage.SkillFileList) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tBYTES\tSHA256")
	for _, f := range l.Files {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", f.Path, f.Bytes, f.SHA256[:min(12, len(f.SHA256))])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "version %s: %d files, %d bytes\n", orDash(l.Version), len(l.Files), l.Bytes)
	return nil
}

// skillFileCommands are moltbot skills push, pull, rm and files: a
// tenant's own skills through a node's admin API.
func skillFileCommands() []*cli.Command {
	return []*cli.Command{{
		Name: "push", HideHelpCommand: true, Usage: "push a tenant's own skills (NAME.js, flows/NAME.yaml) to a node: they reach every node of its cluster", ArgsUsage: "PATH...",
		Description: `Sends JavaScript skills (NAME.js), YAML flows (NAME.yaml, kept as
flows/NAME.yaml) and an intents file (intents.yaml: in place of the
workspace's for the tenant's turns) to the node's admin API for the
credential's tenant (or, with the operator's credential, --tenant's). A
directory is read as a workspace's skills/ is laid out: *.js and
intents.yaml at its top, flows/*.yaml. The node
checks every file as it would load it (JavaScript syntax, RE2 patterns, a
flow's keys and the skills its nodes call, the intents file's keys) before it keeps any: a file
that does not load is refused naming the file and line, and nothing of
the push is kept. Files of the same path are replaced; --replace makes the
pushed files the tenant's only ones; --if-version V pushes only if the
files are still at version V (moltbot skills files shows it), so that
two people pushing at once do not undo each other. The tenant's turns see its own
skills before the workspace's (one of the same name wins), on every node,
from their next turn.

Examples:
   moltbot skills push greet.js refund.yaml
   moltbot skills push --tenant acme ./acme-skills
   moltbot skills push --replace ./acme-skills`,
		Flags: append(adminFlags(), skillTenantFlag(), &cli.BoolFlag{Name: "replace", Usage: "the pushed files become the tenant's only ones"},
			&cli.StringFlag{Name: "if-version", Usage: "push only if the tenant's files are at this version (skills files shows it; \"\": none yet), else exit 1: another push came first"}),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return fail(2, "usage: moltbot skills push [--tenant T] PATH...")
			}
			files, err := readSkillFiles(c.Args().Slice())
			if err != nil {
				return err
			}
			type sent struct {
				Path   string `json:"path"`
				Source string `json:"source"`
			}
			put := make([]sent, len(files))
			for i, f := range files {
				put[i] = sent{f.Path, f.Source}
			}
			body := map[string]any{"files": put, "replace": c.Bool("replace")}
			if c.IsSet("if-version") {
				body["if_version"] = c.String("if-version")
			}
			if t := c.String("tenant"); t != "" {
				body["tenant"] = t
			}
			var out manage.SkillFileList
			if err := adminCall(c, "POST", skillFilesURL("", ""), body, &out); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "pushed %d files (version %s); skills: %s; flows: %s\n", len(files), orDash(out.Version),
				orDash(strings.Join(out.Skills, ", ")), orDash(strings.Join(out.Flows, ", ")))
			return nil
		},
	}, {
		Name: "pull", HideHelpCommand: true, Usage: "copy a tenant's pushed skills from a node into a directory", ArgsUsage: "DIR [FILE...]",
		Flags: append(adminFlags(), skillTenantFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return fail(2, "usage: moltbot skills pull [--tenant T] DIR [FILE...]")
			}
			dir, want := c.Args().First(), c.Args().Tail()
			n, err := adminTarget(c)
			if err != nil {
				return err
			}
			tenant := c.String("tenant")
			if len(want) == 0 {
				var l manage.SkillFileList
				if err := n.request(c, "GET", skillFilesURL("", tenant), nil, &l); err != nil {
					return err
				}
				for _, f := range l.Files {
					want = append(want, f.Path)
				}
			}
			for _, p := range want {
				if err := skills.CheckPushedPath(p); err != nil {
					return fail(2, "%v", err)
				}
				var f manage.SkillFile
				if err := n.request(c, "GET", skillFilesURL(p, tenant), nil, &f); err != nil {
					return err
				}
				dst := filepath.Join(dir, filepath.FromSlash(p))
				if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
					return fail(1, "%v", err)
				}
				if err := os.WriteFile(dst, []byte(f.Source), 0o600); err != nil {
					return fail(1, "%v", err)
				}
			}
			fmt.Fprintf(c.App.Writer, "pulled %d files into %s\n", len(want), dir)
			return nil
		},
	}, {
		Name: "rm", HideHelpCommand: true, Usage: "remove pushed skill files of a tenant (from every node)", ArgsUsage: "FILE...",
		Flags: append(adminFlags(), skillTenantFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return fail(2, "usage: moltbot skills rm [--tenant T] FILE... (as skills files lists them: greet.js, flows/refund.yaml)")
			}
			body := map[string]any{"remove": c.Args().Slice()}
			if t := c.String("tenant"); t != "" {
				body["tenant"] = t
			}
			var out manage.SkillFileList
			if err := adminCall(c, "POST", skillFilesURL("", ""), body, &out); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "removed %d files (version %s, %d files left)\n", c.NArg(), orDash(out.Version), len(out.Files))
			return nil
		},
	}, {
		Name: "files", HideHelpCommand: true, Usage: "list a tenant's pushed skill files on a node",
		Flags: append(adminFlags(), skillTenantFlag(), &cli.BoolFlag{Name: "json", Usage: "print the node's JSON"}),
		Action: func(c *cli.Context) error {
			var l manage.SkillFileList
			if err := adminCall(c, "GET", skillFilesURL("", c.String("tenant")), nil, &l); err != nil {
				return err
			}
			if c.Bool("json") {
				b, _ := json.MarshalIndent(l, "", "  ")
				fmt.Fprintf(c.App.Writer, "%s\n", b)
				return nil
			}
			return printSkillFiles(c, &l)
		},
	}}
}
