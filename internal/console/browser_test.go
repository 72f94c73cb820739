package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/posgate/posgate/internal/dialect/chef"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/store"
)

// chromiumPath finds Debian's chromium (or another Chrome); the test skips without one, except
// under CI=true where it fails.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required under CI=true (apt-get install chromium)")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// TestBrowserPairing drives the console in headless Chromium: sign in, then for each of 20 devices
// the pending row appears without a reload (server-sent events), a click on Approve, and the held
// authenticateClient call returns its token. It reports click-to-token latency (p50/p99); it
// asserts correctness only, never speed.
//
// CHEF_SCREENSHOT=path writes a screenshot of the pending page with a device waiting.
func TestBrowserPairing(t *testing.T) {
	exe := chromiumPath(t)
	inst := cheftest.Start(t, cheftest.Options{})
	// localhost (a secure context for cookies, like 127.0.0.1) keeps the Secure cookie working on
	// plain HTTP.
	base := strings.Replace(inst.URL, "127.0.0.1", "localhost", 1)

	// Chromium keeps its singleton socket in a directory of its own under $TMPDIR, which it does
	// not remove when it is killed: both the profile and that directory live under the test's
	// temporary directories, which the test removes.
	profile, tmp := t.TempDir(), t.TempDir()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Env("TMPDIR="+tmp),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 720),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	// The first Run starts the browser and must not carry a timeout (it would bound the browser's
	// life); later steps get their own.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/admin/")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if sock, err := os.Readlink(filepath.Join(profile, "SingletonSocket")); err != nil {
		t.Errorf("chromium's singleton socket: %v", err)
	} else if !strings.HasPrefix(sock, tmp+string(filepath.Separator)) {
		t.Errorf("chromium keeps its singleton socket in %s, outside the test's temporary directory", sock)
	}
	step := func(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
		sctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return chromedp.Do(sctx, actions...)
	}
	eval := func(expr string) string {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}

	// Sign in.
	err := step(30*time.Second,
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), inst.AdminToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="live"]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if title := eval(`document.title`); !strings.HasPrefix(title, "Pending devices") {
		t.Fatalf("title %q", title)
	}
	// A marker that a reload would wipe out.
	eval(`window.__noReload = "still here"`)

	// When the console's decision request reaches the server: splits click-to-token into the
	// browser's part (DevTools click, event, fetch) and posgate's (decision to token at the device).
	arrived := make(chan time.Time, 1)
	inst.SetOnRequest(func(r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/approve") {
			select {
			case arrived <- time.Now():
			default:
			}
		}
	})
	const pairings = 20
	var lat, clicks, server []time.Duration // click-to-token; the DevTools click action; POST arrival to token
	for i := 0; i < pairings; i++ {
		devID := fmt.Sprintf("till-%02d", i)
		ch := pairAsync(inst, devID, fmt.Sprintf("Till %d (front)", i+1))
		d := inst.WaitPending(t, 1)[0]
		row := fmt.Sprintf(`tr[data-id=%q]`, d.ID)
		if err := step(30*time.Second, chromedp.WaitVisible(chromedp.CSS(row+` button.approve`))); err != nil {
			t.Fatalf("pairing %d: the row never appeared without a reload: %v", i, err)
		}
		if m := eval(`window.__noReload || ""`); m != "still here" {
			t.Fatal("the page reloaded")
		}
		if ua := eval(`document.querySelector('` + row + ` td.ua').textContent`); ua != "ChefTill/3.2 (test)" {
			t.Fatalf("row shows User-Agent %q", ua)
		}
		if i == 0 {
			if path := os.Getenv("CHEF_SCREENSHOT"); path != "" {
				png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		start := time.Now()
		if err := step(30*time.Second, chromedp.Click(chromedp.CSS(row+` button.approve`), chromedp.NodeVisible)); err != nil {
			t.Fatalf("pairing %d: click: %v", i, err)
		}
		clicks = append(clicks, time.Since(start))
		var answer string
		select {
		case answer = <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("pairing %d: no token 30 s after the click", i)
		}
		done := time.Now()
		lat = append(lat, done.Sub(start))
		select {
		case at := <-arrived:
			server = append(server, done.Sub(at))
		default:
			t.Fatalf("pairing %d: the approval never reached the server", i)
		}
		if !strings.Contains(answer, `"success":true`) || !strings.Contains(answer, `"new_device":true`) {
			t.Fatalf("pairing %d: %s", i, answer)
		}
		// The row leaves the page, still without a reload.
		if err := step(30*time.Second, chromedp.WaitNotPresent(chromedp.CSS(row))); err != nil {
			t.Fatalf("pairing %d: row stayed: %v", i, err)
		}
	}
	if status := eval(`document.getElementById("status").textContent`); !strings.Contains(status, "approved") {
		t.Fatalf("status %q", status)
	}
	slices.Sort(lat)
	slices.Sort(clicks)
	p50, p99 := lat[(len(lat)+1)/2-1], lat[len(lat)-1] // with 20 samples the 99th percentile is the slowest
	t.Logf("click-to-token over %d pairings: p50 %.1f ms, p99 %.1f ms (min %.1f, max %.1f); target p99 <= 50 ms",
		pairings, ms(p50), ms(p99), ms(lat[0]), ms(lat[len(lat)-1]))
	t.Logf("  the DevTools click action (mouse press and release dispatched to the page): p50 %.1f ms, p99 %.1f ms",
		ms(clicks[(len(clicks)+1)/2-1]), ms(clicks[len(clicks)-1]))
	slices.Sort(server)
	t.Logf("  posgate's part, from the decision request's arrival to the token at the device: p50 %.1f ms, p99 %.1f ms",
		ms(server[(len(server)+1)/2-1]), ms(server[len(server)-1]))
	if p99 > 50*time.Millisecond {
		t.Logf("note: p99 above the 50 ms target on this machine (not a failure: timing is reported, not asserted)")
	}

	// More requests pending than the page shows: the live list keeps the 200 most recent and the
	// page says how many there are, still without a reload.
	if eval(`String(document.getElementById("more").hidden)`) != "true" {
		t.Fatal("the partial-list note shows for a short list")
	}
	now := inst.Svc.Clock.Now()
	for i := 0; i < 201; i++ {
		at := now.Add(time.Duration(i-300) * time.Second)
		if _, err := inst.Svc.Store.UpsertPendingChefDevice(context.Background(), &store.ChefDevice{ID: fmt.Sprintf("dev_bulk%03d", i),
			DeviceKey: fmt.Sprintf("bulk:%03d", i), Label: "bulk", Address: "10.0.0.1", UserAgent: "Chef/1", FirstSeen: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	ch := pairAsync(inst, "till-last", "Last till") // its notice refreshes the page's list
	d := pendingByLabel(t, inst, "Last till")
	if err := step(30*time.Second, chromedp.WaitVisible(chromedp.CSS(`#more`))); err != nil {
		t.Fatalf("the partial-list note never showed: %v", err)
	}
	if got := eval(`document.getElementById("shown").textContent + "/" + document.getElementById("total").textContent + "/" + document.querySelectorAll("#pending tbody tr").length + "/" + document.querySelector("#pending tbody tr").dataset.id`); got != "200/202/200/"+d.ID {
		t.Fatalf("shown/total/rows/first = %s", got)
	}
	if m := eval(`window.__noReload || ""`); m != "still here" {
		t.Fatal("the page reloaded")
	}
	if _, err := inst.Module.Decide(context.Background(), d.ID, chef.ActionDecline, "admin", "127.0.0.1", "test"); err != nil {
		t.Fatal(err)
	}
	<-ch
}

// pendingByLabel waits for the pending request labelled label.
func pendingByLabel(t *testing.T, inst *cheftest.Instance, label string) *store.ChefDevice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := inst.Svc.Store.ListChefDevices(context.Background(), store.DevicePending)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.Label == label {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending request labelled %q", label)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
