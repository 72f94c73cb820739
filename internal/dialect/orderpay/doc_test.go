package orderpay_test

import (
	"os"
	"os/exec"
	"path/filepath"
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
	w := doctest.NewWalkthrough()
	for _, b := range blocks {
		switch b.Lang {
		case "sh":
			w.Sh(b.Body)
		case "text":
			if w.ShBlocks() == 0 { // the setup block: the test provides these variables itself
				continue
			}
			w.Expect(b.Body, nil)
		}
	}
	if w.ShBlocks() != 6 || w.Expected() < 7 {
		t.Fatalf("doc structure changed: %d sh blocks, %d expected lines", w.ShBlocks(), w.Expected())
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
	cmd := exec.Command("bash", "-c", w.Script())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "POSGATE="+inst.URL, "ADMIN_TOKEN="+inst.AdminToken,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	w.Check(t, out)
	if strings.Contains(inst.Logs(), "pg_os_") || strings.Contains(inst.Logs(), "token=") {
		t.Error("an AuthSecret or a ticket reached the logs")
	}
}
