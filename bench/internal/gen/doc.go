// Package gen is the load generator: simulated endpoints that send SRTP
// (AEAD_AES_128_GCM) to a forwarder at a set rate, payload size and
// pattern, receive what it forwards, and measure loss, latency and jitter.
//
// # Double (RFC 8723)
//
// With a double key file (benchkeys.ProfileDouble, 0x0009) the endpoints
// seal and open both layers themselves with package double (crypto/cipher,
// independent of srtpfast): the inner layer under the conference's
// end-to-end key, an empty OHB and the outer layer under their own
// hop-by-hop client_write key; receivers remove the outer layer with their
// server_write key and the inner one with the end-to-end key, and check the
// original header and the payload like any other sample. The forwarder
// only ever has the hop-by-hop keys.
//
// # Several MDs (a cascade)
//
// With a cascade key file (benchkeys.Cascade: the conference split over
// several MDs joined by links) each endpoint sends to its own MD
// (File.MDOf) and receives from it; every endpoint must still receive
// and open every other's media with its own keys, whether it came from a
// local sender or across a link. Config.MDPids gives each MD's CPU time
// over the measured phase, and Result.MDs what each MD's senders sent
// (the whole run too, for the link counters) and its members received.
//
// # How it sends
//
// Each sending endpoint has one goroutine and one UDP socket (the socket it
// also receives on, so the forwarder sees one transport address per
// endpoint). Packets are paced by a schedule (rate × elapsed time, rounded
// down to whole bursts for the video pattern) and sent in batches with
// sendmmsg (package udpbatch); with Rate 0 the sender sends full batches as
// fast as the socket takes them, to find saturation. Between packets a
// sender waits on a timerfd (microseconds late, not time.Sleep's
// millisecond) and then sends what fell due: at 50 % of saturation a few
// packets at a time rather than a millisecond's worth, so the forwarder
// sees the rate it was asked to carry, not bursts. Result.SendBursts
// counts how many sends that took. Every batch is built
// and sealed (srtpfast, with the endpoint's client_write keys) just before
// it is sent, so the send time in each payload is fresh: the sealing cost
// (a fraction of a microsecond per packet) is small beside the system call.
// A warm-up phase (payload type WarmupPT) primes the forwarder's neighbour
// and key state; only measured packets (payload type MeasuredPT) count.
//
// # How it receives
//
// Each endpoint has a receiving goroutine (recvmmsg). Every received packet
// is counted from its RTP header (SSRC → sender, sequence number → packet
// index). One in Config.Sample packets is decrypted with pion/srtp (an
// implementation independent of mdfast's) under the endpoint's own
// server_write keys and verified octet for octet (package payload); its
// latency (receive time minus the send time in the payload, one clock) and
// the stream's RFC 3550 jitter are recorded. Sampling keeps the receivers
// from becoming the bottleneck in the high-rate mode.
//
// # Handshakes
//
// With a handshake key file (the full-system path), Handshake first runs
// every endpoint's DTLS-SRTP handshake at once through the forwarder (the
// real mdfast daemon) to the Key Distributor with package endpointsim,
// times them, and stores the exported keys; Run then sends with those keys
// from the same addresses.
//
// It must not be used against anything but a test forwarder: it floods.
package gen
