package event

import (
	"bytes"
	"encoding/json"
	"time"
)

// parseRFC3339 parses RFC 3339 §5.6 date-time to the millisecond, in UTC.
// time.Parse is more lenient than the RFC, and what it lets through reaches
// the identity: a one-digit hour ("T1:00:00Z"), a comma before the
// fraction, offsets such as +24:00 or +01:60. And it refuses the lower-case
// "t" and "z" that §5.6 allows. Here the grammar is followed exactly, with
// the ranges of §5.7, except for a leap second (second 60), which Unix
// milliseconds (the identity's hash, the archive) cannot hold.
func parseRFC3339(b []byte) (time.Time, bool) {
	// YYYY-MM-DDTHH:MM:SS, then [.fraction], then Z or ±HH:MM.
	if len(b) < len("2006-01-02T15:04:05Z") ||
		b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	second, ok6 := digits(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		return time.Time{}, false
	}
	if day < 1 || day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return time.Time{}, false
	}
	rest := b[19:]
	ms := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			if n <= 3 { // the first three digits; the rest rounds towards the past
				ms = ms*10 + int(rest[n]-'0')
			}
			n++
		}
		if n == 1 { // "." needs a digit
			return time.Time{}, false
		}
		for k := n; k <= 3; k++ {
			ms *= 10
		}
		rest = rest[n:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	local := time.Date(year, time.Month(month), day, hour, minute, second, ms*int(time.Millisecond), time.UTC)
	return local.Add(-time.Duration(offset) * time.Second), true
}

// digits reads a fixed-width decimal number.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// mayHoldSurrogateEscape reports whether value has a \uD800–\uDFFF escape
// (or a false positive: "\\ud800" is an escaped backslash). Almost no
// record does, so the exact check below is rarely run.
func mayHoldSurrogateEscape(value []byte) bool {
	for {
		i := bytes.Index(value, []byte(`\u`))
		if i < 0 || i+4 > len(value) {
			return false
		}
		if c, d := value[i+2]|0x20, value[i+3]|0x20; c == 'd' && (d >= '8' && d <= '9' || d >= 'a' && d <= 'f') {
			return true
		}
		value = value[i+2:]
	}
}

// loneSurrogate reports whether the first member called field of the JSON
// object value (already validated) is a string holding an unpaired
// surrogate escape such as "\ud800". fastjson keeps such an escape as the
// six characters of its text, and turns "\ud800\u0041" into U+FFFD
// swallowing the "A": two event_ids would share one identity. A string
// that is not text (RFC 8259 §8.2) is refused instead. encoding/json walks
// the members (this runs only for the rare record mayHoldSurrogateEscape
// lets through) and gives each value's raw text; a name holding a lone
// surrogate decodes to U+FFFD, which no field name has.
func loneSurrogate(value []byte, field string) bool {
	dec := json.NewDecoder(bytes.NewReader(value))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return false
		}
		if name == field {
			return len(raw) > 0 && raw[0] == '"' && token(raw).unpaired()
		}
	}
	return false
}

// token is a JSON string token, quotes included.
type token []byte

// unpaired reports whether the token holds a surrogate escape that is not
// a high half directly followed by a low half.
func (t token) unpaired() bool {
	body := t[1 : len(t)-1]
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		i++
		if body[i] != 'u' {
			continue
		}
		r, _ := hex4(body[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return true
			}
			lo, _ := hex4(body[i+3 : i+7])
			if lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
