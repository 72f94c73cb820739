package doctest

import (
	"strconv"
	"strings"
	"testing"
)

// Walkthrough assembles a page's sh blocks, in order, into one bash script whose output splits
// per block, and checks that each block printed the lines the text blocks after it document.
type Walkthrough struct {
	script strings.Builder
	sh     int
	expect []expectation
}

type expectation struct {
	block int
	text  string
}

// NewWalkthrough starts a script that stops at the first failing command and, when it ends,
// stops whatever a block left running in the background (a simulator).
func NewWalkthrough() *Walkthrough {
	w := &Walkthrough{}
	w.script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	return w
}

// Sh adds the next sh block.
func (w *Walkthrough) Sh(body string) {
	w.sh++
	w.script.WriteString("echo '@@block " + strconv.Itoa(w.sh) + "'\n" + body + "\n")
}

// Expect records the lines of a text block (white space around each removed) as output the last
// sh block must print; keep, when not nil, selects the lines that count.
func (w *Walkthrough) Expect(body string, keep func(line string) bool) {
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		line = strings.TrimSpace(line)
		if keep == nil || keep(line) {
			w.expect = append(w.expect, expectation{block: w.sh, text: line})
		}
	}
}

// ShBlocks is the number of sh blocks added.
func (w *Walkthrough) ShBlocks() int { return w.sh }

// Expected is the number of expected lines recorded.
func (w *Walkthrough) Expected() int { return len(w.expect) }

// Script is the bash script.
func (w *Walkthrough) Script() string { return w.script.String() }

// Check fails t for every expected line (see ContainsLine) that its block did not print in out,
// the script's output.
func (w *Walkthrough) Check(t testing.TB, out []byte) {
	t.Helper()
	blockOut := map[int]string{}
	for _, o := range strings.Split(string(out), "@@block ")[1:] {
		n, rest, _ := strings.Cut(o, "\n")
		i, _ := strconv.Atoi(n)
		blockOut[i] = rest
	}
	for _, x := range w.expect {
		if !ContainsLine(blockOut[x.block], x.text) {
			t.Errorf("sh block %d printed:\n%s\nwant a line matching %s", x.block, blockOut[x.block], x.text)
		}
	}
}
