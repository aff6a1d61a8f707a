package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// validate checks v against schema for the keywords the generator honours
// (schema.go's comment), as a JSON Schema validator would; oneOf is read as
// anyOf. It is the test's own reading of the spec, written apart from the
// generator.
func validate(root, schema, v any, path string) error {
	switch s := schema.(type) {
	case bool:
		if !s {
			return fmt.Errorf("%s: false schema", path)
		}
		return nil
	case *object:
		return validateObject(root, s, v, path)
	}
	return fmt.Errorf("%s: bad schema %T", path, schema)
}

func typeOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && f == math.Trunc(f) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case *object:
		return "object"
	}
	return "?"
}

func num(v any) float64 {
	f, _ := strconv.ParseFloat(string(v.(json.Number)), 64)
	return f
}

func validateObject(root any, s *object, v any, path string) error {
	if ref, ok := s.get("$ref"); ok {
		target, err := (&schemaGen{root: root}).resolve(ref, path)
		if err != nil {
			return err
		}
		return validate(root, target, v, path)
	}
	if c, ok := s.get("const"); ok && !bytes.Equal(appendJSON(nil, c), appendJSON(nil, v)) {
		return fmt.Errorf("%s: %s is not the const", path, appendJSON(nil, v))
	}
	if e, ok := s.get("enum"); ok {
		found := false
		for _, x := range e.([]any) {
			if bytes.Equal(appendJSON(nil, x), appendJSON(nil, v)) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %s is not in the enum", path, appendJSON(nil, v))
		}
	}
	if all, ok := s.get("allOf"); ok {
		for _, sub := range all.([]any) {
			if err := validate(root, sub, v, path); err != nil {
				return err
			}
		}
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := s.get(k); ok {
			var errs []string
			for _, sub := range alts.([]any) {
				err := validate(root, sub, v, path)
				if err == nil {
					errs = nil
					break
				}
				errs = append(errs, err.Error())
			}
			if errs != nil {
				return fmt.Errorf("%s: no %s matches: %s", path, k, strings.Join(errs, "; "))
			}
		}
	}
	got := typeOf(v)
	// const and enum values are taken as the schema gives them (of its
	// type): the other keywords are the author's to keep.
	_, isConst := s.get("const")
	_, isEnum := s.get("enum")
	constant := isConst || isEnum
	if t, ok := s.get("type"); ok {
		match := false
		list, isList := t.([]any)
		if !isList {
			list = []any{t}
		}
		for _, x := range list {
			if x == got || x == "number" && got == "integer" {
				match = true
			}
		}
		if !match {
			return fmt.Errorf("%s: %s is a %s, want %v", path, appendJSON(nil, v), got, t)
		}
	}
	intKw := func(k string) (int, bool) {
		x, ok := s.get(k)
		if !ok {
			return 0, false
		}
		return int(num(x)), true
	}
	if constant {
		got = "constant"
	}
	switch got {
	case "object":
		o := v.(*object)
		props, _ := s.vals["properties"].(*object)
		for _, r := range asList(s.vals["required"]) {
			if _, ok := o.get(r.(string)); !ok {
				return fmt.Errorf("%s: required %q missing", path, r)
			}
		}
		for _, k := range o.keys {
			if props != nil {
				if ps, ok := props.get(k); ok {
					if err := validate(root, ps, o.vals[k], path+"."+k); err != nil {
						return err
					}
					continue
				}
			}
			if ap, ok := s.get("additionalProperties"); ok {
				if err := validate(root, ap, o.vals[k], path+"."+k); err != nil {
					return fmt.Errorf("additional property: %w", err)
				}
			}
		}
		if n, ok := intKw("minProperties"); ok && len(o.keys) < n {
			return fmt.Errorf("%s: %d properties < minProperties", path, len(o.keys))
		}
		if n, ok := intKw("maxProperties"); ok && len(o.keys) > n {
			return fmt.Errorf("%s: %d properties > maxProperties", path, len(o.keys))
		}
	case "array":
		a := v.([]any)
		prefix := asList(s.vals["prefixItems"])
		items, hasItems := s.get("items")
		if list, ok := items.([]any); ok {
			prefix, items, hasItems = list, s.vals["additionalItems"], s.vals["additionalItems"] != nil
		}
		for i, e := range a {
			p := fmt.Sprintf("%s[%d]", path, i)
			if i < len(prefix) {
				if err := validate(root, prefix[i], e, p); err != nil {
					return err
				}
			} else if hasItems {
				if err := validate(root, items, e, p); err != nil {
					return err
				}
			}
		}
		if n, ok := intKw("minItems"); ok && len(a) < n {
			return fmt.Errorf("%s: %d items < minItems", path, len(a))
		}
		if n, ok := intKw("maxItems"); ok && len(a) > n {
			return fmt.Errorf("%s: %d items > maxItems", path, len(a))
		}
		if s.vals["uniqueItems"] == true {
			seen := map[string]bool{}
			for _, e := range a {
				k := string(appendJSON(nil, e))
				if seen[k] {
					return fmt.Errorf("%s: duplicate item %s", path, k)
				}
				seen[k] = true
			}
		}
	case "string":
		n := utf8.RuneCountInString(v.(string))
		if m, ok := intKw("minLength"); ok && n < m {
			return fmt.Errorf("%s: length %d < minLength", path, n)
		}
		if m, ok := intKw("maxLength"); ok && n > m {
			return fmt.Errorf("%s: length %d > maxLength", path, n)
		}
	case "integer", "number":
		f := num(v)
		bound := func(k string) (float64, bool) {
			x, ok := s.get(k)
			if _, isNum := x.(json.Number); !ok || !isNum {
				return 0, false
			}
			return num(x), true
		}
		exclFlag := func(k string) bool { return s.vals[k] == true }
		if b, ok := bound("minimum"); ok && (f < b || exclFlag("exclusiveMinimum") && f == b) {
			return fmt.Errorf("%s: %g below minimum %g", path, f, b)
		}
		if b, ok := bound("maximum"); ok && (f > b || exclFlag("exclusiveMaximum") && f == b) {
			return fmt.Errorf("%s: %g above maximum %g", path, f, b)
		}
		if b, ok := bound("exclusiveMinimum"); ok && f <= b {
			return fmt.Errorf("%s: %g not above exclusiveMinimum %g", path, f, b)
		}
		if b, ok := bound("exclusiveMaximum"); ok && f >= b {
			return fmt.Errorf("%s: %g not below exclusiveMaximum %g", path, f, b)
		}
		if m, ok := bound("multipleOf"); ok {
			q := f / m
			if math.Abs(q-math.Round(q)) > 1e-9*math.Max(1, math.Abs(q)) {
				return fmt.Errorf("%s: %g is not a multiple of %g", path, f, m)
			}
		}
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// checkValue generates a value for schema and validates it.
func checkValue(t *testing.T, schema string, seed uint64) []byte {
	t.Helper()
	v, err := SchemaValue([]byte(schema), seed)
	if err != nil {
		t.Fatalf("%s: %v", schema, err)
	}
	root, _ := decodeJSON([]byte(schema))
	val, err := decodeJSON(v)
	if err != nil {
		t.Fatalf("%s: invalid JSON %s: %v", schema, v, err)
	}
	if err := validate(root, root, val, "$"); err != nil {
		t.Fatalf("%s\nvalue %s\n%v", schema, v, err)
	}
	return v
}

// Schemas as clients send them: OpenAI's function examples, strict mode,
// Pydantic's ($defs, $ref, anyOf with null), zod-to-json-schema, a
// recursive tree, formats and bounds.
var realSchemas = []string{
	`{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}`,
	`{"type":"object","properties":{"location":{"type":"string"},"units":{"type":["string","null"],"enum":["celsius","fahrenheit",null]}},"required":["location","units"],"additionalProperties":false}`,
	`{"$defs":{"Step":{"properties":{"explanation":{"title":"Explanation","type":"string"},"output":{"title":"Output","type":"string"}},"required":["explanation","output"],"title":"Step","type":"object"}},"properties":{"steps":{"items":{"$ref":"#/$defs/Step"},"title":"Steps","type":"array"},"final_answer":{"title":"Final Answer","type":"string"},"note":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null}},"required":["steps","final_answer"],"title":"MathReasoning","type":"object"}`,
	`{"type":"object","properties":{"name":{"type":"string","minLength":1},"age":{"type":"integer","exclusiveMinimum":0,"maximum":150},"email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"},"minItems":1,"uniqueItems":true}},"required":["name","age","email","tags"],"additionalProperties":false,"$schema":"http://json-schema.org/draft-07/schema#"}`,
	`{"definitions":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/definitions/node"}}},"required":["value"]}},"$ref":"#/definitions/node"}`,
	`{"type":"object","properties":{"when":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},"id":{"type":"string","format":"uuid"},"site":{"type":"string","format":"uri"},"ip":{"type":"string","format":"ipv4"},"price":{"type":"number","minimum":0.5,"maximum":0.75},"qty":{"type":"integer","minimum":10,"maximum":10},"step":{"type":"number","multipleOf":0.1,"minimum":1,"maximum":2},"ok":{"type":"boolean"},"none":{"type":"null"}}}`,
	`{"type":"array","prefixItems":[{"type":"number"},{"type":"string","maxLength":3}],"items":false}`,
	`{"type":"object","allOf":[{"properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"integer","minimum":-5,"maximum":-1}},"required":["b"]}]}`,
	`{"oneOf":[{"type":"null"},{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number","exclusiveMinimum":0}},"required":["kind","r"]}]}`,
	`{"type":"object","minProperties":3,"maxProperties":4,"properties":{"x":{"type":"string"}},"additionalProperties":{"type":"integer"}}`,
	`{"type":"string","minLength":20,"maxLength":22}`,
	`{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":3,"exclusiveMaximum":true}`,
	`{"enum":[1,"two",{"three":[3]}]}`,
	`true`,
	`{}`,
}

func TestSchemaValueValidates(t *testing.T) {
	for _, s := range realSchemas {
		for seed := range uint64(20) {
			v := checkValue(t, s, splitmix(seed))
			if again, _ := SchemaValue([]byte(s), splitmix(seed)); !bytes.Equal(again, v) {
				t.Fatalf("%s: not deterministic: %s then %s", s, v, again)
			}
		}
	}
	// Properties come in the schema's order; all of them, not only the
	// required ones.
	v := checkValue(t, realSchemas[0], 1)
	if !bytes.HasPrefix(v, []byte(`{"location":"`)) || !bytes.Contains(v, []byte(`"unit":"`)) {
		t.Errorf("weather args %s", v)
	}
	// A recursive schema ends (deep levels make only what is required).
	if v := checkValue(t, realSchemas[4], 3); bytes.Count(v, []byte(`"value"`)) < 2 {
		t.Errorf("tree %s", v)
	}
}

// A schema the generator cannot satisfy is an error naming the keyword;
// never a panic, never a value that does not hold.
func TestSchemaValueErrors(t *testing.T) {
	for schema, want := range map[string]string{
		`false`:            "schema: the schema false admits no value",
		`{"type":"strin"}`: `type: unknown type "strin"`,
		`{"type":"integer","minimum":5,"maximum":4}`:                       "no integer",
		`{"type":"array","minItems":3,"maxItems":2}`:                       "maxItems",
		`{"type":"array","minItems":100000}`:                               "minItems",
		`{"type":"string","minLength":5,"maxLength":2}`:                    "maxLength",
		`{"properties":{"a":{"$ref":"#/$defs/missing"}},"required":["a"]}`: `properties.a.$ref: "#/$defs/missing" not found`,
		`{"$ref":"https://example.com/schema.json"}`:                       "only references into the same schema",
		`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`:          "nests deeper",
		`{"properties":{"n":{"$ref":"#"}},"required":["n"]}`:               "nests deeper",
		`{"type":"object","required":["x"],"additionalProperties":false}`:  "additionalProperties",
		`{"enum":[]}`:                      "enum: must be a non-empty array",
		`{"type":"number","multipleOf":0}`: "multipleOf",
		`{"type":"boolean","uniqueItems":true,"items":{"type":"boolean"}}`:            "",
		`{"type":"array","items":{"type":"boolean"},"minItems":3,"uniqueItems":true}`: "unique",
		`{"properties":{"a":{"type":"string","minLength":"x"}}}`:                      `properties.a.minLength: must be a non-negative integer`,
		`{"type":"string"} trailing`:                                                  "invalid JSON",
		`[1,2]`:                                                                       "a schema must be an object or a boolean",
	} {
		v, err := SchemaValue([]byte(schema), 7)
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", schema, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %s, %v; want an error with %q", schema, v, err, want)
		}
	}
}

func TestToolArguments(t *testing.T) {
	for params, want := range map[string]string{
		``:                                  `{}`,
		`null`:                              `{}`,
		`{}`:                                `{}`,
		`{"type":"object","properties":{}}`: `{}`,
		`{"type":"object","properties":{"q":{"const":"x"}},"required":["q"]}`: `{"q":"x"}`,
	} {
		got, err := ToolArguments([]byte(params), 1)
		if err != nil || string(got) != want {
			t.Errorf("%q: %s %v, want %s", params, got, err, want)
		}
	}
	for _, bad := range []string{`{"type":"string"}`, `[]`, `"x"`, `{"type":"object","properties":5}`} {
		if got, err := ToolArguments([]byte(bad), 1); err == nil {
			t.Errorf("%s: %s, want an error", bad, got)
		}
	}
}

// An enum of strings answers the value whose words the prompt's text
// holds (the whole value first), else the seed's; the same each time.
func TestSchemaEnumByText(t *testing.T) {
	schema := []byte(`{"type":"object","properties":{"intent":{"type":"string","enum":["refund","order_status","cancel_order","fallback"]}},"required":["intent"]}`)
	for _, c := range []struct{ text, want string }{
		{"what is my ORDER status", `{"intent":"order_status"}`},
		{"please cancel the order", `{"intent":"cancel_order"}`},
		{"I want a refund", `{"intent":"refund"}`},
		{"where is my order", `{"intent":"order_status"}`}, // a tie on "order": the first
	} {
		v, err := SchemaValueFor(schema, 7, c.text)
		if err != nil || string(v) != c.want {
			t.Errorf("%q: %s %v, want %s", c.text, v, err, c.want)
		}
	}
	a, _ := SchemaValueFor(schema, 7, "nothing of the sort")
	b, _ := SchemaValue(schema, 7)
	if string(a) != string(b) {
		t.Errorf("a text naming no value: %s, the seed's %s", a, b)
	}
}
