package gen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/udpbatch"
)

// fakeMD is a minimal forwarder on loopback with the Media Distributor's
// side of srtpfast: it opens what an endpoint sends with its client_write
// keys and re-seals it for every other endpoint with theirs (for a double
// file, the outer layer only: it has no end-to-end key).
func fakeMD(t *testing.T, kf *benchkeys.File) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(kf.MD))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", kf.MD, err)
	}
	type peer struct {
		op   *srtpfast.Opener
		send *srtpfast.Keys
	}
	peers := map[netip.AddrPort]*peer{}
	for _, e := range kf.Endpoints {
		r, err := e.ClientKeys(kf.SRTPProfile())
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.ServerKeys(kf.SRTPProfile())
		if err != nil {
			t.Fatal(err)
		}
		peers[e.Addr] = &peer{op: srtpfast.NewOpener(r, 64), send: s}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf, out := make([]byte, 2048), make([]byte, 0, 2048)
		var sc srtpfast.Scratch
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			p := peers[from]
			if p == nil {
				continue
			}
			pkt, tail := buf[:n], []byte(nil)
			if kf.Profile == benchkeys.ProfileDouble {
				// The EKTField that ends a double packet is carried as
				// is, as the MD does.
				f, _, err := ekt.FieldLen(pkt)
				if err != nil {
					continue
				}
				pkt, tail = pkt[:n-f], pkt[n-f:]
			}
			info, err := p.op.OpenRTP(pkt)
			if err != nil {
				continue
			}
			for a, q := range peers {
				if a == from {
					continue
				}
				if out, err = q.send.SealRTP(&sc, out[:0], pkt[:info.Len], info.ROC); err == nil {
					_, _ = conn.WriteToUDPAddrPort(append(out, tail...), a)
				}
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
}

// TestRunLoopback runs the generator against fakeMD on loopback, single
// and double: every packet arrives, every sampled one is verified (for
// double: both layers opened and the payload compared octet for octet).
func TestRunLoopback(t *testing.T) {
	base := uint16(20000 + os.Getpid()%20000)
	for i, profile := range []string{benchkeys.Profile, benchkeys.ProfileDouble} {
		t.Run(profile, func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			kf, err := benchkeys.GenerateProfile(profile, 3, lo, base+uint16(10*i), netip.AddrPortFrom(lo, base+uint16(10*i)+5))
			if err != nil {
				t.Fatal(err)
			}
			fakeMD(t, kf)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := Run(ctx, Config{Keys: kf, Senders: 1, Rate: 400, Payload: 160, Streams: 2,
				Warmup: 50 * time.Millisecond, Duration: 400 * time.Millisecond, Drain: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Profile != profile || res.Sent == 0 || res.VerifyErrors != 0 || res.Verified != res.Received ||
				res.Received+res.Received/50 < res.Expected {
				t.Fatalf("result %+v", res)
			}
			// Every measured packet went out in a counted burst, none
			// larger than a batch.
			if res.SendBursts == 0 || res.SendBursts > res.Sent || res.SendBurstMax < 1 || res.SendBurstMax > udpbatch.DefaultBatchSize {
				t.Fatalf("bursts %d (largest %d) for %d packets", res.SendBursts, res.SendBurstMax, res.Sent)
			}
		})
	}
}
