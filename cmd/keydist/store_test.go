package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/etcdtest"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/syssim"
)

// TestReplicasOnEtcd runs two keydist daemons on one etcd: an endpoint
// added through replica 1's admin API shows on replica 2 with the same KD
// tls-id; with etcd stopped both answer /readyz 503 naming the store and a
// registry write 503; after etcd restarts both are ready and writes work,
// without restarting either daemon.
func TestReplicasOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	dir := t.TempDir()
	files, err := syssim.WriteFiles(dir, net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Path(syssim.RegistryFile), []byte("conferences: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := files.Path("ekt-store.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "replica-admin-token-0123456789"
	t.Setenv("KEYDIST_ADMIN_TOKEN", token)
	type daemon struct{ admin string }
	var ds []daemon
	for i := range 2 {
		admin := freePort(t)
		args := append(files.KeydistArgs("127.0.0.1:0", ""),
			"-admin-listen", admin, "-journal", files.Path("journal"+string(rune('0'+i))),
			"-etcd-endpoints", strings.Join(c.Endpoints(), ","), "-ekt-store-key-file", keyFile)
		ctx, cancel := context.WithCancel(context.Background())
		var stderr bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, args, io.Discard, &stderr) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v\n%s", err, stderr.String())
			}
		})
		ds = append(ds, daemon{admin: "http://" + admin})
	}
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, url, body string) (int, string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(want int, contains string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, d := range ds {
			for {
				code, body := do("GET", d.admin+"/readyz", "")
				if code == want && strings.Contains(body, contains) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s/readyz: %d %q, want %d with %q", d.admin, code, body, want, contains)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	waitReady(http.StatusOK, "ready")
	// eventually GETs url until the body holds every one of want: another
	// replica shows a write once its watch has delivered it (milliseconds;
	// admin reads do not wait for it).
	eventually := func(url string, want ...string) (int, string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, body := do("GET", url, "")
			ok := code == http.StatusOK
			for _, w := range want {
				ok = ok && strings.Contains(body, w)
			}
			if ok || time.Now().After(deadline) {
				return code, body
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	fp := strings.Repeat("AB:", 31) + "AB"
	tlsID := keydist.NewTLSID()
	code, body := do("POST", ds[0].admin+"/v1/conferences/conf/endpoints", `{"tls_id":"`+tlsID+`","fingerprint":"sha-256 `+fp+`"}`)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("add through replica 1: %d %s", code, body)
	}
	kdTLSID := between(body, `"kd_tls_id":"`, `"`)
	if kdTLSID == "" {
		t.Fatalf("no kd_tls_id in %s", body)
	}
	code, body = eventually(ds[1].admin+"/v1/conferences/conf", tlsID, kdTLSID)
	if code != http.StatusOK || !strings.Contains(body, tlsID) || !strings.Contains(body, kdTLSID) {
		t.Fatalf("replica 2 does not see replica 1's endpoint with its KD tls-id: %d %s", code, body)
	}
	// The same tls-id through replica 2, in another conference: refused.
	if code, body := do("POST", ds[1].admin+"/v1/conferences/other/endpoints", `{"tls_id":"`+tlsID+`","fingerprint":"sha-256 `+fp+`"}`); code != http.StatusConflict {
		t.Fatalf("tls-id registered twice across replicas: %d %s", code, body)
	}

	c.Stop(0)
	waitReady(http.StatusServiceUnavailable, "store")
	if code, body := do("POST", ds[1].admin+"/v1/conferences/conf/endpoints", `{"tls_id":"`+keydist.NewTLSID()+`","fingerprint":"sha-256 `+fp+`"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("registry write with etcd stopped: %d %s", code, body)
	}
	if code, body := do("GET", ds[1].admin+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, `keydist_store_errors_total{op="registry_write"} 1`) ||
		!strings.Contains(body, `keydist_ready{check="store"} 0`) {
		t.Fatalf("metrics during the outage:\n%s", grepLines(body, "keydist_store_errors_total", "keydist_ready"))
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK, "ready")
	tlsID2 := keydist.NewTLSID()
	if code, body := do("POST", ds[1].admin+"/v1/conferences/conf/endpoints", `{"tls_id":"`+tlsID2+`","fingerprint":"sha-256 `+fp+`"}`); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("registry write after etcd came back: %d %s", code, body)
	}
	if code, body := eventually(ds[0].admin+"/v1/conferences/conf", tlsID2); !strings.Contains(body, tlsID2) {
		t.Fatalf("replica 1 does not see replica 2's write after the outage: %d %s", code, body)
	}
}

// TestStoreOptions: the store options are checked before anything starts.
func TestStoreOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := write("raw", bytes.Repeat([]byte{1}, 32))
	hexKey := write("hex", []byte(hex.EncodeToString(bytes.Repeat([]byte{2}, 32))+"\n"))
	short := write("short", []byte("0011"))
	files, err := syssim.WriteFiles(dir, net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"no etcd", nil, true},
		{"raw key", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", raw}, true},
		{"hex key", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", hexKey}, true},
		{"no key", []string{"-etcd-endpoints", "http://127.0.0.1:2379"}, false},
		{"short key", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", short}, false},
		{"missing key", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", dir + "/nope"}, false},
		{"bad endpoint", []string{"-etcd-endpoints", "127.0.0.1:2379", "-ekt-store-key-file", raw}, false},
		{"bad prefix", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", raw, "-etcd-prefix", "x"}, false},
		{"user without password", []string{"-etcd-endpoints", "http://127.0.0.1:2379", "-ekt-store-key-file", raw, "-etcd-user", "kd"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(append(files.KeydistArgs("127.0.0.1:0", ""), tc.args...), io.Discard)
			if err == nil {
				err = c.validate()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

func grepLines(s string, subs ...string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
