package perc

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/keydist"
)

// ExampleDial joins two endpoints to a private conference (a Key
// Distributor and a Media Distributor run on loopback for the example) and
// sends one RTP packet from one to the other: end-to-end encrypted, the
// key carried in an EKT tag, the Media Distributor holding only the
// hop-by-hop keys.
func ExampleDial() {
	tb := &exampleTB{}
	defer tb.cleanup()
	conf := newConference(tb) // keydist + an MD, as the deployment has them

	received := make(chan string, 1)
	dial := func(onRTP func(RTPPacket)) *Session {
		// What the signalling gives an endpoint: its certificate and
		// tls-id (registered at the Key Distributor), the MD's address,
		// and the Key Distributor's fingerprint from the SDP answer.
		cert, _ := keydist.GenerateCertificate(24 * time.Hour)
		tlsID := keydist.NewTLSID()
		_, _ = conf.reg.AddEndpoint("weekly-sync", keydist.Endpoint{TLSID: tlsID, Fingerprint: keydist.CertFingerprint(cert)})

		pc, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		s, err := Dial(context.Background(), pc, conf.addr, Config{
			Certificate:   cert,
			TLSID:         tlsID,
			KDFingerprint: conf.kdFP,
			OnRTP:         onRTP,
		})
		if err != nil {
			panic(err)
		}
		return s
	}
	alice := dial(nil)
	defer alice.Close()
	bob := dial(func(p RTPPacket) { received <- string(p.Payload) })
	defer bob.Close()

	// An RTP packet: version 2, PT 111, SEQ 1, timestamp, SSRC, payload.
	pkt := append([]byte{0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0x0A, 0x1C}, "hello, conference"...)
	if err := alice.WriteRTP(pkt); err != nil {
		panic(err)
	}
	fmt.Printf("profile %#04x\n", alice.Profile())
	fmt.Println(<-received)
	// Output:
	// profile 0x0009
	// hello, conference
}

// exampleTB lets an example use the test harness: failures panic.
type exampleTB struct {
	testing.TB
	mu  sync.Mutex
	fns []func()
}

func (e *exampleTB) Helper()                           {}
func (e *exampleTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Name() string                      { return "example" }
func (e *exampleTB) Cleanup(f func()) {
	e.mu.Lock()
	e.fns = append(e.fns, f)
	e.mu.Unlock()
}
func (e *exampleTB) cleanup() {
	for i := len(e.fns) - 1; i >= 0; i-- {
		e.fns[i]()
	}
}
