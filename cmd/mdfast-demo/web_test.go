package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdfast/mdfast/internal/testutil"
)

// TestDemoWeb: DEMO_WEB=1 prints a URL; two tabs of a headless Chromium on
// this host (fake camera) open it, join through keydist's join endpoint
// and each decodes the other's video through mdfast.
func TestDemoWeb(t *testing.T) {
	testutil.NeedRoot(t, "the demo uses network namespaces and XDP")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Debian's chromium (scripts/deps.sh installs it)")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "github.com/mdfast/mdfast/cmd/mdfast", "github.com/mdfast/mdfast/cmd/keydist", "github.com/mdfast/mdfast/cmd/mdfast-demo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(bin, "mdfast-demo"))
	cmd.Env = append(os.Environ(), "DEMO_BIN="+bin, "DEMO_WEB=1", "DEMO_SECONDS=120")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stopped := false
	stop := func() []string {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT)
		}
		var rest []string
		for l := range lines {
			rest = append(rest, l)
		}
		_ = cmd.Wait()
		return rest
	}
	defer stop()
	var url string
	select {
	case l := <-lines:
		m := regexp.MustCompile(`^demo: open (http://\S+) in two tabs`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("first line %q\n%s", l, stderr.String())
		}
		url = m[1]
	case <-time.After(60 * time.Second):
		t.Fatalf("no URL printed\n%s", stderr.String())
	}

	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.Flag("disable-dev-shm-usage", true))
	defer acancel()
	tab1, cancel1 := chromedp.NewContext(actx)
	defer cancel1()
	if err := chromedp.Do(tab1, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	tab2, cancel2 := chromedp.NewContext(tab1)
	defer cancel2()
	if err := chromedp.Do(tab2, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	frames := func(tab context.Context) int {
		ctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`framesDecoded()`, chromedp.EvalAwaitPromise))
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for frames(tab1) < 10 || frames(tab2) < 10 {
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(tab1, 5*time.Second)
			logText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('log').textContent`))
			cancel()
			t.Fatalf("tabs decoded %d and %d frames; page log %q\n%s", frames(tab1), frames(tab2), logText, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("two browser tabs decoded %d and %d frames of each other's camera", frames(tab1), frames(tab2))
	rest := stop()
	summary := strings.Join(rest, "\n")
	if !regexp.MustCompile(`(?m)^demo: web url=http://127\.0\.0\.1:8000/ joined=2$`).MatchString(summary) {
		t.Fatalf("summary %q", summary)
	}
	if _, err := os.Stat("/sys/class/net/" + fmt.Sprintf("mdfd%d-web", cmd.Process.Pid)); err == nil {
		t.Error("the host link is still there after the demo ended")
	}
}
