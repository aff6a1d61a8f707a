package builtin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
)

// ToolsOptions are the tools preset's (with: of use: tools).
type ToolsOptions struct {
	// Calculator, Units and Dates switch its tools on (all by default).
	Calculator bool `yaml:"calculator"`
	Units      bool `yaml:"units"`
	Dates      bool `yaml:"dates"`
	// Timezone is where "today" is (an IANA name; default: the node's
	// local time).
	Timezone string `yaml:"timezone"`
}

func (o *ToolsOptions) check() error {
	if !o.Calculator && !o.Units && !o.Dates {
		return optErr("calculator", "calculator, units and dates are all off: the preset would do nothing")
	}
	if o.Timezone != "" {
		if _, err := time.LoadLocation(o.Timezone); err != nil {
			return optErr("timezone", "%v", err)
		}
	}
	return nil
}

func registerTools() {
	register("tools", "a calculator, unit conversions (length, mass, temperature, data) and dates (no model)",
		func() any { return &ToolsOptions{Calculator: true, Units: true, Dates: true} },
		func(name string, opts any, env Env) (Preset, error) {
			o := opts.(*ToolsOptions)
			loc := time.Local
			if o.Timezone != "" {
				var err error
				if loc, err = time.LoadLocation(o.Timezone); err != nil {
					return nil, optErr("timezone", "%v", err)
				}
			}
			return &Tools{base: base{name, "tools"}, o: *o, loc: loc, now: time.Now}, nil
		})
}

// Tools is the tools preset: a stage before the model that answers
// arithmetic, a unit conversion or a date question, the whole message
// being one; anything else goes on to the model.
type Tools struct {
	base
	o   ToolsOptions
	loc *time.Location
	now func() time.Time
}

// Describe implements Preset.
func (t *Tools) Describe() string {
	var on []string
	if t.o.Calculator {
		on = append(on, "calculator")
	}
	if t.o.Units {
		on = append(on, "units")
	}
	if t.o.Dates {
		on = append(on, "dates")
	}
	return strings.Join(on, ", ")
}

// Answer answers s when it is a question for one of the tools.
func (t *Tools) Answer(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 512 {
		return "", false
	}
	if t.o.Dates {
		if a, ok := dates(s, t.now().In(t.loc)); ok {
			return a, true
		}
	}
	if t.o.Units {
		if a, ok := convertUnits(s); ok {
			return a, true
		}
	}
	if t.o.Calculator {
		return calculate(s)
	}
	return "", false
}

// BeforeModel answers a question for one of the tools.
func (t *Tools) BeforeModel(ctx context.Context, turn *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if !t.runs(turn) {
		return nil, nil
	}
	s, ok := userText(turn)
	if !ok {
		return nil, nil
	}
	a, ok := t.Answer(s)
	if !ok {
		return nil, nil
	}
	return t.answer(turn, fn, a, moltbot.Usage{})
}

var (
	// What may come before and after an expression: a cue that it is one.
	calcPrefix = lazyRE(`(?i)^(?:calc(?:ulate)?|compute|eval(?:uate)?|what is|what's|how much is|计算|算一下|算算|请计算|请问)\s*[:：]?\s*`)
	calcSuffix = lazyRE(`\s*(?:=\s*[?？]?|等于多少|等于几|是多少|得多少|等于)?\s*[?？]?\s*$`)
	// Without a cue, an expression must have an operator a date, a phone
	// number or a range does not: "2026-12-01", "138-0013-8000" and
	// "10-20" are not sums.
	calcOperator = lazyRE(`[+*/^%×÷＋＊／]|\s[-−]\s|[)）]`)
)

// calculate answers s when it is arithmetic, with a cue ("calc", "=",
// "等于多少") or an operator that makes it plainly so.
func calculate(s string) (string, bool) {
	expr := s
	cue := false
	if loc := calcPrefix().FindStringIndex(expr); loc != nil {
		expr, cue = expr[loc[1]:], true
	}
	if loc := calcSuffix().FindStringIndex(expr); loc != nil && loc[0] < loc[1] {
		cue = cue || strings.TrimSpace(expr[loc[0]:]) != ""
		expr = expr[:loc[0]]
	}
	expr = strings.TrimSpace(expr)
	if strings.ContainsFunc(expr, func(r rune) bool { return !strings.ContainsRune(calcChars, r) }) {
		return "", false // words: not for the calculator
	}
	if expr == "" || !strings.ContainsAny(expr, "0123456789０１２３４５６７８９") || !cue && !calcOperator().MatchString(expr) {
		return "", false
	}
	zh := isCJK(s)
	v, err := Calc(expr)
	switch {
	case errors.Is(err, ErrSyntax):
		return "", false
	case err == nil:
		p := &calcParser{s: calcNormalize(expr)}
		if _, err := p.expr(0); err == nil && p.ops == 0 {
			return "", false // a number alone
		}
		return fmt.Sprintf("%s = %s", expr, formatNumber(v)), true
	case zh:
		return fmt.Sprintf("%s：%s", expr, calcErrZH(err)), true
	default:
		return fmt.Sprintf("%s: %v", expr, err), true
	}
}

// calcChars are the characters an expression is made of.
const calcChars = "0123456789. \t+-*/%^()×÷·−–０１２３４５６７８９．＋－＊／％＾（）\u3000"

// calcErrZH is an error of the calculator in Chinese (a switch, not a map
// literal: no code at start; docs/DESIGN.md, "What a linked package may
// do at start").
func calcErrZH(err error) string {
	switch err {
	case ErrDivByZero:
		return "除数不能为零"
	case ErrTooLarge:
		return "结果太大"
	case ErrNotReal:
		return "结果不是实数"
	case ErrTooLong:
		return "表达式太长"
	case ErrTooDeep:
		return "括号嵌套太深"
	}
	return ""
}
