package dtlsmsg_test

import (
	"fmt"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// The Media Distributor feeds each datagram of a new association to a
// Reassembler until the ClientHello is complete, then reads the endpoint's
// tls-id and SRTP offer.
func ExampleReassembler() {
	id := []byte("abcdefghijklmnopqrstuvwxyz")
	esid, _ := dtlsmsg.AppendExternalSessionID(nil, id)
	srtp, _ := dtlsmsg.AppendUseSRTP(nil, []uint16{0x0007, 0x0001}, nil)
	var exts []byte
	exts, _ = dtlsmsg.AppendExtension(exts, dtlsmsg.ExtensionUseSRTP, srtp)
	exts, _ = dtlsmsg.AppendExtension(exts, dtlsmsg.ExtensionExternalSessionID, esid)

	body := append([]byte{0xFE, 0xFD}, make([]byte, 32)...) // version, random
	body = append(body, 0, 0)                               // session_id, cookie
	body = append(body, 0, 2, 0xC0, 0x2B)                   // cipher_suites
	body = append(body, 1, 0)                               // compression_methods
	body = append(body, byte(len(exts)>>8), byte(len(exts)))
	body = append(body, exts...)

	// Two fragments, each in its own record and datagram.
	frag := func(off, n int) []byte {
		h := []byte{1, 0, byte(len(body) >> 8), byte(len(body)), 0, 0, 0, byte(off >> 8), byte(off), 0, byte(n >> 8), byte(n)}
		p := append(h, body[off:off+n]...)
		rec := []byte{22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(p) >> 8), byte(len(p))}
		return append(rec, p...)
	}
	r := dtlsmsg.NewReassembler(0)
	for _, dg := range [][]byte{frag(40, len(body)-40), frag(0, 40)} {
		ch, err := r.Feed(dg)
		if err != nil {
			fmt.Println("drop:", err)
			continue
		}
		if ch == nil {
			fmt.Println("incomplete")
			continue
		}
		fmt.Printf("tls-id %s, profiles %04x\n", ch.ExternalSessionID, ch.SRTPProfiles)
	}
	// Output:
	// incomplete
	// tls-id abcdefghijklmnopqrstuvwxyz, profiles [0007 0001]
}
