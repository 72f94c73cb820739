package chimpy_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/dialect/chimpy"
	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestDemo runs the curl lines `posgate serve --demo` prints for chimpy and for posgate's own
// client_credentials, twice (a second run replaces the first one's credentials).
func TestDemo(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	inst := servertest.Start(t, servertest.Options{})
	run := func(lines []string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "bash", "-c", "set -euo pipefail\n"+strings.Join(lines, "\n")).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	var first []string
	for i := range 2 {
		m, err := chimpy.New(inst.Svc)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := m.(app.Demoer).Demo(t.Context(), inst.URL)
		if err != nil {
			t.Fatal(err)
		}
		out := run(lines)
		if strings.Count(out, `"access_token":"eyJ`) != 2 || strings.Count(out, `"refresh_token":"pg_rt_`) != 2 {
			t.Fatalf("chimpy demo run %d:\n%s", i, out)
		}
		if i == 0 {
			first = lines
		}
	}
	// The first run's credentials no longer work.
	if out, _ := exec.CommandContext(t.Context(), "bash", "-c", first[1]).CombinedOutput(); !strings.Contains(string(out), "invalid_") {
		t.Fatalf("the replaced demo credentials still work: %s", out)
	}

	m, err := oauth.New(inst.Svc)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := m.(app.Demoer).Demo(t.Context(), inst.URL)
	if err != nil {
		t.Fatal(err)
	}
	if out := run(lines); !strings.Contains(out, `"active":true`) || !strings.Contains(out, `"gty":"client_credentials"`) {
		t.Fatalf("oauth demo:\n%s", out)
	}
}
