package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSingle(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		method  string
		id      string // expected id literal; "" = notification (nil)
		params  string
		errCode int // expected Call.Err code (0 = valid)
	}{
		{"int id", `{"jsonrpc":"2.0","method":"a.b","params":[{}],"id":1}`, "a.b", "1", "[{}]", 0},
		{"float literal kept", `{"jsonrpc":"2.0","method":"m","id":1.0}`, "m", "1.0", "", 0},
		{"big integer kept", `{"jsonrpc":"2.0","method":"m","id":12345678901234567890}`, "m", "12345678901234567890", "", 0},
		{"exponent kept", `{"jsonrpc":"2.0","method":"m","id":-1e400}`, "m", "-1e400", "", 0},
		{"string id", `{"jsonrpc":"2.0","method":"m","id":"abc"}`, "m", `"abc"`, "", 0},
		{"string id escapes kept", `{"jsonrpc":"2.0","method":"m","id":"<\u00e9>\"x"}`, "m", `"<\u00e9>\"x"`, "", 0},
		{"null id is a call", `{"jsonrpc":"2.0","method":"m","id":null}`, "m", "null", "", 0},
		{"notification", `{"jsonrpc":"2.0","method":"m","params":{"a":1}}`, "m", "", `{"a":1}`, 0},
		{"white space around", " \n\t{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":7}\r\n", "m", "7", "", 0},
		{"escaped member names", `{"jsonrpc":"2.0","\u006dethod":"m","id":2}`, "m", "2", "", 0},
		{"unknown members ignored", `{"jsonrpc":"2.0","method":"m","id":2,"x":1}`, "m", "2", "", 0},

		{"missing jsonrpc", `{"method":"m","id":3}`, "", "3", "", CodeInvalidRequest},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","method":"m","id":3}`, "", "3", "", CodeInvalidRequest},
		{"jsonrpc number", `{"jsonrpc":2.0,"method":"m","id":3}`, "", "3", "", CodeInvalidRequest},
		{"method missing", `{"jsonrpc":"2.0","id":"x"}`, "", `"x"`, "", CodeInvalidRequest},
		{"method number", `{"jsonrpc":"2.0","method":1,"id":"x"}`, "", `"x"`, "", CodeInvalidRequest},
		{"method wrong case", `{"jsonrpc":"2.0","Method":"m","id":4}`, "", "4", "", CodeInvalidRequest},
		{"params string", `{"jsonrpc":"2.0","method":"m","params":"x","id":5}`, "", "5", "", CodeInvalidRequest},
		{"params null", `{"jsonrpc":"2.0","method":"m","params":null,"id":5}`, "", "5", "", CodeInvalidRequest},
		{"id object", `{"jsonrpc":"2.0","method":"m","id":{}}`, "", "null", "", CodeInvalidRequest},
		{"id array", `{"jsonrpc":"2.0","method":"m","id":[1]}`, "", "null", "", CodeInvalidRequest},
		{"id bool", `{"jsonrpc":"2.0","method":"m","id":true}`, "", "null", "", CodeInvalidRequest},
		{"duplicate method", `{"jsonrpc":"2.0","method":"a","method":"b","id":1}`, "", "null", "", CodeInvalidRequest},
		{"duplicate differing case", `{"jsonrpc":"2.0","method":"a","METHOD":"b","id":1}`, "", "null", "", CodeInvalidRequest},
		{"duplicate id", `{"jsonrpc":"2.0","method":"a","id":1,"id":2}`, "", "null", "", CodeInvalidRequest},
		{"duplicate inside params", `{"jsonrpc":"2.0","method":"a","params":[{"k":1,"k":2}],"id":1}`, "", "null", "", CodeInvalidRequest},
		{"invalid notification answered", `{"jsonrpc":"2.0"}`, "", "null", "", CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, perr := Parse([]byte(tc.body), Limits{})
			if perr != nil {
				t.Fatalf("body error %v", perr)
			}
			if b.Batch || len(b.Calls) != 1 {
				t.Fatalf("got batch=%v calls=%d", b.Batch, len(b.Calls))
			}
			c := b.Calls[0]
			if tc.errCode != 0 {
				if c.Err == nil || c.Err.Code != tc.errCode {
					t.Fatalf("want error %d, got %+v", tc.errCode, c.Err)
				}
				if c.Err.Message != "Invalid Request" {
					t.Fatalf("message %q", c.Err.Message)
				}
			} else if c.Err != nil {
				t.Fatalf("unexpected error %+v", c.Err)
			}
			if c.Method != tc.method {
				t.Fatalf("method %q, want %q", c.Method, tc.method)
			}
			if tc.id == "" {
				if c.ID != nil || !c.IsNotification() {
					t.Fatalf("want notification, id %q", c.ID)
				}
			} else if string(c.ID) != tc.id {
				t.Fatalf("id %q, want %q", c.ID, tc.id)
			}
			if string(c.Params) != tc.params {
				t.Fatalf("params %q, want %q", c.Params, tc.params)
			}
		})
	}
}

func TestParseBodyFaults(t *testing.T) {
	tests := []struct {
		name string
		body string
		code int
	}{
		{"empty", "", CodeParseError},
		{"spaces", "  \n ", CodeParseError},
		{"truncated", `{"jsonrpc":"2.0","method":"m"`, CodeParseError},
		{"trailing garbage", `{"jsonrpc":"2.0","method":"m","id":1} x`, CodeParseError},
		{"two objects", `{"jsonrpc":"2.0","method":"m","id":1}{"jsonrpc":"2.0","method":"m","id":2}`, CodeParseError},
		{"spec example", `[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]`, CodeParseError},
		{"invalid utf8", "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"\xff\"}", CodeParseError},
		{"bom", "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}", CodeParseError},
		{"empty batch", `[]`, CodeInvalidRequest},
		{"empty batch spaced", ` [ ] `, CodeInvalidRequest},
		{"number", `1`, CodeInvalidRequest},
		{"string", `"x"`, CodeInvalidRequest},
		{"null", `null`, CodeInvalidRequest},
		{"too large", "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"m","id":1},`, 20) + `{"jsonrpc":"2.0","method":"m","id":1}]`, CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, perr := Parse([]byte(tc.body), Limits{})
			if perr == nil {
				t.Fatalf("want body error %d, got %+v", tc.code, b)
			}
			if perr.Code != tc.code || perr.Message != StandardMessage(tc.code) {
				t.Fatalf("got %+v", perr)
			}
		})
	}
}

func TestParseBatch(t *testing.T) {
	// The specification's examples, in one batch.
	body := `[
		{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
		{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
		{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
		{"foo": "boo"},
		{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
		{"jsonrpc": "2.0", "method": "get_data", "id": "9"},
		1,
		[]
	]`
	b, perr := Parse([]byte(body), Limits{})
	if perr != nil {
		t.Fatal(perr)
	}
	if !b.Batch || len(b.Calls) != 8 {
		t.Fatalf("batch=%v n=%d", b.Batch, len(b.Calls))
	}
	want := []struct {
		method string
		id     string
		err    bool
	}{
		{"sum", `"1"`, false}, {"notify_hello", "", false}, {"subtract", `"2"`, false}, {"", "null", true},
		{"foo.get", `"5"`, false}, {"get_data", `"9"`, false}, {"", "null", true}, {"", "null", true},
	}
	for i, w := range want {
		c := b.Calls[i]
		if c.Method != w.method || string(c.ID) != w.id || (c.Err != nil) != w.err {
			t.Errorf("call %d: method %q id %q err %v; want %+v", i, c.Method, c.ID, c.Err, w)
		}
	}
	// Exactly at the limit is fine.
	twenty := "[" + strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","method":"m","id":1},`, 20), ",") + "]"
	if b, perr := Parse([]byte(twenty), Limits{}); perr != nil || len(b.Calls) != 20 {
		t.Fatalf("20 calls: %v", perr)
	}
	if _, perr := Parse([]byte(twenty), Limits{MaxBatch: 19}); perr == nil || perr.Code != CodeInvalidRequest {
		t.Fatalf("limit 19: %v", perr)
	}
	// A batch of one is still a batch.
	if b, _ := Parse([]byte(`[{"jsonrpc":"2.0","method":"m","id":1}]`), Limits{}); !b.Batch {
		t.Fatal("batch of one not a batch")
	}
}

func TestEncode(t *testing.T) {
	ok, err := Success(json.RawMessage(`"<&>"`), map[string]any{"success": true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		r    Response
		want string
	}{
		{ok, `{"jsonrpc":"2.0","id":"<&>","result":{"success":true}}`},
		{Response{ID: json.RawMessage("12345678901234567890"), Result: json.RawMessage(`1`)}, `{"jsonrpc":"2.0","id":12345678901234567890,"result":1}`},
		{Response{ID: json.RawMessage("1.0"), Result: json.RawMessage(`null`)}, `{"jsonrpc":"2.0","id":1.0,"result":null}`},
		{Failure(nil, NewError(CodeParseError, nil)), `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`},
		{Failure(Null, NewError(CodeInvalidRequest, "empty batch")), `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"empty batch"}}`},
		{Failure(json.RawMessage(`"x"`), &Error{Code: CodeInternalError, Message: "Internal error", Data: func() {}}), `{"jsonrpc":"2.0","id":"x","error":{"code":-32603,"message":"Internal error"}}`},
	}
	for _, tc := range tests {
		got := string(tc.r.AppendJSON(nil))
		if got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	batch := EncodeBatch([]Response{tests[0].r, tests[3].r})
	if string(batch) != "["+tests[0].want+","+tests[3].want+"]" {
		t.Fatalf("batch %s", batch)
	}
	m, _ := json.Marshal([]Response{tests[1].r})
	if !bytes.Contains(m, []byte("12345678901234567890")) {
		t.Fatalf("MarshalJSON lost the literal: %s", m)
	}
}

// FuzzParse: whatever the body, Parse does not panic, every call is either valid (method set,
// params an array or object) or carries -32600, ids are valid JSON echoed from the body, and every
// response built from the calls is valid JSON that echoes the id byte for byte.
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{}],"id":1}`,
		`{"jsonrpc":"2.0","method":"m","params":[{"device_id":"a","device_name":"b"}],"id":"x"}`,
		`{"jsonrpc":"2.0","method":"m","id":1.0}`,
		`{"jsonrpc":"2.0","method":"m","id":12345678901234567890}`,
		`{"jsonrpc":"2.0","method":"m","id":null}`,
		`{"jsonrpc":"2.0","method":"m"}`,
		`[{"jsonrpc":"2.0","method":"m","id":1},{"jsonrpc":"2.0","method":"n"},1,[],{"foo":"bar"}]`,
		`[]`, `[1]`, `1`, `null`, `"s"`, ``, `{`, `{"a":1,"a":2}`,
		`{"jsonrpc":"2.0","method":"m","id":"<\u00e9>"}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"\xff\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, perr := Parse(data, Limits{MaxBatch: 5})
		if perr != nil {
			if b != nil {
				t.Fatal("both a body and an error")
			}
			if perr.Code != CodeParseError && perr.Code != CodeInvalidRequest {
				t.Fatalf("body error code %d", perr.Code)
			}
			if out := Failure(nil, perr).AppendJSON(nil); !json.Valid(out) {
				t.Fatalf("invalid error JSON %s", out)
			}
			return
		}
		if len(b.Calls) == 0 || len(b.Calls) > 5 || (!b.Batch && len(b.Calls) != 1) {
			t.Fatalf("calls %d batch %v", len(b.Calls), b.Batch)
		}
		var rs []Response
		for _, c := range b.Calls {
			if c.Err != nil {
				if c.Err.Code != CodeInvalidRequest || c.ID == nil || c.Method != "" {
					t.Fatalf("bad invalid call %+v", c)
				}
			} else {
				if c.Params != nil && c.Params[0] != '[' && c.Params[0] != '{' {
					t.Fatalf("params %q", c.Params)
				}
				if !json.Valid(c.Raw) {
					t.Fatalf("raw %q", c.Raw)
				}
			}
			if c.ID != nil {
				if !json.Valid(c.ID) || !validID(c.ID) {
					t.Fatalf("id %q", c.ID)
				}
				if c.Err == nil && !bytes.Contains(data, c.ID) {
					t.Fatalf("id %q not from the body", c.ID)
				}
				rs = append(rs, Response{ID: c.ID, Result: json.RawMessage(`{"ok":true}`)})
			}
		}
		out := EncodeBatch(rs)
		if !json.Valid(out) {
			t.Fatalf("invalid response JSON %s", out)
		}
		var back []map[string]json.RawMessage
		if err := json.Unmarshal(out, &back); err != nil || len(back) != len(rs) {
			t.Fatalf("decode back: %v", err)
		}
		for i := range back {
			if string(back[i]["id"]) != string(rs[i].ID) {
				t.Fatalf("id %q echoed as %q", rs[i].ID, back[i]["id"])
			}
		}
	})
}
