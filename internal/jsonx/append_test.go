package jsonx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// AppendString must write exactly what encoding/json writes for a string (with HTML escaping),
// because the token claims and the gateway's identity header are compared and verified as bytes.
func checkAppendString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendString(nil, s); string(got) != string(want) {
		t.Fatalf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\b\f\n\r\t\x00\x1f", "<a>&", "\u2028\u2029", "\xff\xfe", "é€😀", "a\xc3"} {
		checkAppendString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "x", "\x00", "<&>", "\u2028", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAppendString(t, s) })
}

// AppendLogString must write exactly what log/slog's JSONHandler writes for a string value, because
// the server's access log encodes its lines by hand and they must be the lines the handler writes.
func checkAppendLogString(t *testing.T, s string) {
	t.Helper()
	var buf bytes.Buffer
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime})).Info("", slog.String("k", s))
	line := buf.String()
	const head, tail = `{"level":"INFO","msg":"","k":`, "}\n"
	if !strings.HasPrefix(line, head) || !strings.HasSuffix(line, tail) {
		t.Fatalf("unexpected slog line %q", line)
	}
	want := line[len(head) : len(line)-len(tail)]
	if got := AppendLogString(nil, s); string(got) != want {
		t.Fatalf("AppendLogString(%q) = %s, slog writes %s", s, got, want)
	}
}

func TestAppendLogString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\b\f\n\r\t\x00\x1f\x7f", "<a>&", "\u2028\u2029", "\xff\xfe", "é€😀", "a\xc3", "/p/%2e?x"} {
		checkAppendLogString(t, s)
	}
}

func FuzzAppendLogString(f *testing.F) {
	for _, s := range []string{"", "x", "\x00", "<&>", "\b\f", "\u2028", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAppendLogString(t, s) })
}
