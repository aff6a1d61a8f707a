package flow

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The branch conditions: a small language of its own rather than
// expr-lang/expr, which would add 844 KB to the node's binary (measured,
// docs/DESIGN.md) for what a flow needs:
//
//	cond    = or
//	or      = and { ("or" | "||") and }
//	and     = not { ("and" | "&&") not }
//	not     = ("not" | "!") not | compare
//	compare = operand [ op operand ]       op: == != < <= > >= contains matches
//	operand = "string" | 'string' | number | true | false | var | "(" cond ")"
//
// Every value is a string (a flow's variables are text); < <= > >= compare
// numbers when both sides are numbers, else the strings; == and != compare
// numbers as numbers too (1.0 == 1). An operand alone is true when it is
// neither empty, "0" nor "false". matches takes an RE2 pattern, a literal
// string, compiled when the flow loads. A var is a name of letters, digits,
// '_', '-' and '.' (a node's result: kb.score is the var "kb.score").

// cond is a parsed condition.
type cond interface {
	eval(vars map[string]string) value
}

// value is what an expression gives: its text, and whether it is a
// comparison's or a connective's result (then ok is the truth).
type value struct {
	s       string
	boolean bool
	ok      bool
}

func (v value) truth() bool {
	if v.boolean {
		return v.ok
	}
	return v.s != "" && v.s != "0" && v.s != "false"
}

func boolean(b bool) value {
	if b {
		return value{s: "true", boolean: true, ok: true}
	}
	return value{s: "false", boolean: true}
}

type (
	literal struct{ s string }
	varRef  struct{ name string }
	notExpr struct{ x cond }
	andExpr struct{ l, r cond }
	orExpr  struct{ l, r cond }
	compare struct {
		op   string
		l, r cond
		re   *regexp.Regexp // matches
	}
)

func (l literal) eval(map[string]string) value     { return value{s: l.s} }
func (v varRef) eval(vars map[string]string) value { return value{s: vars[v.name]} }
func (n notExpr) eval(vars map[string]string) value {
	return boolean(!n.x.eval(vars).truth())
}
func (a andExpr) eval(vars map[string]string) value {
	return boolean(a.l.eval(vars).truth() && a.r.eval(vars).truth())
}
func (o orExpr) eval(vars map[string]string) value {
	return boolean(o.l.eval(vars).truth() || o.r.eval(vars).truth())
}

func (c compare) eval(vars map[string]string) value {
	l, r := c.l.eval(vars).s, c.r.eval(vars).s
	switch c.op {
	case "contains":
		return boolean(strings.Contains(l, r))
	case "matches":
		return boolean(c.re.MatchString(l))
	}
	ln, lerr := strconv.ParseFloat(strings.TrimSpace(l), 64)
	rn, rerr := strconv.ParseFloat(strings.TrimSpace(r), 64)
	if lerr == nil && rerr == nil {
		switch c.op {
		case "==":
			return boolean(ln == rn)
		case "!=":
			return boolean(ln != rn)
		case "<":
			return boolean(ln < rn)
		case "<=":
			return boolean(ln <= rn)
		case ">":
			return boolean(ln > rn)
		default: // ">="
			return boolean(ln >= rn)
		}
	}
	switch c.op {
	case "==":
		return boolean(l == r)
	case "!=":
		return boolean(l != r)
	case "<":
		return boolean(l < r)
	case "<=":
		return boolean(l <= r)
	case ">":
		return boolean(l > r)
	default: // ">="
		return boolean(l >= r)
	}
}

// maxCond bounds a condition's text.
const maxCond = 4 << 10

// parseCond parses a condition; vars gets each variable it names.
func parseCond(src string, vars func(name string)) (cond, error) {
	if len(src) > maxCond {
		return nil, fmt.Errorf("a condition of %d bytes; at most %d", len(src), maxCond)
	}
	if !utf8.ValidString(src) {
		return nil, fmt.Errorf("a condition that is not UTF-8")
	}
	p := &condParser{src: src, vars: vars}
	p.next()
	c, err := p.or(0)
	if err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tEOF:
	case tBad:
		return nil, p.errorf("%s", p.tok.text)
	default:
		return nil, p.errorf("unexpected %s", p.tok)
	}
	return c, nil
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tString
	tNumber
	tIdent
	tOp
	tLParen
	tRParen
	tBad
)

type token struct {
	kind tokKind
	text string // a string's value; an op's or ident's spelling
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of condition"
	case tString:
		return strconv.Quote(t.text)
	case tBad:
		return t.text
	}
	return fmt.Sprintf("%q", t.text)
}

type condParser struct {
	src  string
	i    int
	tok  token
	vars func(string)
}

func (p *condParser) errorf(format string, args ...any) error {
	return fmt.Errorf("condition %q, at %d: %s", p.src, p.tok.pos+1, fmt.Sprintf(format, args...))
}

// maxDepth bounds nesting (parentheses, not): a hostile condition cannot
// exhaust the stack.
const maxDepth = 32

func (p *condParser) or(depth int) (cond, error) {
	l, err := p.and(depth)
	for err == nil && p.word("or", "||") {
		p.next()
		var r cond
		if r, err = p.and(depth); err == nil {
			l = orExpr{l, r}
		}
	}
	return l, err
}

func (p *condParser) and(depth int) (cond, error) {
	l, err := p.not(depth)
	for err == nil && p.word("and", "&&") {
		p.next()
		var r cond
		if r, err = p.not(depth); err == nil {
			l = andExpr{l, r}
		}
	}
	return l, err
}

func (p *condParser) not(depth int) (cond, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested more than %d deep", maxDepth)
	}
	if p.word("not", "!") {
		p.next()
		x, err := p.not(depth + 1)
		return notExpr{x}, err
	}
	return p.compare(depth)
}

// word reports whether the token is one of the keywords or operators.
func (p *condParser) word(words ...string) bool {
	if p.tok.kind != tIdent && p.tok.kind != tOp {
		return false
	}
	for _, w := range words {
		if p.tok.text == w {
			return true
		}
	}
	return false
}

func (p *condParser) compare(depth int) (cond, error) {
	l, err := p.operand(depth)
	if err != nil {
		return nil, err
	}
	if !p.word("==", "!=", "<", "<=", ">", ">=", "contains", "matches") {
		return l, nil
	}
	op := p.tok.text
	p.next()
	if op == "matches" {
		if p.tok.kind != tString {
			return nil, p.errorf("matches wants a pattern in quotes, not %s", p.tok)
		}
		re, err := regexp.Compile(p.tok.text)
		if err != nil {
			return nil, p.errorf("pattern %q: %v (RE2 syntax)", p.tok.text, err)
		}
		p.next()
		return compare{op: op, l: l, r: literal{}, re: re}, nil
	}
	r, err := p.operand(depth)
	if err != nil {
		return nil, err
	}
	return compare{op: op, l: l, r: r}, nil
}

func (p *condParser) operand(depth int) (cond, error) {
	t := p.tok
	switch t.kind {
	case tString, tNumber:
		p.next()
		return literal{t.text}, nil
	case tIdent:
		switch t.text {
		case "true", "false":
			p.next()
			return literal{t.text}, nil
		case "and", "or", "not", "contains", "matches":
			return nil, p.errorf("expected a value, found %s", t)
		}
		p.next()
		if p.vars != nil {
			p.vars(t.text)
		}
		return varRef{t.text}, nil
	case tLParen:
		p.next()
		c, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, p.errorf("expected ), found %s", p.tok)
		}
		p.next()
		return c, nil
	case tBad:
		return nil, p.errorf("%s", t.text)
	}
	return nil, p.errorf("expected a value, found %s", t)
}

func identRune(r rune) bool {
	return r == '_' || r == '-' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// next reads the next token into p.tok.
func (p *condParser) next() {
	for p.i < len(p.src) && (p.src[p.i] == ' ' || p.src[p.i] == '\t' || p.src[p.i] == '\n' || p.src[p.i] == '\r') {
		p.i++
	}
	start := p.i
	if p.i >= len(p.src) {
		p.tok = token{kind: tEOF, pos: start}
		return
	}
	c := p.src[p.i]
	switch {
	case c == '(':
		p.i++
		p.tok = token{kind: tLParen, text: "(", pos: start}
	case c == ')':
		p.i++
		p.tok = token{kind: tRParen, text: ")", pos: start}
	case c == '"' || c == '\'':
		p.i++
		var b strings.Builder
		for p.i < len(p.src) && p.src[p.i] != c {
			if p.src[p.i] == '\\' && p.i+1 < len(p.src) {
				p.i++
				switch p.src[p.i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(p.src[p.i])
				}
				p.i++
				continue
			}
			b.WriteByte(p.src[p.i])
			p.i++
		}
		if p.i >= len(p.src) {
			p.tok = token{kind: tBad, text: "a string without its closing quote", pos: start}
			return
		}
		p.i++
		p.tok = token{kind: tString, text: b.String(), pos: start}
	case strings.ContainsRune("=!<>&|", rune(c)):
		for _, op := range [...]string{"==", "!=", "<=", ">=", "&&", "||", "<", ">", "!"} {
			if strings.HasPrefix(p.src[p.i:], op) {
				p.i += len(op)
				p.tok = token{kind: tOp, text: op, pos: start}
				return
			}
		}
		p.i++
		p.tok = token{kind: tBad, text: fmt.Sprintf("unknown operator %q (== != < <= > >= && || !)", c), pos: start}
	case c == '-' || c == '+' || (c >= '0' && c <= '9'):
		p.i++
		for p.i < len(p.src) && (p.src[p.i] == '.' || p.src[p.i] >= '0' && p.src[p.i] <= '9') {
			p.i++
		}
		text := p.src[start:p.i]
		if _, err := strconv.ParseFloat(text, 64); err != nil {
			p.tok = token{kind: tBad, text: fmt.Sprintf("%q is not a number", text), pos: start}
			return
		}
		p.tok = token{kind: tNumber, text: text, pos: start}
	default:
		for p.i < len(p.src) {
			r, n := utf8.DecodeRuneInString(p.src[p.i:])
			if !identRune(r) {
				break
			}
			p.i += n
		}
		if p.i == start {
			_, n := utf8.DecodeRuneInString(p.src[p.i:])
			p.i += n
			p.tok = token{kind: tBad, text: fmt.Sprintf("unexpected %q", p.src[start:p.i]), pos: start}
			return
		}
		p.tok = token{kind: tIdent, text: p.src[start:p.i], pos: start}
	}
}
