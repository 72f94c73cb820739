package config

import (
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key   string // "server.addr", "routes[1].path"; "" when the message names what it is about
	Where string // where the value came from: "posgate.yaml, line 4", "environment POSGATE_…", "flag"; "" for a default
	Msg   string
	Route int // the route's index for a problem of routes[i], else -1
	line  int // the file line, for ordering
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Where != "" {
		b.WriteString(p.Where + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a configuration: its file, its environment and its flags are
// all checked before anything is reported, so one start shows everything to fix.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

type problems []Problem

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, Problem{Key: key, Msg: fmt.Sprintf(format, args...), Route: -1})
}

// at adds a problem found at a line of the file.
func (p *problems) at(file string, line int, key, format string, args ...any) {
	*p = append(*p, Problem{Key: key, Where: lineOf(file, line), Msg: fmt.Sprintf(format, args...), Route: -1, line: line})
}

func (p *problems) route(i int, field, format string, args ...any) {
	*p = append(*p, Problem{Key: fmt.Sprintf("routes[%d].%s", i, field), Msg: fmt.Sprintf(format, args...), Route: i})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &Error{Problems: slices.Clone(p)}
}

func lineOf(file string, line int) string {
	if file == "" {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("%s, line %d", file, line)
}

// sources says where each key's value came from: the file (with its line), the environment or a
// flag. Keys are paths as in problems ("server.addr", "routes[0].path", "upstreams.pos").
type sources map[string]source

type source struct {
	where string
	line  int
}

// locate fills Where for problems about keys that were set, from the key or its nearest parent
// ("routes[0].upstream" falls back to "routes[0]", then "routes").
func (s sources) locate(ps []Problem) {
	for i := range ps {
		if ps[i].Where != "" {
			continue
		}
		for k := ps[i].Key; k != ""; k = parentKey(k) {
			if src, ok := s[k]; ok {
				ps[i].Where, ps[i].line = src.where, src.line
				break
			}
		}
	}
}

func parentKey(k string) string {
	i := max(strings.LastIndexByte(k, '.'), strings.LastIndexByte(k, '['))
	if i <= 0 {
		return ""
	}
	return k[:i]
}
