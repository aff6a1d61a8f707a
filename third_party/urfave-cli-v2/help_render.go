package cli

// moltbot's patch (third_party/urfave-cli-v2/PATCH.md): the help pages are
// rendered by hand, not by text/template. text/template looks methods up by
// a name known only at run time (reflect.Value.MethodByName), and a binary
// that can reach such a call keeps every exported method of every type
// (the linker's dead code elimination gives up): 3.8 MB of moltbot's 29.7.
// urfave/cli v3 has the same cure behind its urfave_cli_no_template tag.
//
// renderHelp writes what printHelpCustom wrote with text/template for the
// three built-in templates (AppHelpTemplate, CommandHelpTemplate,
// SubcommandHelpTemplate, as this package defines them), byte for byte,
// through the same tabwriter. A template that is not one of them cannot be
// rendered; renderHelp says so on ErrWriter.

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// The built-in templates as this package defines them, kept before a
// program can reassign the exported variables (initialised statically, so
// no code runs at start).
var (
	builtinAppHelpTemplate        = AppHelpTemplate
	builtinCommandHelpTemplate    = CommandHelpTemplate
	builtinSubcommandHelpTemplate = SubcommandHelpTemplate
)

// helpView is what the templates read of an *App or a *Command.
type helpView struct {
	helpName, usage, usageText, argsUsage string
	description, category                 string
	version, copyright                    string
	args, hideVersion, hasCommands        bool
	authors                               []*Author
	visibleFlags                          func() []Flag
	visibleCommands                       func() []*Command
	visibleCategories                     func() []CommandCategory
	visibleFlagCategories                 func() []VisibleFlagCategory
}

func viewOf(data interface{}) (helpView, bool) {
	switch d := data.(type) {
	case *App:
		if d == nil {
			return helpView{}, false
		}
		return helpView{
			helpName: d.HelpName, usage: d.Usage, usageText: d.UsageText, argsUsage: d.ArgsUsage,
			description: d.Description, version: d.Version, copyright: d.Copyright,
			args: d.Args, hideVersion: d.HideVersion, hasCommands: len(d.Commands) > 0,
			authors:      d.Authors,
			visibleFlags: d.VisibleFlags, visibleCommands: d.VisibleCommands,
			visibleCategories: d.VisibleCategories, visibleFlagCategories: d.VisibleFlagCategories,
		}, true
	case *Command:
		if d == nil {
			return helpView{}, false
		}
		return helpView{
			helpName: d.HelpName, usage: d.Usage, usageText: d.UsageText, argsUsage: d.ArgsUsage,
			description: d.Description, category: d.Category, args: d.Args,
			visibleFlags: d.VisibleFlags, visibleCommands: d.VisibleCommands,
			visibleCategories: d.VisibleCategories, visibleFlagCategories: d.VisibleFlagCategories,
		}, true
	}
	return helpView{}, false
}

// renderHelp is printHelpCustom without text/template.
func renderHelp(out io.Writer, templ string, data interface{}, customFuncs map[string]interface{}) {
	const maxLineLength = 10000
	wrapAt := maxLineLength
	if wa, ok := customFuncs["wrapAt"].(func() int); ok {
		wrapAt = wa()
	}
	v, ok := viewOf(data)
	var render func(*strings.Builder)
	switch {
	case ok && templ == builtinAppHelpTemplate:
		render = func(b *strings.Builder) { v.app(b, wrapAt) }
	case ok && templ == builtinCommandHelpTemplate:
		render = func(b *strings.Builder) { v.command(b, wrapAt, false) }
	case ok && templ == builtinSubcommandHelpTemplate:
		render = func(b *strings.Builder) { v.command(b, wrapAt, true) }
	default:
		_, _ = fmt.Fprintf(ErrWriter, "cli: this build renders only the built-in help templates (moltbot's third_party/urfave-cli-v2: no text/template)\n")
		return
	}
	var b strings.Builder
	complete := func() (complete bool) {
		// A method that panics (VisibleCategories of a command not yet
		// set up: "help CMD" for a CMD with subcommands) stopped
		// text/template where it was, and printHelpCustom then returned
		// without flushing the tabwriter: the same page, cut at the same
		// place.
		defer func() {
			if recover() != nil {
				complete = false
			}
		}()
		render(&b)
		return true
	}()
	w := tabwriter.NewWriter(out, 1, 8, 2, ' ', 0)
	_, _ = io.WriteString(w, b.String())
	if complete {
		_ = w.Flush()
	}
}

// nameLine is helpNameTemplate.
func (v helpView) nameLine(wrapAt int) string {
	s := wrap(v.helpName, 3, wrapAt)
	if v.usage != "" {
		s += " - " + wrap(v.usage, offset(v.helpName, 6), wrapAt)
	}
	return s
}

// usageLine is usageTemplate.
func (v helpView) usageLine(wrapAt int) string {
	if v.usageText != "" {
		return wrap(v.usageText, 3, wrapAt)
	}
	s := v.helpName
	if len(v.visibleFlags()) > 0 {
		s += " [command options]"
	}
	if v.argsUsage != "" {
		s += " " + v.argsUsage
	} else if v.args {
		s += " [arguments...]"
	}
	return s
}

// commandList is visibleCommandCategoryTemplate (and, for a category
// without a name, visibleCommandTemplate).
func (v helpView) commandList(b *strings.Builder, wrapAt int) {
	for _, cat := range v.visibleCategories() {
		if cat.Name() != "" {
			b.WriteString("\n   " + cat.Name() + ":")
			for _, c := range cat.VisibleCommands() {
				b.WriteString("\n     " + strings.Join(c.Names(), ", ") + "\t" + c.Usage)
			}
			continue
		}
		cv := offsetCommands(cat.VisibleCommands(), 5)
		for _, c := range cat.VisibleCommands() {
			s := strings.Join(c.Names(), ", ")
			b.WriteString("\n   " + s + indent(subtract(cv, offset(s, 3)), "") + wrap(c.Usage, cv, wrapAt))
		}
	}
}

// flagList is visibleFlagCategoryTemplate, or visibleFlagTemplate when
// there are no flag categories; heading is "GLOBAL OPTIONS:" or
// "OPTIONS:".
func (v helpView) flagList(b *strings.Builder, heading string, wrapAt int) {
	if cats := v.visibleFlagCategories(); len(cats) > 0 {
		b.WriteString("\n\n" + heading)
		for _, cat := range cats {
			b.WriteString("\n   ")
			if cat.Name() != "" {
				b.WriteString(cat.Name() + "\n\n   ")
			}
			flags := cat.Flags()
			for i, f := range flags {
				if subtract(len(flags), i) == 1 {
					b.WriteString(fmt.Sprint(f) + "\n")
				} else {
					b.WriteString(fmt.Sprint(f) + "\n   ")
				}
			}
		}
		return
	}
	if flags := v.visibleFlags(); len(flags) > 0 {
		b.WriteString("\n\n" + heading)
		for _, f := range flags {
			b.WriteString("\n   " + wrap(f.String(), 6, wrapAt))
		}
	}
}

// app is AppHelpTemplate.
func (v helpView) app(b *strings.Builder, wrapAt int) {
	b.WriteString("NAME:\n   " + v.nameLine(wrapAt) + "\n\nUSAGE:\n   ")
	if v.usageText != "" {
		b.WriteString(wrap(v.usageText, 3, wrapAt))
	} else {
		b.WriteString(v.helpName + " ")
		if len(v.visibleFlags()) > 0 {
			b.WriteString("[global options]")
		}
		if v.hasCommands {
			b.WriteString(" command [command options]")
		}
		if v.argsUsage != "" {
			b.WriteString(" " + v.argsUsage)
		} else if v.args {
			b.WriteString(" [arguments...]")
		}
	}
	if v.version != "" && !v.hideVersion {
		b.WriteString("\n\nVERSION:\n   " + v.version)
	}
	if v.description != "" {
		b.WriteString("\n\nDESCRIPTION:\n   " + wrap(v.description, 3, wrapAt))
	}
	if n := len(v.authors); n > 0 {
		b.WriteString("\n\nAUTHOR")
		if n != 1 {
			b.WriteString("S")
		}
		b.WriteString(":\n   ")
		for i, a := range v.authors {
			if i > 0 {
				b.WriteString("\n   ")
			}
			b.WriteString(fmt.Sprint(a))
		}
	}
	if len(v.visibleCommands()) > 0 {
		b.WriteString("\n\nCOMMANDS:")
		v.commandList(b, wrapAt)
	}
	v.flagList(b, "GLOBAL OPTIONS:", wrapAt)
	if v.copyright != "" {
		b.WriteString("\n\nCOPYRIGHT:\n   " + wrap(v.copyright, 3, wrapAt))
	}
	b.WriteString("\n")
}

// command is CommandHelpTemplate, or SubcommandHelpTemplate with sub.
func (v helpView) command(b *strings.Builder, wrapAt int, sub bool) {
	b.WriteString("NAME:\n   " + v.nameLine(wrapAt) + "\n\nUSAGE:\n   " + v.usageLine(wrapAt))
	if v.category != "" {
		b.WriteString("\n\nCATEGORY:\n   " + v.category)
	}
	if v.description != "" {
		b.WriteString("\n\nDESCRIPTION:\n   " + wrap(v.description, 3, wrapAt))
	}
	if sub && len(v.visibleCommands()) > 0 {
		b.WriteString("\n\nCOMMANDS:")
		v.commandList(b, wrapAt)
	}
	v.flagList(b, "OPTIONS:", wrapAt)
	b.WriteString("\n")
}

// HelpTemplateFuncs returns the functions the built-in templates call,
// for a test that renders them with text/template and compares (moltbot's
// cmd/moltbot TestHelpWithoutTemplates). Not in upstream urfave/cli.
func HelpTemplateFuncs() map[string]interface{} {
	const maxLineLength = 10000
	return map[string]interface{}{
		"join":           strings.Join,
		"subtract":       subtract,
		"indent":         indent,
		"nindent":        nindent,
		"trim":           strings.TrimSpace,
		"wrap":           func(input string, offset int) string { return wrap(input, offset, maxLineLength) },
		"offset":         offset,
		"offsetCommands": offsetCommands,
	}
}

// HelpSubTemplates returns the named templates the built-in templates
// include, for the same test. Not in upstream urfave/cli.
func HelpSubTemplates() map[string]string {
	return map[string]string{
		"helpNameTemplate":                  helpNameTemplate,
		"usageTemplate":                     usageTemplate,
		"descriptionTemplate":               descriptionTemplate,
		"visibleCommandTemplate":            visibleCommandTemplate,
		"copyrightTemplate":                 copyrightTemplate,
		"versionTemplate":                   versionTemplate,
		"visibleFlagCategoryTemplate":       visibleFlagCategoryTemplate,
		"visibleFlagTemplate":               visibleFlagTemplate,
		"visibleGlobalFlagCategoryTemplate": strings.Replace(visibleFlagCategoryTemplate, "OPTIONS", "GLOBAL OPTIONS", -1),
		"authorsTemplate":                   authorsTemplate,
		"visibleCommandCategoryTemplate":    visibleCommandCategoryTemplate,
	}
}
