package webrtctest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/mdfast/mdfast/internal/syssim"
)

// browserPage is the test page: it joins through the join endpoint with a
// receive-only RTCPeerConnection (legacy WebRTC, no PERC) and exposes the
// video frames it decoded; webp() makes the VP8 frame the pion peer sends
// (a lossy WebP is one VP8 key frame).
const browserPage = `<!doctype html><title>mdfast join</title>
<video id="v" autoplay muted playsinline></video>
<script>
async function join(url, token) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', {direction: 'recvonly'});
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.ontrack = e => { if (e.track.kind === 'video') document.getElementById('v').srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(url, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}});
  if (r.status !== 201) throw new Error('join: ' + r.status + ' ' + await r.text());
  window.session = r.headers.get('Location');
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  window.pc = pc;
  return window.session;
}
async function framesDecoded() {
  let n = 0;
  (await window.pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0; });
  return n;
}
function webp() {
  const c = document.createElement('canvas'); c.width = 160; c.height = 120;
  const g = c.getContext('2d'); g.fillStyle = '#2a6'; g.fillRect(0, 0, 160, 120);
  g.fillStyle = '#fff'; g.font = '32px sans-serif'; g.fillText('mdfast', 20, 70);
  return c.toDataURL('image/webp', 0.8);
}
</script>`

// vp8FromWebP returns the VP8 key frame inside a lossy WebP data URL.
func vp8FromWebP(dataURL string) ([]byte, error) {
	b64, ok := strings.CutPrefix(dataURL, "data:image/webp;base64,")
	if !ok {
		return nil, fmt.Errorf("not a WebP data URL: %.40q", dataURL)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return nil, errors.New("not a RIFF WEBP file")
	}
	for b = b[12:]; len(b) >= 8; {
		n := int(binary.LittleEndian.Uint32(b[4:8]))
		if n > len(b)-8 {
			return nil, errors.New("truncated WebP chunk")
		}
		if string(b[:4]) == "VP8 " {
			return b[8 : 8+n], nil
		}
		b = b[8+n+n%2:]
	}
	return nil, errors.New("no VP8 chunk (lossless WebP?)")
}

// TestBrowserReceivesPionVideo: headless Chromium (Debian's chromium, fake
// media devices) loads a page served by the test, joins a legacy
// conference through the join endpoint and decodes the video a pion/webrtc
// peer sends through mdfast.
func TestBrowserReceivesPionVideo(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Debian's chromium (scripts/deps.sh installs it)")
	}
	const pageAddr = "127.0.0.1:8000" // inside the endpoints' namespace
	s := newSys(t, sysConfig{conferences: []string{"web"}, endpoints: 2,
		kdArgs: []string{"-join-allow-origin", "http://" + pageAddr}})

	// The page, served inside the endpoints' namespace.
	var ln net.Listener
	if err := syssim.InNetns(s.ep.NS.Name, func() error {
		var err error
		ln, err = net.Listen("tcp", pageAddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(browserPage))
	}), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-served })

	// Chromium in the endpoints' namespace, driven over its DevTools pipe.
	wrapper := filepath.Join(t.TempDir(), "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", s.ep.NS.Name, chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var browserLog bytes.Buffer
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(wrapper), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.CombinedOutput(&browserLog),
		chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("disable-dev-shm-usage", true))
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+pageAddr+"/")); err != nil {
		t.Fatalf("chromium: %v\n%s", err, browserLog.String())
	}
	step := func(d time.Duration) (context.Context, context.CancelFunc) { return context.WithTimeout(bctx, d) }

	// The frame pion sends: Chromium's own VP8 encoder made it.
	ctx, cancel := step(10 * time.Second)
	dataURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](`webp()`))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	frame, err := vp8FromWebP(dataURL)
	if err != nil {
		t.Fatal(err)
	}

	// The pion peer joins and sends the frame at 30 frames/s.
	p := newPeer(t, s, 1, "web")
	vtrack, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pion")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range p.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			if err := tr.Sender().ReplaceTrack(vtrack); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.join()
	p.waitConnected(15 * time.Second)
	p.wg.Go(func() {
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				_ = vtrack.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond})
			}
		}
	})

	// The browser joins.
	ctx, cancel = step(15 * time.Second)
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`join(%q, %q)`, joinURL()+"/v1/join/web", s.token("web")), chromedp.EvalAwaitPromise))
	cancel()
	if err != nil {
		s.fatal(fmt.Errorf("browser join: %w", err))
	}
	t.Logf("browser joined: %s", loc)
	var frames int
	if d, ok := eventually(20*time.Second, func() bool {
		ctx, cancel := step(5 * time.Second)
		defer cancel()
		frames, err = chromedp.Run(ctx, chromedp.Evaluate[int](`framesDecoded()`, chromedp.EvalAwaitPromise))
		return err == nil && frames > 30
	}); !ok {
		s.logMetrics()
		s.fatal(fmt.Errorf("browser decoded %d frames (err %v)", frames, err))
	} else {
		t.Logf("browser decoded %d frames of the pion peer's video %s after joining", frames, d.Round(time.Millisecond))
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="auth"`); n != 0 {
		t.Errorf("mdfast dropped %v packets failing SRTP authentication", n)
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="malformed"`); n != 0 {
		t.Errorf("mdfast dropped %v malformed packets", n)
	}
	if n := len(s.joinSessions()); n != 2 {
		t.Errorf("%d join sessions, want 2", n)
	}
}
