package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/mdfast/mdfast/internal/keydist"
)

// DEMO_WEB=1: keydist runs its join endpoint and mdfast places joined
// endpoints by their ICE sessions; a veth from this host's network
// namespace into the demo's bridge (198.18.0.254, removed on exit) lets a
// browser on this host reach the join endpoint and the MD's media address,
// and a page served on http://127.0.0.1:8000/ (a secure context, so the
// camera may be used) joins the legacy conference "web" with a join token
// the demo minted. Opened in two tabs, each shows the other's camera
// through mdfast.

const (
	webHost       = 254
	webConference = "web"
	webPage       = "127.0.0.1:8000"
	joinPort      = 8080
)

// webLink is the host-side interface name.
func (t *topology) webLink() string { return t.prefix + "web" }

// addWebLink plugs this host's namespace into the bridge.
func (t *topology) addWebLink() error {
	sw, link := t.ns("sw"), t.webLink()
	if err := ipCmd("link", "add", link, "type", "veth", "peer", "name", "v-web", "netns", sw); err != nil {
		return err
	}
	t.hostLinks = append(t.hostLinks, link)
	for _, args := range [][]string{
		{"-n", sw, "link", "set", "v-web", "master", "br0", "up"},
		{"link", "set", link, "address", hostMAC(webHost)},
		{"addr", "add", hostAddr(webHost) + "/24", "dev", link},
		{"link", "set", link, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	// The AF_XDP path needs the browser host's MAC before its first packet.
	return t.neigh("md", webHost)
}

// webRegistry is keydist's registry: one conference that admits legacy
// WebRTC endpoints (no tls-id), whose members come through the join
// endpoint only.
const webRegistry = "conferences:\n  - id: " + webConference + "\n    allow_legacy: true\n    endpoints: []\n"

// webKDArgs are keydist's join endpoint flags.
func (d *demo) webKDArgs() ([]string, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	d.joinSecret = []byte(hex.EncodeToString(secret))
	if err := os.WriteFile(d.files.Path("join.secret"), d.joinSecret, 0o600); err != nil {
		return nil, fmt.Errorf("join secret: %w", err)
	}
	if err := os.WriteFile(d.files.Path("registry.yaml"), []byte(webRegistry), 0o600); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return []string{
		"-join-listen", net.JoinHostPort(hostAddr(kdHost), strconv.Itoa(joinPort)), "-join-secret-file", d.files.Path("join.secret"),
		"-md-control-url", "http://" + net.JoinHostPort(hostAddr(mdHost), "5742"), "-md-control-token-file", d.files.Path("control.token"),
		"-md-media-addr", net.JoinHostPort(hostAddr(mdHost), strconv.Itoa(mediaPort)), "-join-allow-origin", "http://" + webPage,
	}, nil
}

// webMDArgs: keydist reaches mdfast's control API on the bridge (its
// join endpoint puts the sessions there).
func (d *demo) webMDArgs() []string {
	if !d.o.web {
		return nil
	}
	return []string{"-control-listen", net.JoinHostPort(hostAddr(mdHost), "5742")}
}

var webTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<meta charset="utf-8"><title>mdfast: join through keydist</title>
<style>body{font-family:sans-serif} video{width:320px;background:#222;margin:4px}</style>
<h1>mdfast join demo</h1>
<p>Conference <b>{{.Conference}}</b>. Open this page in two tabs: each shows the other's camera, forwarded by mdfast (legacy WebRTC, keys from keydist).</p>
<video id="local" autoplay muted playsinline></video><video id="remote" autoplay playsinline></video>
<pre id="log"></pre>
<script>
const log = m => { document.getElementById('log').textContent += m + '\n'; };
window.framesDecoded = async () => {
  let n = 0;
  if (window.pc) (await window.pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0; });
  return n;
};
(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
  document.getElementById('local').srcObject = stream;
  const pc = new RTCPeerConnection();
  window.pc = pc;
  stream.getTracks().forEach(t => pc.addTransceiver(t, {direction: 'sendrecv'}));
  const remote = new MediaStream();
  pc.ontrack = e => { remote.addTrack(e.track); document.getElementById('remote').srcObject = remote; };
  pc.onconnectionstatechange = () => log('connection: ' + pc.connectionState);
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch({{.JoinURL}}, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + {{.Token}}}});
  if (r.status !== 201) { log('join refused: ' + r.status + ' ' + await r.text()); return; }
  const session = {{.Base}} + r.headers.get('Location');
  log('joined: ' + session);
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  window.addEventListener('pagehide', () => fetch(session, {method: 'DELETE', keepalive: true,
    headers: {'Authorization': 'Bearer ' + {{.Token}}}}));
})().catch(e => log('error: ' + e));
</script>`))

// web runs DEMO_WEB=1: serves the page and waits for the end (SIGINT, or
// DEMO_SECONDS when set), then prints the summary line
//
//	demo: web url=http://127.0.0.1:8000/ joined=N
func (d *demo) web(ctx context.Context) (int, error) {
	token, err := keydist.MintJoinToken(d.joinSecret, webConference, time.Now().Add(24*time.Hour))
	if err != nil {
		return 1, err
	}
	base := "http://" + net.JoinHostPort(hostAddr(kdHost), strconv.Itoa(joinPort))
	page := struct{ Conference, JoinURL, Token, Base string }{webConference, base + "/v1/join/" + webConference, token, base}
	ln, err := net.Listen("tcp", webPage)
	if err != nil {
		return 1, fmt.Errorf("page listener: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = webTemplate.Execute(w, page)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { _ = srv.Close(); <-served }()
	fmt.Fprintf(os.Stderr, "demo: keydist (join endpoint %s), mdfast (path=%s) up; this host is %s on the demo bridge\n", base, d.path, hostAddr(webHost))
	fmt.Printf("demo: open http://%s/ in two tabs of a browser on this host (Ctrl-C to stop)\n", webPage)
	if os.Getenv("DEMO_SECONDS") != "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(d.o.seconds)*time.Second)
		defer cancel()
	}
	<-ctx.Done()
	joined, err := d.kdMetric(0, "keydist_join_requests_total", `method="POST",result="ok"`)
	if err != nil {
		return 1, err
	}
	fmt.Printf("demo: web url=http://%s/ joined=%.0f\n", webPage, joined)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
		return 0, nil
	}
	return 0, ctx.Err()
}
