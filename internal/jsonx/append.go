package jsonx

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// stringFlavour is how one encoder escapes ASCII: which bytes pass unchanged, and whether '\b' and
// '\f' get their two-character escapes. Everything else (control characters as \u00XX, '"' and
// '\\' escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped) is the same in both.
type stringFlavour struct {
	safe    [utf8.RuneSelf]bool
	shortBF bool
}

func newFlavour(html, shortBF bool) *stringFlavour {
	f := &stringFlavour{shortBF: shortBF}
	for c := 0x20; c < utf8.RuneSelf; c++ {
		f.safe[c] = c != '"' && c != '\\' && !(html && (c == '<' || c == '>' || c == '&'))
	}
	return f
}

var (
	// encodingJSON is what encoding/json writes with its default HTML escaping.
	encodingJSON = newFlavour(true, true)
	// slogJSON is what log/slog's JSONHandler writes: no HTML escaping, and '\b', '\f' as \u0008,
	// \u000c (its escaper predates encoding/json's short forms).
	slogJSON = newFlavour(false, false)
)

// AppendString appends s as a JSON string, byte for byte what encoding/json writes with its default
// HTML escaping: control characters, '"', '\\', '<', '>', '&', U+2028 and U+2029 escaped, invalid
// UTF-8 replaced by U+FFFD. Hand-written encoders on hot paths (token claims, the gateway's
// identity header) use it instead of reflection.
func AppendString(b []byte, s string) []byte { return appendString(b, s, encodingJSON) }

// AppendLogString appends s as a JSON string byte for byte as log/slog's JSONHandler writes it
// (no HTML escaping; see slogJSON), so a hand-encoded log line (the server's access log) is the
// line the handler would have written.
func AppendLogString(b []byte, s string) []byte { return appendString(b, s, slogJSON) }

func appendString(b []byte, s string, f *stringFlavour) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if f.safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b' && f.shortBF:
				b = append(b, '\\', 'b')
			case c == '\f' && f.shortBF:
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
