package chef_test

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/testutil/doctest"
)

// TestPHPClient runs the PHP sample (testdata/chef_client.php, the vendor's style: plain
// file_get_contents) with Debian's php-cli against a real server: its call is held until the device
// is approved, then it gets a token and makes a data call with it.
func TestPHPClient(t *testing.T) {
	php := doctest.RequireTool(t, "php", "apt-get install php-cli")
	inst := cheftest.Start(t, cheftest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, "testdata/chef_client.php", inst.URL+rpcPath, "php-till-7", "Till 7 (PHP)")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := inst.WaitPending(t, 1)[0]
	if d.Label != "Till 7 (PHP)" || d.UserAgent != "chef-php-sample/1.0" {
		t.Fatalf("pending %+v", d)
	}
	approve(t, inst, d.ID)

	lines := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		lines[k] = v
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("php: %v\n%s", err, stderr.String())
	}
	if c := verify(t, inst, lines["token"]); c.Subject != d.ID {
		t.Fatalf("token subject %s", c.Subject)
	}
	if lines["new_device"] != "true" || !strings.Contains(lines["data"], `"echo":true`) {
		t.Fatalf("php output %v", lines)
	}
	rec := inst.Received()
	if len(rec) != 1 || rec[0].Principal == nil || rec[0].Principal.Device != d.ID {
		t.Fatalf("upstream saw %+v", rec)
	}
}
