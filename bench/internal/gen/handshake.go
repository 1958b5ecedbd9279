package gen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/stats"
	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
)

// HandshakeResult is what Handshake measured.
type HandshakeResult struct {
	// Endpoints handshook concurrently; OK of them completed.
	Endpoints int `json:"endpoints"`
	OK        int `json:"ok"`
	// FirstError describes a failed handshake.
	FirstError string `json:"first_error,omitempty"`
	// TotalMs is the wall time from the first ClientHello to the last
	// endpoint's keys, in milliseconds.
	TotalMs float64 `json:"total_ms"`
	// Duration summarises the completed handshakes (µs, as latency).
	Duration stats.Summary `json:"duration"`
}

// Handshake runs the DTLS-SRTP handshakes of every endpoint of a
// handshake file (benchkeys.GenerateHandshake) at once, each from a socket
// at its own address, through the forwarder kf.MD to the Key Distributor,
// and stores the exported keys in kf, ready for Run. It closes the sockets
// without a close_notify, so the forwarder keeps the associations; Run
// opens the same addresses again. It returns an error, with the result so
// far, unless every handshake completed.
func Handshake(ctx context.Context, kf *benchkeys.File, timeout time.Duration) (*HandshakeResult, error) {
	if !kf.Handshake {
		return nil, errors.New("gen: not a handshake key file")
	}
	ids, err := kf.Identities()
	if err != nil {
		return nil, err
	}
	kdFP, err := keydist.ParseFingerprint(kf.KDFingerprint)
	if err != nil {
		return nil, fmt.Errorf("gen: KD fingerprint: %w", err)
	}
	conns := make([]*endpointsim.Conn, len(kf.Endpoints))
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	for i := range kf.Endpoints {
		udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(kf.Endpoints[i].Addr))
		if err != nil {
			return nil, fmt.Errorf("gen: endpoint %d socket: %w", i, err)
		}
		conns[i] = endpointsim.Dial(udp, kf.MD, nil)
	}
	sessions := make([]*endpointsim.Session, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			sessions[i], errs[i] = c.Handshake(ctx, endpointsim.HandshakeConfig{
				Identity: ids[i], KDFingerprint: kdFP, Timeout: timeout, Double: kf.IsDouble()})
		})
	}
	wg.Wait()
	res := &HandshakeResult{Endpoints: len(conns), TotalMs: float64(time.Since(start)) / 1e6}
	var lat stats.Latency
	for i, s := range sessions {
		if errs[i] == nil {
			errs[i] = kf.SetKeys(i, &s.Keys)
		}
		if errs[i] == nil && kf.IsDouble() {
			// Every member got the conference's EKTKey: one salt.
			if kf.E2ESalt == nil {
				errs[i] = kf.SetE2ESalt(s.EKTKey.MasterSalt)
			} else if !bytes.Equal(kf.E2ESalt, s.EKTKey.MasterSalt[:len(kf.E2ESalt)]) {
				errs[i] = errors.New("members of one conference got different EKT parameter sets")
			}
		}
		if errs[i] != nil {
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("endpoint %d: %v", i, errs[i])
			}
			continue
		}
		res.OK++
		lat.Add(s.Duration)
	}
	res.Duration = lat.Summarize()
	if res.OK != res.Endpoints {
		return res, fmt.Errorf("gen: %d of %d handshakes failed, first: %s", res.Endpoints-res.OK, res.Endpoints, res.FirstError)
	}
	kf.Handshake = false // keys set: an ordinary key file now
	return res, nil
}
