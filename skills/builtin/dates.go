package builtin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dates: the day of the week of a date, the days between two dates (or
// from today), a date plus or minus days. Dates are written 2026-12-25,
// 2026/12/25, 2026.12.25 or 2026年12月25日, or today, tomorrow,
// yesterday (今天, 明天, 昨天) in the preset's time zone.

var (
	dateRE = lazyRE(`(?i)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})|(\d{4})年(\d{1,2})月(\d{1,2})[日号]?|\b(today|tomorrow|yesterday)\b|(今天|明天|昨天)`)

	weekdayCue = lazyRE(`(?i)what day|which day of the week|day of the week|weekday|星期几|周几|礼拜几`)
	betweenCue = lazyRE(`(?i)how many days|days? (?:are there )?between|days? until|days? till|多少天|几天|相差|相隔|间隔`)
	addCue     = lazyRE(`(?i)(?:(plus|\+|minus|-|加上?|减去?)\s*(\d{1,6})\s*(?:days?|天))|(?:(\d{1,6})\s*(?:days?|天)\s*(after|later|from|before|ago|后|之后|以后|前|之前|以前))`)
)

var weekdaysZH = [...]string{"星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"}

const dateLayout = "2006-01-02"

// errNotDate is a date that is not one (2026-02-30).
type errNotDate string

func (e errNotDate) Error() string { return string(e) }

// dates answers a date question; ok is false when s is not one.
func dates(s string, now time.Time) (answer string, ok bool) {
	zh := isCJK(s)
	locs := dateRE().FindAllStringSubmatchIndex(s, 3)
	if len(locs) == 0 || len(locs) > 2 {
		return "", false
	}
	var ds []time.Time
	for _, loc := range locs {
		d, err := parseDate(s, loc, now)
		if err != nil {
			if zh {
				return fmt.Sprintf("%s 不是有效的日期。", err), true
			}
			return fmt.Sprintf("%s is not a valid date.", err), true
		}
		ds = append(ds, d)
	}
	// What is left once the dates are out says what is asked.
	rest := s
	for i := len(locs) - 1; i >= 0; i-- {
		rest = rest[:locs[i][0]] + " D " + rest[locs[i][1]:]
	}
	switch {
	case len(ds) == 2 && betweenCue().MatchString(rest):
		n := int(ds[1].Sub(ds[0]).Hours() / 24)
		if n < 0 {
			n = -n
		}
		if zh {
			return fmt.Sprintf("%s 到 %s 相隔 %d 天。", ds[0].Format(dateLayout), ds[1].Format(dateLayout), n), true
		}
		return fmt.Sprintf("There are %d days between %s and %s.", n, ds[0].Format(dateLayout), ds[1].Format(dateLayout)), true
	case len(ds) != 1:
		return "", false
	}
	d := ds[0]
	if m := addCue().FindStringSubmatch(rest); m != nil {
		op, num := m[1], m[2]
		if num == "" {
			op, num = m[4], m[3]
		}
		n, _ := strconv.Atoi(num)
		switch strings.ToLower(op) {
		case "minus", "-", "减", "减去", "before", "ago", "前", "之前", "以前":
			n = -n
		}
		r := d.AddDate(0, 0, n)
		if zh {
			verb := "加"
			if n < 0 {
				verb = "减"
			}
			return fmt.Sprintf("%s %s %d 天是 %s（%s）。", d.Format(dateLayout), verb, abs(n), r.Format(dateLayout), weekdaysZH[r.Weekday()]), true
		}
		sign := "+"
		if n < 0 {
			sign = "-"
		}
		return fmt.Sprintf("%s %s %d days = %s (%s).", d.Format(dateLayout), sign, abs(n), r.Format(dateLayout), r.Weekday()), true
	}
	if betweenCue().MatchString(rest) {
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		n := int(d.Sub(today).Hours() / 24)
		switch {
		case zh && n >= 0:
			return fmt.Sprintf("距离 %s 还有 %d 天。", d.Format(dateLayout), n), true
		case zh:
			return fmt.Sprintf("%s 已过去 %d 天。", d.Format(dateLayout), -n), true
		case n >= 0:
			return fmt.Sprintf("%d days until %s.", n, d.Format(dateLayout)), true
		default:
			return fmt.Sprintf("%s was %d days ago.", d.Format(dateLayout), -n), true
		}
	}
	if weekdayCue().MatchString(rest) {
		if zh {
			return fmt.Sprintf("%s 是%s。", d.Format(dateLayout), weekdaysZH[d.Weekday()]), true
		}
		return fmt.Sprintf("%s is a %s.", d.Format(dateLayout), d.Weekday()), true
	}
	return "", false
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// parseDate reads the date dateRE found at loc, at midnight UTC (days
// between two dates are then whole).
func parseDate(s string, loc []int, now time.Time) (time.Time, error) {
	group := func(i int) string {
		if loc[2*i] < 0 {
			return ""
		}
		return s[loc[2*i]:loc[2*i+1]]
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch strings.ToLower(group(7) + group(8)) {
	case "today", "今天":
		return today, nil
	case "tomorrow", "明天":
		return today.AddDate(0, 0, 1), nil
	case "yesterday", "昨天":
		return today.AddDate(0, 0, -1), nil
	}
	y, mo, d := group(1), group(2), group(3)
	if y == "" {
		y, mo, d = group(4), group(5), group(6)
	}
	yi, _ := strconv.Atoi(y)
	mi, _ := strconv.Atoi(mo)
	di, _ := strconv.Atoi(d)
	t := time.Date(yi, time.Month(mi), di, 0, 0, 0, 0, time.UTC)
	if t.Year() != yi || int(t.Month()) != mi || t.Day() != di {
		return time.Time{}, errNotDate(s[loc[0]:loc[1]])
	}
	return t, nil
}
