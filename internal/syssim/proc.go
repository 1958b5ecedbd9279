package syssim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a daemon running as a child process, its output in a log file.
type Proc struct {
	// Name names it in errors.
	Name string
	// Log is its log file.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts cmd (e.g. `ip netns exec NS ...`) with its output in
// logPath, in its own process group, killed if this process dies.
func Start(name, logPath string, cmd *exec.Cmd) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (also its process group).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how it exited; valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Alive says whether it is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends sig, waits up to 5 s, then kills the process group.
func (p *Proc) Stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// Kill kills the process group with SIGKILL and waits for the process.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Tail is the last n lines of the log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var pathRE = regexp.MustCompile(`path=(xdp-native|xdp-generic|socket)`)

// ReportedPath is the data path mdfast logged (xdp-native, xdp-generic or
// socket).
func (p *Proc) ReportedPath() (string, error) {
	b, _ := os.ReadFile(p.Log)
	if m := pathRE.FindSubmatch(b); m != nil {
		return string(m[1]), nil
	}
	return "", errors.New("mdfast did not report its data path")
}

// Get fetches url with c and returns the status and body (at most 8 MiB).
func Get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b), err
}

// GetAuth is Get with an Authorization: Bearer token (mdfast's control
// API, keydist's admin API).
func GetAuth(c *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b), err
}

// WaitReady polls url (mdfast's /readyz: tunnel up, data plane running)
// until it answers 200, one of procs exits, ctx ends or timeout passes.
func WaitReady(ctx context.Context, c *http.Client, url string, timeout time.Duration, procs ...*Proc) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p != nil && !p.Alive() {
				return fmt.Errorf("%s exited: %v", p.Name, p.err)
			}
		}
		if code, _, err := Get(c, url); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("mdfast not ready (tunnel to keydist up, data plane running) in time")
}

// SumMetric sums the samples of the metric family name in a Prometheus
// text exposition.
func SumMetric(body, name string) float64 {
	var sum float64
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// NonZero returns the labelled samples of family name that are not zero,
// as "{labels} value".
func NonZero(body, name string) []string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, name+"{") && !strings.HasSuffix(line, " 0") {
			out = append(out, strings.TrimPrefix(line, name))
		}
	}
	return out
}

// BuildDaemons builds mdfast and keydist into a new temporary directory
// named after prefix, for tests that run the real daemons; the caller
// removes it (os.RemoveAll).
func BuildDaemons(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix+"-bin-")
	if err != nil {
		return "", fmt.Errorf("syssim: %w", err)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/mdfast/mdfast/cmd/mdfast", "github.com/mdfast/mdfast/cmd/keydist")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("syssim: build the daemons: %w\n%s", err, out)
	}
	return dir, nil
}
