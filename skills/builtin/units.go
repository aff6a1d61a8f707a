package builtin

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// unit is a unit of a dimension: a value in it is factor*v+offset in the
// dimension's base unit (m, kg, K, byte).
type unit struct {
	dim    string
	factor float64
	offset float64
	en, zh string // how an answer names it
}

var (
	units     = map[string]*unit{}
	unitsOnce sync.Once
)

func addUnit(u *unit, names ...string) {
	for _, n := range names {
		units[n] = u
	}
}

// loadUnits fills units, once, when a question first asks for one: a
// node that configures no tools preset pays nothing for the table.
func loadUnits() {
	m := func(f float64, en, zh string) *unit { return &unit{dim: "length", factor: f, en: en, zh: zh} }
	addUnit(m(1, "m", "米"), "m", "meter", "meters", "metre", "metres", "米")
	addUnit(m(1000, "km", "公里"), "km", "kilometer", "kilometers", "kilometre", "kilometres", "公里", "千米")
	addUnit(m(0.01, "cm", "厘米"), "cm", "centimeter", "centimeters", "厘米")
	addUnit(m(0.001, "mm", "毫米"), "mm", "millimeter", "millimeters", "毫米")
	addUnit(m(1609.344, "mi", "英里"), "mi", "mile", "miles", "英里")
	addUnit(m(0.3048, "ft", "英尺"), "ft", "foot", "feet", "英尺")
	addUnit(m(0.0254, "in", "英寸"), "in", "inch", "inches", "英寸")
	addUnit(m(0.9144, "yd", "码"), "yd", "yard", "yards", "码")
	addUnit(m(1852, "nmi", "海里"), "nmi", "nautical mile", "nautical miles", "海里")
	addUnit(m(500, "li", "里"), "里")
	addUnit(m(1.0/3, "chi", "尺"), "尺")

	k := func(f float64, en, zh string) *unit { return &unit{dim: "mass", factor: f, en: en, zh: zh} }
	addUnit(k(1, "kg", "公斤"), "kg", "kilogram", "kilograms", "kilo", "kilos", "公斤", "千克")
	addUnit(k(0.001, "g", "克"), "g", "gram", "grams", "克")
	addUnit(k(1e-6, "mg", "毫克"), "mg", "milligram", "milligrams", "毫克")
	addUnit(k(1000, "t", "吨"), "t", "tonne", "tonnes", "ton", "tons", "吨")
	addUnit(k(0.45359237, "lb", "磅"), "lb", "lbs", "pound", "pounds", "磅")
	addUnit(k(0.028349523125, "oz", "盎司"), "oz", "ounce", "ounces", "盎司")
	addUnit(k(0.5, "jin", "斤"), "斤")
	addUnit(k(0.05, "liang", "两"), "两")

	addUnit(&unit{dim: "temperature", factor: 1, offset: 273.15, en: "°C", zh: "摄氏度"}, "c", "°c", "℃", "celsius", "摄氏度", "摄氏")
	addUnit(&unit{dim: "temperature", factor: 5.0 / 9, offset: 273.15 - 32*5.0/9, en: "°F", zh: "华氏度"}, "f", "°f", "℉", "fahrenheit", "华氏度", "华氏")
	addUnit(&unit{dim: "temperature", factor: 1, en: "K", zh: "开尔文"}, "k", "kelvin", "kelvins", "开尔文", "开")

	b := func(f float64, en string) *unit { return &unit{dim: "data", factor: f, en: en, zh: en} }
	addUnit(b(1, "B"), "b", "byte", "bytes", "字节")
	addUnit(b(1.0/8, "bit"), "bit", "bits", "比特", "位")
	for i, p := range []string{"k", "m", "g", "t", "p"} {
		dec, bin := 1.0, 1.0
		for range i + 1 {
			dec *= 1000
			bin *= 1024
		}
		P := strings.ToUpper(p)
		addUnit(b(dec, P+"B"), p+"b", p+"byte", p+"bytes")
		addUnit(b(bin, P+"iB"), p+"ib")
	}
	addUnit(units["kb"], "kilobyte", "kilobytes")
	addUnit(units["mb"], "megabyte", "megabytes", "兆", "兆字节")
	addUnit(units["gb"], "gigabyte", "gigabytes")
	addUnit(units["tb"], "terabyte", "terabytes")
}

// lookupUnit finds a unit by name, case folded, spaces trimmed.
func lookupUnit(s string) *unit {
	unitsOnce.Do(loadUnits)
	return units[strings.ToLower(strings.TrimSpace(s))]
}

var (
	// "10 km to miles", "convert 10 km into mi", "10km in feet", "100°F = ?C"
	unitsEN = lazyRE(`(?i)^(?:convert\s+|how (?:much|many) is\s+|what is\s+|what's\s+)?(-?[0-9]+(?:\.[0-9]+)?)\s*([a-z°℃℉]+(?: mile| miles)?)\s+(?:to|in|into|as|=)\s+([a-z°℃℉]+(?: mile| miles)?)\s*\??$`)
	// "10公里等于多少英里", "把10公斤换算成磅", "100华氏度是多少摄氏度"
	unitsZH = lazyRE(`^(?:把|将|请问)?\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z°℃℉\p{Han}]+?)\s*(?:等于多少|是多少|合多少|换算成|换算为|转换成|转换为|转成|折合|等于)\s*([a-zA-Z°℃℉\p{Han}]+?)\s*(?:是多少|呢)?\s*[?？]?$`)
)

// convertUnits answers a unit conversion question; ok is false when s is
// not one.
func convertUnits(s string) (answer string, ok bool) {
	zh := false
	m := unitsEN().FindStringSubmatch(s)
	if m == nil {
		m = unitsZH().FindStringSubmatch(calcNormalize(s))
		zh = true
	}
	if m == nil {
		return "", false
	}
	from, to := lookupUnit(m[2]), lookupUnit(m[3])
	if from == nil || to == nil {
		return "", false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return "", false
	}
	if from.dim != to.dim {
		if zh {
			return fmt.Sprintf("无法换算：%s是%s单位，%s是%s单位。", from.zh, dimZH(from.dim), to.zh, dimZH(to.dim)), true
		}
		return fmt.Sprintf("Cannot convert %s (%s) to %s (%s).", from.en, from.dim, to.en, to.dim), true
	}
	base := v*from.factor + from.offset
	if from.dim == "temperature" && base < 0 {
		if zh {
			return "温度不能低于绝对零度。", true
		}
		return "A temperature cannot be below absolute zero.", true
	}
	r := (base - to.offset) / to.factor
	if zh {
		return fmt.Sprintf("%s%s = %s%s", formatNumber(v), from.zh, formatSig(r, 6), to.zh), true
	}
	return fmt.Sprintf("%s %s = %s %s", formatNumber(v), from.en, formatSig(r, 6), to.en), true
}

// dimZH names a dimension in Chinese (a switch, not a map literal: no
// code at start).
func dimZH(dim string) string {
	switch dim {
	case "length":
		return "长度"
	case "mass":
		return "质量"
	case "temperature":
		return "温度"
	case "data":
		return "数据量"
	}
	return ""
}
