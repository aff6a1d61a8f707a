package builtin

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// The calculator: a recursive-descent parser over float64, bounded in
// length and depth, that never panics (FuzzCalc).
//
//	expr  = term {("+" | "-") term}
//	term  = unary {("*" | "/" | "%") unary}
//	unary = ("-" | "+") unary | power
//	power = atom ["^" unary]          (right-associative; "**" too)
//	atom  = number | "(" expr ")"
//
// ×, ÷, full-width digits, operators and parentheses are read as their
// ASCII forms.

const (
	maxExpr  = 256 // bytes
	maxDepth = 32
)

// Calculator errors: the preset answers with their text.
var (
	ErrDivByZero = errors.New("division by zero")
	ErrTooLarge  = errors.New("the result is too large")
	ErrNotReal   = errors.New("the result is not a real number")
	ErrSyntax    = errors.New("not an arithmetic expression")
	ErrTooLong   = errors.New("the expression is too long")
	ErrTooDeep   = errors.New("the expression nests too deep")
)

// Calc evaluates an arithmetic expression.
func Calc(s string) (float64, error) {
	if len(s) > maxExpr {
		return 0, ErrTooLong
	}
	p := &calcParser{s: calcNormalize(s)}
	v, err := p.expr(0)
	if err != nil {
		return 0, err
	}
	p.space()
	if p.i != len(p.s) {
		return 0, ErrSyntax
	}
	return v, nil
}

// calcNormalize makes full-width and typographic forms ASCII.
func calcNormalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E:
			r -= 0xFEE0
		case r == '×' || r == '·':
			r = '*'
		case r == '÷':
			r = '/'
		case r == '−' || r == '–':
			r = '-'
		case r == 0x3000:
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}

type calcParser struct {
	s   string
	i   int
	ops int // binary operators read
}

func (p *calcParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *calcParser) peek() byte {
	p.space()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *calcParser) expr(depth int) (float64, error) {
	if depth > maxDepth {
		return 0, ErrTooDeep
	}
	v, err := p.term(depth)
	if err != nil {
		return 0, err
	}
	for {
		op := p.peek()
		if op != '+' && op != '-' {
			return v, nil
		}
		p.i++
		p.ops++
		w, err := p.term(depth)
		if err != nil {
			return 0, err
		}
		if op == '+' {
			v += w
		} else {
			v -= w
		}
		if err := finite(v); err != nil {
			return 0, err
		}
	}
}

func (p *calcParser) term(depth int) (float64, error) {
	v, err := p.unary(depth)
	if err != nil {
		return 0, err
	}
	for {
		op := p.peek()
		if op != '*' && op != '/' && op != '%' || op == '*' && p.i+1 < len(p.s) && p.s[p.i+1] == '*' {
			return v, nil
		}
		p.i++
		p.ops++
		w, err := p.unary(depth)
		if err != nil {
			return 0, err
		}
		switch op {
		case '*':
			v *= w
		case '/':
			if w == 0 {
				return 0, ErrDivByZero
			}
			v /= w
		case '%':
			if w == 0 {
				return 0, ErrDivByZero
			}
			v = math.Mod(v, w)
		}
		if err := finite(v); err != nil {
			return 0, err
		}
	}
}

func (p *calcParser) unary(depth int) (float64, error) {
	if depth > maxDepth {
		return 0, ErrTooDeep
	}
	switch p.peek() {
	case '-':
		p.i++
		v, err := p.unary(depth + 1)
		return -v, err
	case '+':
		p.i++
		return p.unary(depth + 1)
	}
	return p.power(depth)
}

func (p *calcParser) power(depth int) (float64, error) {
	v, err := p.atom(depth)
	if err != nil {
		return 0, err
	}
	switch p.peek() {
	case '^':
		p.i++
	case '*':
		if p.i+1 < len(p.s) && p.s[p.i+1] == '*' {
			p.i += 2
		} else {
			return v, nil
		}
	default:
		return v, nil
	}
	p.ops++
	w, err := p.unary(depth + 1)
	if err != nil {
		return 0, err
	}
	if v == 0 && w < 0 {
		return 0, ErrDivByZero
	}
	r := math.Pow(v, w)
	return r, finite(r)
}

func (p *calcParser) atom(depth int) (float64, error) {
	c := p.peek()
	if c == '(' {
		p.i++
		v, err := p.expr(depth + 1)
		if err != nil {
			return 0, err
		}
		if p.peek() != ')' {
			return 0, ErrSyntax
		}
		p.i++
		return v, nil
	}
	start := p.i
	dot := false
	for p.i < len(p.s) && (isDigit(p.s[p.i]) || p.s[p.i] == '.' && !dot) {
		dot = dot || p.s[p.i] == '.'
		p.i++
	}
	if p.i == start || p.s[start:p.i] == "." {
		return 0, ErrSyntax
	}
	v, err := strconv.ParseFloat(p.s[start:p.i], 64)
	if err != nil {
		return 0, ErrSyntax
	}
	return v, finite(v)
}

func finite(v float64) error {
	switch {
	case math.IsNaN(v):
		return ErrNotReal
	case math.IsInf(v, 0):
		return ErrTooLarge
	}
	return nil
}

// formatNumber prints v for a person: at most 10 significant digits, no
// exponent between 1e-9 and 1e15, no trailing zeros, no "-0".
func formatNumber(v float64) string { return formatSig(v, 10) }

// formatSig prints v as formatNumber does, to sig significant digits.
func formatSig(v float64, sig int) string {
	if v == 0 {
		return "0"
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', sig, 64), 64)
	if a := math.Abs(r); a >= 1e-9 && a < 1e15 {
		return strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}
