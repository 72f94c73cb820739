package orderpay_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestDocWalkthrough runs docs/dialects/orderpay.md against a real posgate with the real
// simulator (`posgate simulate orderpay-pos`, built from this tree): the sh blocks run in order in
// one bash, and every text block after an sh block lists lines that block must print ("…" stands
// for any text).
func TestDocWalkthrough(t *testing.T) {
	doctest.RequireTool(t, "curl", "apt-get install curl")
	doctest.RequireTool(t, "jq", "apt-get install jq")
	blocks := doctest.Blocks(t, filepath.Join("..", "..", "..", "docs", "dialects", "orderpay.md"))
	var script strings.Builder
	// A simulator left running by a failed block is stopped with the shell.
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	type expectation struct {
		block int
		text  string
	}
	var expect []expectation
	sh := 0
	for _, b := range blocks {
		switch b.Lang {
		case "sh":
			sh++
			script.WriteString("echo '@@block " + strconv.Itoa(sh) + "'\n" + b.Body + "\n")
		case "text":
			if sh == 0 { // the setup block: the test provides these variables itself
				continue
			}
			for _, line := range strings.Split(strings.TrimSpace(b.Body), "\n") {
				expect = append(expect, expectation{block: sh, text: strings.TrimSpace(line)})
			}
		}
	}
	if sh != 6 || len(expect) < 7 {
		t.Fatalf("doc structure changed: %d sh blocks, %d expected lines", sh, len(expect))
	}

	inst := servertest.Start(t, servertest.Options{})
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(buildPosgate(t), filepath.Join(bin, "posgate")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "POSGATE="+inst.URL, "ADMIN_TOKEN="+inst.AdminToken,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	blockOut := map[int]string{}
	for _, o := range strings.Split(string(out), "@@block ")[1:] {
		n, rest, _ := strings.Cut(o, "\n")
		i, _ := strconv.Atoi(n)
		blockOut[i] = rest
	}
	for _, x := range expect {
		if !doctest.ContainsLine(blockOut[x.block], x.text) {
			t.Errorf("sh block %d printed:\n%s\nwant a line matching %s", x.block, blockOut[x.block], x.text)
		}
	}
	if strings.Contains(inst.Logs(), "pg_os_") || strings.Contains(inst.Logs(), "token=") {
		t.Error("an AuthSecret or a ticket reached the logs")
	}
}
