// Package perc is a PERC endpoint (RFC 8871) for applications: it joins a
// conference through a Media Distributor, runs the DTLS-SRTP handshake with
// the Key Distributor behind it (the MD tunnels it), and sends and receives
// RTP with the double transform of RFC 8723, the end-to-end keys travelling
// in EKT tags (RFC 8870):
//
//   - outer (hop-by-hop) layer: the second halves of the DTLS-SRTP keys,
//     the only keys the Media Distributor holds;
//   - inner (end-to-end) layer: a master key this endpoint picks itself,
//     with the conference's end-to-end master salt from the Key
//     Distributor's EKTKey; the other members learn it from the FullEKTField
//     that ends this endpoint's packets (on the first three of each stream,
//     after a change, and every FullEKTInterval; a ShortEKTField
//     otherwise), encrypted with the conference's EKTKey;
//   - re-keying: a new EKTKey (a member left, or joined) makes the endpoint
//     pick a new master key after RekeyDelay (time for every member to get
//     the new EKTKey), and old keys and parameter sets are kept for
//     KeyGrace so that packets in flight still open;
//   - legacy mode: an endpoint that offers AEAD_AES_128_GCM (0x0007) or
//     AEAD_AES_256_GCM (0x0008) and gets it runs plain SRTP, whose whole key
//     the Media Distributor holds. Offer it only to conferences that allow
//     it.
//
// RTCP is protected by the hop-by-hop layer only (RFC 8723 section 5.4).
//
// SSRC collisions (RFC 3550 section 8.2): a packet from another participant
// under an SSRC this endpoint sends is dropped and reported once
// (Config.OnSSRCCollision); writes under that SSRC fail with
// ErrSSRCCollision from then on, and the application continues under a new
// random SSRC. With EKT this is what lets a joiner be heard when someone
// else already used its SSRC: the other members keep the first end-to-end
// key they learnt for it under the current EKTKey (RFC 8870 section 4.3.2).
//
// A Session needs a UDP socket, the Media Distributor's address, the
// endpoint's certificate and tls-id (RFC 8844), and the Key Distributor's
// certificate fingerprint from the SDP answer; see Dial and the example.
//
// What the package must not do: send media before it holds the
// conference's EKTKey (in double mode), reuse an (SSRC, ROC, SEQ) under one
// key, replace a sender's key from an EKT tag that does not authenticate,
// or keep a key past Close.
package perc
