package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// scanJSON walks a JSON document once and collects every tenant id field (at any depth, in
// objects inside arrays too) and every top-level occurrence of amountField. Duplicate keys are
// not refused here: every occurrence is collected, and the policy checks them all, so whichever
// one the upstream's parser keeps has been checked. Names are matched as encoding/json would
// decode them (escapes resolved, invalid UTF-8 as U+FFFD), with strings.EqualFold.
//
// The document is validated by json.Valid first; the walk then only needs to find structure, and
// allocates only for the values it keeps. FuzzScanJSON checks it against a walk built on
// encoding/json's tokenizer.
func scanJSON(data []byte, amountField string) (bodyFacts, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // for a message saying what is wrong
		if err == nil {
			err = errors.New("invalid")
		}
		return bodyFacts{}, fmt.Errorf("the body is not valid JSON: %v", err)
	}
	w := jsonWalk{d: data, amount: amountField}
	if err := w.value(0); err != nil {
		return bodyFacts{}, err
	}
	return w.facts, nil
}

var errTooDeep = errors.New("the body is nested too deeply")

// jsonWalk walks a document json.Valid accepted, so it only looks for structure.
type jsonWalk struct {
	d      []byte
	i      int
	amount string
	facts  bodyFacts
}

func (w *jsonWalk) ws() {
	for w.i < len(w.d) {
		switch w.d[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value skips one value; depth is the number of enclosing containers.
func (w *jsonWalk) value(depth int) error {
	w.ws()
	switch w.d[w.i] {
	case '{':
		return w.object(depth + 1)
	case '[':
		return w.array(depth + 1)
	case '"':
		w.str()
	default:
		w.scalar()
	}
	return nil
}

func (w *jsonWalk) array(depth int) error {
	if depth > maxBodyDepth {
		return errTooDeep
	}
	w.i++ // [
	w.ws()
	if w.d[w.i] == ']' {
		w.i++
		return nil
	}
	for {
		if err := w.value(depth); err != nil {
			return err
		}
		w.ws()
		c := w.d[w.i]
		w.i++ // , or ]
		if c == ']' {
			return nil
		}
	}
}

func (w *jsonWalk) object(depth int) error {
	if depth > maxBodyDepth {
		return errTooDeep
	}
	w.i++ // {
	w.ws()
	if w.d[w.i] == '}' {
		w.i++
		return nil
	}
	for {
		w.ws()
		rawKey := w.str()
		w.ws()
		w.i++ // :
		w.ws()
		if err := w.member(rawKey, depth); err != nil {
			return err
		}
		w.ws()
		c := w.d[w.i]
		w.i++ // , or }
		if c == '}' {
			return nil
		}
	}
}

// member handles the value of one member of an object at depth whose raw key is rawKey.
func (w *jsonWalk) member(rawKey []byte, depth int) error {
	field := ""
	for _, tf := range tenantIDFields {
		if keyEqualFold(rawKey, tf.name) {
			field = tf.field
		}
	}
	isAmount := depth == 1 && w.amount != "" && keyEqualFold(rawKey, w.amount)
	if field == "" && !isAmount {
		return w.value(depth)
	}
	start := w.i
	switch c := w.d[w.i]; {
	case c == '"':
		raw := w.str()
		if field != "" {
			w.facts.ids = append(w.facts.ids, idValue{field: field, value: decodeJSONString(raw), isString: true})
		}
		if isAmount {
			w.facts.amounts = append(w.facts.amounts, amountValue{})
		}
		return nil
	case c == '-' || c >= '0' && c <= '9':
		w.scalar()
		text := string(w.d[start:w.i])
		if field != "" {
			w.facts.ids = append(w.facts.ids, idValue{field: field, value: text})
		}
		if isAmount {
			w.facts.amounts = append(w.facts.amounts, amountValue{text: text, isNumber: true})
		}
		return nil
	default: // object, array, true, false, null
		if field != "" {
			w.facts.ids = append(w.facts.ids, idValue{field: field})
		}
		if isAmount {
			w.facts.amounts = append(w.facts.amounts, amountValue{})
		}
		return w.value(depth)
	}
}

// str skips the string at w.i and returns its raw contents (between the quotes, escapes as is).
func (w *jsonWalk) str() []byte {
	w.i++ // opening quote
	start := w.i
	for {
		switch w.d[w.i] {
		case '\\':
			w.i += 2
		case '"':
			raw := w.d[start:w.i]
			w.i++
			return raw
		default:
			w.i++
		}
	}
}

// scalar skips a number or a literal.
func (w *jsonWalk) scalar() {
	for w.i < len(w.d) {
		switch w.d[w.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return
		}
		w.i++
	}
}

// keyEqualFold compares a raw JSON key with name as encoding/json's decoding would see the key.
func keyEqualFold(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return strings.EqualFold(string(raw), name)
	}
	return strings.EqualFold(decodeJSONString(raw), name)
}

// decodeJSONString decodes the raw body of a JSON string as encoding/json does.
func decodeJSONString(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw)
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	_ = json.Unmarshal(q, &s) // cannot fail: the document passed json.Valid
	return s
}
