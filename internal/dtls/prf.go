package dtls

import (
	"crypto"
	"crypto/hmac"
	"hash"
)

// The TLS 1.2 key schedule (RFC 5246 section 5 and 8.1, RFC 7627 section 4,
// RFC 5705 section 4). DTLS 1.2 uses it unchanged (RFC 6347 section 4.2.6).

// Labels of the PRF.
const (
	labelExtendedMaster = "extended master secret"
	labelKeyExpansion   = "key expansion"
	labelClientFinished = "client finished"
	labelServerFinished = "server finished"
)

// prf fills out with PRF(secret, label, seed) = P_<hash>(secret, label +
// seed) (RFC 5246 section 5): A(0) = label+seed, A(i) = HMAC(secret,
// A(i-1)), output HMAC(secret, A(1)+label+seed) | HMAC(secret,
// A(2)+label+seed) | ...
func prf(h crypto.Hash, out, secret []byte, label string, seeds ...[]byte) {
	mac := hmac.New(h.New, secret)
	writeSeed := func(m hash.Hash) {
		m.Write([]byte(label))
		for _, s := range seeds {
			m.Write(s)
		}
	}
	writeSeed(mac)
	a := mac.Sum(nil) // A(1)
	var block []byte
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		writeSeed(mac)
		block = mac.Sum(block[:0])
		n := copy(out, block)
		out = out[n:]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	clear(block)
	clear(a)
}

// extendedMasterSecret is master_secret = PRF(pre_master_secret, "extended
// master secret", session_hash)[0..47] (RFC 7627 section 4), session_hash
// being the hash of the transcript through the ClientKeyExchange.
func extendedMasterSecret(h crypto.Hash, preMaster, sessionHash []byte) []byte {
	ms := make([]byte, masterSecretLen)
	prf(h, ms, preMaster, labelExtendedMaster, sessionHash)
	return ms
}

// keyBlock is the AEAD key block of an AES-GCM suite: client_write_key,
// server_write_key, client_write_IV (4), server_write_IV (4) from PRF(ms,
// "key expansion", server_random + client_random) (RFC 5246 section 6.3,
// RFC 5288 section 3; the MAC keys are empty).
type keyBlock struct {
	buf                  []byte
	clientKey, serverKey []byte
	clientIV, serverIV   []byte
}

func deriveKeyBlock(s suite, ms, clientRandom, serverRandom []byte) *keyBlock {
	n := 2*s.keyLen + 2*gcmImplicitIVLen
	b := make([]byte, n)
	prf(s.hash, b, ms, labelKeyExpansion, serverRandom, clientRandom)
	k := s.keyLen
	return &keyBlock{
		buf:       b,
		clientKey: b[:k:k],
		serverKey: b[k : 2*k : 2*k],
		clientIV:  b[2*k : 2*k+4 : 2*k+4],
		serverIV:  b[2*k+4 : 2*k+8 : 2*k+8],
	}
}

func (kb *keyBlock) zero() { clear(kb.buf) }

// finishedVerifyData is PRF(ms, label, Hash(handshake_messages))[0..11]
// (RFC 5246 section 7.4.9).
func finishedVerifyData(h crypto.Hash, ms []byte, label string, transcriptHash []byte) []byte {
	v := make([]byte, verifyDataLen)
	prf(h, v, ms, label, transcriptHash)
	return v
}

// export is the RFC 5705 exporter: PRF(ms, label, client_random +
// server_random [+ context_length + context])[0..n-1].
func export(h crypto.Hash, ms []byte, label string, clientRandom, serverRandom, context []byte, hasContext bool, n int) []byte {
	out := make([]byte, n)
	if hasContext {
		l := []byte{byte(len(context) >> 8), byte(len(context))}
		prf(h, out, ms, label, clientRandom, serverRandom, l, context)
	} else {
		prf(h, out, ms, label, clientRandom, serverRandom)
	}
	return out
}

// transcriptHash hashes the handshake messages with h.
func transcriptHash(h crypto.Hash, msgs []byte) []byte {
	d := h.New()
	d.Write(msgs)
	return d.Sum(nil)
}
