package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot/internal/jsonw"
)

// This file makes a JSON value that validates against a JSON Schema: a
// tool call's arguments, a reply in a json_schema format. The value depends
// only on the schema and a seed, so a test can predict it.
//
// Honoured: type (one or a list), const, enum, properties (all written, in
// the schema's order), required, additionalProperties, min/maxProperties,
// items, prefixItems (and draft 7's items as a list), min/maxItems,
// uniqueItems, minLength, maxLength, format (date-time, date, time, email,
// uri, hostname, ipv4, ipv6, uuid, duration), minimum, maximum, exclusive
// bounds (as numbers or draft 4's booleans), multipleOf, $ref to "#..."
// ($defs, definitions, recursion), allOf (merged), anyOf and oneOf (the
// first choice that is not null). Not honoured: pattern, not, if/then/else,
// dependencies and contains: a value may miss those. A schema the
// generator cannot satisfy (false, minimum above maximum, a $ref it cannot
// find, too large a value) is an error that names the keyword.

// Bounds on the work one schema may ask for: fuzzed or hostile schemas get
// an error, never a huge value or a deep recursion.
const (
	maxSchemaNesting = 128     // JSON nesting of the schema text
	maxGenDepth      = 32      // nesting of the value made (recursion through $ref)
	shallowDepth     = 6       // from here on only required properties and minItems items
	maxValues        = 4096    // values in one generated value
	maxOutput        = 1 << 20 // bytes of one generated value
	maxGenItems      = 256     // the largest minItems or minProperties honoured
	maxGenString     = 4096    // the largest minLength honoured
)

// object is a JSON object that keeps its keys' order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// decodeJSON reads one JSON value into strings, json.Numbers, bools, nil,
// []any and *object (so that properties keep their order).
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: more than one value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxSchemaNesting {
		return nil, errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		o := &object{vals: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, errors.New("object key is not a string")
			}
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			o.set(k, v)
		}
		_, err := dec.Token()
		return o, err
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token()
		return a, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// appendJSON writes v (as decodeJSON makes it) back as JSON.
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return jsonw.String(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case *object:
		b = append(b, '{')
		for i, k := range v.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.String(b, k)
			b = append(b, ':')
			b = appendJSON(b, v.vals[k])
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}

// SchemaValue returns a JSON value that validates against schema (see the
// top of this file for what is honoured), the same for the same seed.
func SchemaValue(schema []byte, seed uint64) ([]byte, error) { return SchemaValueFor(schema, seed, "") }

// SchemaValueFor is SchemaValue for a prompt whose text is text (the last
// user message): an enum of strings answers the value whose words the
// text holds (the whole value first, "order_status" read as "order
// status", then the most of its words), so that a classifier asked for
// {"intent": enum} answers what the message says, deterministically; a
// text that names none takes the seed's value.
func SchemaValueFor(schema []byte, seed uint64, text string) ([]byte, error) {
	root, err := decodeJSON(schema)
	if err != nil {
		return nil, err
	}
	g := &schemaGen{root: root, text: strings.ToLower(text)}
	return g.value(nil, root, seed, "", 0, "")
}

// enumByText is the index of the string of list whose words text holds
// best, or -1.
func enumByText(list []any, text string) int {
	if text == "" {
		return -1
	}
	best, bestScore := -1, 0
	for i, v := range list {
		s, ok := v.(string)
		if !ok || s == "" {
			continue
		}
		phrase := strings.ToLower(strings.NewReplacer("_", " ", "-", " ").Replace(s))
		score := 0
		if strings.Contains(text, phrase) {
			score = 1000 + len(phrase)
		} else {
			for _, w := range strings.Fields(phrase) {
				if len(w) >= 3 && strings.Contains(text, w) {
					score += len(w)
				}
			}
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// ToolArguments returns a tool call's arguments for the tool's parameters
// schema: a JSON object ("{}" for no parameters).
func ToolArguments(params []byte, seed uint64) ([]byte, error) {
	params = bytes.TrimSpace(params)
	if len(params) == 0 || string(params) == "null" {
		return []byte("{}"), nil
	}
	root, err := decodeJSON(params)
	if err != nil {
		return nil, err
	}
	if o, ok := root.(*object); ok {
		if t, ok := o.get("type"); ok && !hasType(t, "object") {
			return nil, fmt.Errorf("type: tool parameters must be an object schema, not %s", appendJSON(nil, t))
		}
	} else if root != true {
		return nil, errors.New("tool parameters must be an object schema")
	}
	g := &schemaGen{root: root}
	v, err := g.value(nil, root, seed, "", 0, "object")
	if err == nil && (len(v) == 0 || v[0] != '{') {
		err = errors.New("tool parameters must describe an object")
	}
	return v, err
}

func hasType(t any, name string) bool {
	switch t := t.(type) {
	case string:
		return t == name
	case []any:
		for _, e := range t {
			if e == name {
				return true
			}
		}
	}
	return false
}

type schemaGen struct {
	root any
	n    int    // values made so far
	text string // the prompt's text, lower case: an enum picks by it
}

// kw names keyword k of the schema at path in an error.
func kw(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func at(path string) string {
	if path == "" {
		return "schema"
	}
	return path
}

// value appends a value of schema s. hint is the type to make when s does
// not say (a tool's parameters are an object).
func (g *schemaGen) value(b []byte, s any, seed uint64, path string, depth int, hint string) ([]byte, error) {
	g.n++
	if g.n > maxValues || len(b) > maxOutput {
		return nil, fmt.Errorf("%s: the schema asks for a larger value than the simulator makes", at(path))
	}
	if depth > maxGenDepth {
		return nil, fmt.Errorf("%s: the schema nests deeper than the simulator makes (a required recursion?)", at(path))
	}
	switch v := s.(type) {
	case bool:
		if !v {
			return nil, fmt.Errorf("%s: the schema false admits no value", at(path))
		}
		return g.untyped(b, seed, hint, path, depth)
	case *object:
		return g.schema(b, v, seed, path, depth, hint)
	}
	return nil, fmt.Errorf("%s: a schema must be an object or a boolean", at(path))
}

func (g *schemaGen) untyped(b []byte, seed uint64, hint, path string, depth int) ([]byte, error) {
	if hint == "object" {
		return append(b, "{}"...), nil
	}
	return jsonw.String(b, words(seed, 1+int(seed%3))), nil
}

func (g *schemaGen) schema(b []byte, o *object, seed uint64, path string, depth int, hint string) ([]byte, error) {
	if ref, ok := o.get("$ref"); ok {
		target, err := g.resolve(ref, kw(path, "$ref"))
		if err != nil {
			return nil, err
		}
		return g.value(b, target, seed, kw(path, "$ref"), depth+1, hint)
	}
	// const and enum values are taken as the schema gives them, of its
	// type when it names one.
	if c, ok := o.get("const"); ok {
		if t, ok := o.get("type"); ok && !ofType(c, t) {
			return nil, fmt.Errorf("%s: not of the schema's type", kw(path, "const"))
		}
		return appendJSON(b, c), nil
	}
	if e, ok := o.get("enum"); ok {
		list, ok := e.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("%s: must be a non-empty array", kw(path, "enum"))
		}
		if t, ok := o.get("type"); ok {
			var typed []any
			for _, v := range list {
				if ofType(v, t) {
					typed = append(typed, v)
				}
			}
			if list = typed; len(list) == 0 {
				return nil, fmt.Errorf("%s: no value of the schema's type", kw(path, "enum"))
			}
		}
		if i := enumByText(list, g.text); i >= 0 {
			return appendJSON(b, list[i]), nil
		}
		return appendJSON(b, list[seed%uint64(len(list))]), nil
	}
	if all, ok := o.get("allOf"); ok {
		merged, err := g.merge(o, "allOf", all, path)
		if err != nil {
			return nil, err
		}
		return g.value(b, merged, seed, path, depth+1, hint)
	}
	for _, k := range [...]string{"anyOf", "oneOf"} {
		if alts, ok := o.get(k); ok {
			list, ok := alts.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s: must be a non-empty array", kw(path, k))
			}
			pick := list[0]
			for _, a := range list {
				if !isNullSchema(a) {
					pick = a
					break
				}
			}
			merged, err := g.merge(o, k, []any{pick}, path)
			if err != nil {
				return nil, err
			}
			return g.value(b, merged, seed, path, depth+1, hint)
		}
	}
	typ, err := schemaType(o, path, hint)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "object":
		return g.object(b, o, seed, path, depth)
	case "array":
		return g.array(b, o, seed, path, depth)
	case "string":
		return g.str(b, o, seed, path)
	case "integer", "number":
		return g.number(b, o, seed, path, typ == "integer")
	case "boolean":
		return strconv.AppendBool(b, seed&1 == 1), nil
	case "null":
		return append(b, "null"...), nil
	}
	return g.untyped(b, seed, hint, path, depth)
}

// ofType reports whether v (as decodeJSON makes it) is of the type t (a
// name or a list of names); an integer is a number too.
func ofType(v any, t any) bool {
	var got string
	switch v := v.(type) {
	case nil:
		got = "null"
	case bool:
		got = "boolean"
	case json.Number:
		got = "number"
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && f == math.Trunc(f) && hasType(t, "integer") {
			got = "integer"
		}
	case string:
		got = "string"
	case []any:
		got = "array"
	case *object:
		got = "object"
	}
	return hasType(t, got)
}

func isNullSchema(s any) bool {
	o, ok := s.(*object)
	if !ok {
		return false
	}
	t, ok := o.get("type")
	return ok && t == "null"
}

var knownTypes = map[string]bool{"object": true, "array": true, "string": true, "integer": true, "number": true, "boolean": true, "null": true}

// schemaType is the type to make for o: its type (the first that is not
// null, when it lists several), else what its keywords imply, else hint.
func schemaType(o *object, path, hint string) (string, error) {
	if t, ok := o.get("type"); ok {
		var list []any
		switch t := t.(type) {
		case string:
			list = []any{t}
		case []any:
			list = t
		default:
			return "", fmt.Errorf("%s: must be a string or an array of strings", kw(path, "type"))
		}
		pick := ""
		for _, e := range list {
			s, ok := e.(string)
			if !ok || !knownTypes[s] {
				return "", fmt.Errorf("%s: unknown type %s", kw(path, "type"), appendJSON(nil, e))
			}
			if pick == "" || pick == "null" {
				pick = s
			}
		}
		if pick == "" {
			return "", fmt.Errorf("%s: lists no type", kw(path, "type"))
		}
		return pick, nil
	}
	for _, k := range o.keys {
		switch k {
		case "properties", "required", "additionalProperties", "minProperties", "maxProperties", "patternProperties":
			return "object", nil
		case "items", "prefixItems", "minItems", "maxItems", "uniqueItems":
			return "array", nil
		case "minLength", "maxLength", "format", "pattern":
			return "string", nil
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf":
			return "number", nil
		}
	}
	return hint, nil
}

// resolve follows a local $ref ("#", "#/$defs/x", "#/definitions/x", any
// JSON pointer into the root schema).
func (g *schemaGen) resolve(ref any, path string) (any, error) {
	s, ok := ref.(string)
	if !ok {
		return nil, fmt.Errorf("%s: must be a string", path)
	}
	if !strings.HasPrefix(s, "#") {
		return nil, fmt.Errorf("%s: %q: only references into the same schema (#/...) are supported", path, s)
	}
	ptr := s[1:]
	cur := g.root
	if ptr == "" {
		return cur, nil
	}
	if ptr[0] != '/' {
		return nil, fmt.Errorf("%s: %q: anchors are not supported, only JSON pointers (#/...)", path, s)
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case *object:
			v, ok := c.get(tok)
			if !ok {
				return nil, fmt.Errorf("%s: %q not found", path, s)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%s: %q not found", path, s)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%s: %q not found", path, s)
		}
	}
	return cur, nil
}

// merge makes one schema of o (without its keyword k) and the schemas in
// subs (a list): properties and required are joined, other keywords are
// taken from the first schema that has them.
func (g *schemaGen) merge(o *object, k string, subs any, path string) (*object, error) {
	list, ok := subs.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("%s: must be a non-empty array", kw(path, k))
	}
	m := &object{vals: map[string]any{}}
	add := func(s *object) {
		for _, key := range s.keys {
			v := s.vals[key]
			cur, have := m.get(key)
			switch {
			case !have:
				m.set(key, v)
			case key == "properties":
				a, ok1 := cur.(*object)
				b, ok2 := v.(*object)
				if ok1 && ok2 {
					j := &object{keys: append([]string(nil), a.keys...), vals: map[string]any{}}
					for kk, vv := range a.vals {
						j.vals[kk] = vv
					}
					for _, kk := range b.keys {
						if _, dup := j.vals[kk]; !dup {
							j.set(kk, b.vals[kk])
						}
					}
					m.vals[key] = j
				}
			case key == "required":
				a, ok1 := cur.([]any)
				b, ok2 := v.([]any)
				if ok1 && ok2 {
					m.vals[key] = append(append([]any(nil), a...), b...)
				}
			}
		}
	}
	base := &object{vals: map[string]any{}}
	for _, key := range o.keys {
		if key != k {
			base.set(key, o.vals[key])
		}
	}
	add(base)
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", kw(path, k), i)
		for range maxGenDepth {
			r, ok := s.(*object)
			if !ok {
				break
			}
			ref, ok := r.get("$ref")
			if !ok {
				break
			}
			var err error
			if s, err = g.resolve(ref, kw(p, "$ref")); err != nil {
				return nil, err
			}
		}
		switch s := s.(type) {
		case bool:
			if !s {
				return nil, fmt.Errorf("%s: the schema false admits no value", p)
			}
		case *object:
			if _, ok := s.get("$ref"); ok {
				return nil, fmt.Errorf("%s: $ref nests too deeply", p)
			}
			add(s)
		default:
			return nil, fmt.Errorf("%s: a schema must be an object or a boolean", p)
		}
	}
	return m, nil
}

// intKeyword reads a non-negative integer keyword; absent is def.
func intKeyword(o *object, k, path string, def int) (int, bool, error) {
	v, ok := o.get(k)
	if !ok {
		return def, false, nil
	}
	n, isNum := v.(json.Number)
	f, err := strconv.ParseFloat(string(n), 64)
	if !isNum || err != nil || f < 0 || f != math.Trunc(f) {
		return 0, false, fmt.Errorf("%s: must be a non-negative integer", kw(path, k))
	}
	if f > math.MaxInt32 {
		f = math.MaxInt32
	}
	return int(f), true, nil
}

func (g *schemaGen) object(b []byte, o *object, seed uint64, path string, depth int) ([]byte, error) {
	var props *object
	if p, ok := o.get("properties"); ok {
		if props, ok = p.(*object); !ok {
			return nil, fmt.Errorf("%s: must be an object", kw(path, "properties"))
		}
	} else {
		props = &object{}
	}
	required := map[string]bool{}
	var extraRequired []string
	if r, ok := o.get("required"); ok {
		list, ok := r.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: must be an array of strings", kw(path, "required"))
		}
		for _, e := range list {
			name, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: must be an array of strings", kw(path, "required"))
			}
			if !required[name] {
				if _, in := props.get(name); !in {
					extraRequired = append(extraRequired, name)
				}
			}
			required[name] = true
		}
	}
	var additional any = true
	if a, ok := o.get("additionalProperties"); ok {
		additional = a
	}
	minP, _, err := intKeyword(o, "minProperties", path, 0)
	if err != nil {
		return nil, err
	}
	maxP, haveMax, err := intKeyword(o, "maxProperties", path, 0)
	if err != nil {
		return nil, err
	}
	if minP > maxGenItems {
		return nil, fmt.Errorf("%s: %d is more properties than the simulator makes (%d)", kw(path, "minProperties"), minP, maxGenItems)
	}
	if haveMax && (len(required) > maxP || minP > maxP) {
		return nil, fmt.Errorf("%s: %d is fewer than the properties required", kw(path, "maxProperties"), maxP)
	}
	// Which keys: every property in the schema's order (only the required
	// ones when deep, or when maxProperties says so), then required names
	// the properties do not describe, then made-up ones up to minProperties.
	optional := 0
	if haveMax {
		optional = maxP - len(required)
	}
	type field struct {
		name   string
		schema any
	}
	var fields []field
	for _, k := range props.keys {
		if !required[k] {
			if depth >= shallowDepth || haveMax && optional <= 0 {
				continue
			}
			optional--
		}
		fields = append(fields, field{k, props.vals[k]})
	}
	extraSchema := additional
	if a, ok := additional.(bool); ok {
		extraSchema = true
		if !a && (len(extraRequired) > 0 || len(fields) < minP) {
			return nil, fmt.Errorf("%s: false, but the schema requires more properties than it describes", kw(path, "additionalProperties"))
		}
	}
	for _, k := range extraRequired {
		fields = append(fields, field{k, extraSchema})
	}
	for i := 1; len(fields) < minP; i++ {
		name := "extra_" + strconv.Itoa(i)
		if _, taken := props.get(name); !taken && !required[name] {
			fields = append(fields, field{name, extraSchema})
		}
	}
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.String(b, f.name)
		b = append(b, ':')
		var err error
		b, err = g.value(b, f.schema, splitmix(seed^hashString(14695981039346656037, f.name)), kw(path, "properties."+f.name), depth+1, "")
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func (g *schemaGen) array(b []byte, o *object, seed uint64, path string, depth int) ([]byte, error) {
	var prefix []any
	var items any = true
	if p, ok := o.get("prefixItems"); ok {
		if prefix, ok = p.([]any); !ok {
			return nil, fmt.Errorf("%s: must be an array of schemas", kw(path, "prefixItems"))
		}
	}
	if it, ok := o.get("items"); ok {
		if list, isList := it.([]any); isList && prefix == nil {
			// Draft 7's tuple form; additionalItems then says the rest.
			prefix = list
			if ai, ok := o.get("additionalItems"); ok {
				items = ai
			}
		} else if isList {
			return nil, fmt.Errorf("%s: must be a schema", kw(path, "items"))
		} else {
			items = it
		}
	}
	minI, _, err := intKeyword(o, "minItems", path, 0)
	if err != nil {
		return nil, err
	}
	maxI, haveMax, err := intKeyword(o, "maxItems", path, 0)
	if err != nil {
		return nil, err
	}
	if minI > maxGenItems {
		return nil, fmt.Errorf("%s: %d is more items than the simulator makes (%d)", kw(path, "minItems"), minI, maxGenItems)
	}
	if haveMax && minI > maxI {
		return nil, fmt.Errorf("%s: %d is below minItems %d", kw(path, "maxItems"), maxI, minI)
	}
	count := 2
	if depth >= shallowDepth {
		count = 0
	}
	count = max(count, len(prefix), minI)
	if haveMax {
		count = min(count, maxI)
	}
	if items == false {
		if minI > len(prefix) {
			return nil, fmt.Errorf("%s: false, but minItems asks for more items than prefixItems describes", kw(path, "items"))
		}
		count = min(count, len(prefix))
	}
	unique := o.vals["uniqueItems"] == true
	var made [][]byte
	b = append(b, '[')
	for i := range count {
		if i > 0 {
			b = append(b, ',')
		}
		s, p := items, kw(path, "items")
		if i < len(prefix) {
			s, p = prefix[i], fmt.Sprintf("%s[%d]", kw(path, "prefixItems"), i)
		}
		start := len(b)
		for try := 0; ; try++ {
			var err error
			b, err = g.value(b[:start], s, splitmix(seed+uint64(i)+uint64(try)<<40), p, depth+1, "")
			if err != nil {
				return nil, err
			}
			if !unique || !containsBytes(made, b[start:]) {
				break
			}
			if try == 16 {
				return nil, fmt.Errorf("%s: cannot make %d unique items", kw(path, "uniqueItems"), count)
			}
		}
		if unique {
			made = append(made, append([]byte(nil), b[start:]...))
		}
	}
	return append(b, ']'), nil
}

func containsBytes(list [][]byte, v []byte) bool {
	for _, e := range list {
		if bytes.Equal(e, v) {
			return true
		}
	}
	return false
}

func (g *schemaGen) str(b []byte, o *object, seed uint64, path string) ([]byte, error) {
	minL, _, err := intKeyword(o, "minLength", path, 0)
	if err != nil {
		return nil, err
	}
	maxL, haveMax, err := intKeyword(o, "maxLength", path, 0)
	if err != nil {
		return nil, err
	}
	if minL > maxGenString {
		return nil, fmt.Errorf("%s: %d is longer than the simulator makes (%d)", kw(path, "minLength"), minL, maxGenString)
	}
	if haveMax && minL > maxL {
		return nil, fmt.Errorf("%s: %d is below minLength %d", kw(path, "maxLength"), maxL, minL)
	}
	format, _ := o.vals["format"].(string)
	s := formatted(format, seed)
	if s == "" {
		s = words(seed, 1+int(seed>>8%3))
	}
	// Every string made is ASCII: a byte is a character.
	for i := 1; len(s) < minL; i++ {
		s += " " + vocab[splitmix(seed+uint64(i))%uint64(len(vocab))]
	}
	if haveMax && len(s) > maxL {
		s = s[:maxL]
	}
	return jsonw.String(b, s), nil
}

// words is n words of the vocabulary, chosen by seed.
func words(seed uint64, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocab[splitmix(seed+uint64(i))%uint64(len(vocab))])
	}
	return b.String()
}

// formatted is a string of a JSON Schema format, or "" for a format it
// does not know.
func formatted(format string, seed uint64) string {
	day := 1 + seed%28
	w := vocab[seed%uint64(len(vocab))]
	switch format {
	case "date-time":
		return fmt.Sprintf("2026-01-%02dT%02d:%02d:00Z", day, seed>>8%24, seed>>16%60)
	case "date":
		return fmt.Sprintf("2026-01-%02d", day)
	case "time":
		return fmt.Sprintf("%02d:%02d:00Z", seed>>8%24, seed>>16%60)
	case "email", "idn-email":
		return w + "@example.com"
	case "uri", "url", "iri":
		return "https://example.com/" + w
	case "uri-reference", "iri-reference":
		return "/" + w
	case "hostname", "idn-hostname":
		return w + ".example.com"
	case "ipv4":
		return fmt.Sprintf("192.0.2.%d", 1+seed%254)
	case "ipv6":
		return fmt.Sprintf("2001:db8::%x", 1+seed%0xfffe)
	case "uuid":
		v := splitmix(seed ^ 0x5eed)
		return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", seed>>32, seed>>16&0xffff, seed&0xfff, 0x8000|v>>48&0x3fff, v&0xffffffffffff)
	case "duration":
		return fmt.Sprintf("PT%dM", 1+seed%59)
	}
	return ""
}

// number makes an integer or a number within the schema's bounds.
func (g *schemaGen) number(b []byte, o *object, seed uint64, path string, integer bool) ([]byte, error) {
	num := func(k string) (float64, bool, error) {
		v, ok := o.get(k)
		if !ok {
			return 0, false, nil
		}
		n, isNum := v.(json.Number)
		f, err := strconv.ParseFloat(string(n), 64)
		if !isNum || err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, false, fmt.Errorf("%s: must be a finite number", kw(path, k))
		}
		return f, true, nil
	}
	lo, haveLo, err := num("minimum")
	if err != nil {
		return nil, err
	}
	hi, haveHi, err := num("maximum")
	if err != nil {
		return nil, err
	}
	exclLo, exclHi := false, false
	// Draft 4 says exclusiveMinimum: true beside minimum; later drafts give
	// the bound itself.
	for _, e := range [...]struct {
		k          string
		bound      *float64
		have, excl *bool
		tighter    func(a, b float64) bool
	}{
		{"exclusiveMinimum", &lo, &haveLo, &exclLo, func(a, b float64) bool { return a >= b }},
		{"exclusiveMaximum", &hi, &haveHi, &exclHi, func(a, b float64) bool { return a <= b }},
	} {
		v, ok := o.get(e.k)
		if !ok {
			continue
		}
		if flag, isBool := v.(bool); isBool {
			*e.excl = flag && *e.have
			continue
		}
		f, _, err := num(e.k)
		if err != nil {
			return nil, err
		}
		if !*e.have || e.tighter(f, *e.bound) {
			*e.bound, *e.have, *e.excl = f, true, true
		}
	}
	var mult float64
	if _, ok := o.get("multipleOf"); ok {
		if mult, _, err = num("multipleOf"); err != nil {
			return nil, err
		}
		if mult <= 0 {
			return nil, fmt.Errorf("%s: must be greater than 0", kw(path, "multipleOf"))
		}
	}
	const span = 100
	switch {
	case !haveLo && !haveHi:
		lo, hi = 0, span
	case !haveHi:
		hi = lo + span
	case !haveLo:
		lo = hi - span
	}
	const limit = 1 << 53 // integers beyond are not exact in a float64
	if integer {
		ilo, ihi := math.Ceil(lo), math.Floor(hi)
		if exclLo && ilo == lo {
			ilo++
		}
		if exclHi && ihi == hi {
			ihi--
		}
		ilo, ihi = math.Max(ilo, -limit), math.Min(ihi, limit)
		if mult > 0 {
			if mult != math.Trunc(mult) {
				return nil, fmt.Errorf("%s: a fraction is not supported for an integer", kw(path, "multipleOf"))
			}
			ilo = math.Ceil(ilo/mult) * mult
			ihi = math.Floor(ihi/mult) * mult
		} else {
			mult = 1
		}
		if ilo > ihi {
			return nil, fmt.Errorf("%s: no integer lies between the bounds", at(path))
		}
		k := uint64((ihi-ilo)/mult) + 1
		return strconv.AppendInt(b, int64(ilo+mult*float64(seed%k)), 10), nil
	}
	if lo > hi || lo == hi && (exclLo || exclHi) {
		return nil, fmt.Errorf("%s: no number lies between the bounds", at(path))
	}
	in := func(v float64) bool {
		return (v > lo || !exclLo && v == lo) && (v < hi || !exclHi && v == hi)
	}
	if mult > 0 {
		first, last := math.Ceil(lo/mult), math.Floor(hi/mult)
		if !in(first * mult) {
			first++
		}
		if !in(last * mult) {
			last--
		}
		if first > last || math.Abs(first) > limit || math.Abs(last) > limit {
			return nil, fmt.Errorf("%s: no multiple of %g lies between the bounds", kw(path, "multipleOf"), mult)
		}
		v := (first + float64(seed%(uint64(last-first)+1))) * mult
		// 0.1*3 is 0.30000000000000004 in binary: fifteen digits say 0.3,
		// the multiple a validator checks with decimal arithmetic.
		return strconv.AppendFloat(b, v, 'g', 15, 64), nil
	}
	v := lo
	if hi > lo {
		v = lo + (hi-lo)*(0.05+0.9*float64(seed%1000)/1000)
		if r := math.Round(v*100) / 100; in(r) {
			v = r
		}
	}
	if !in(v) {
		v = (lo + hi) / 2
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64), nil
}
