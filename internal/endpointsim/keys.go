package endpointsim

import (
	"fmt"

	"github.com/pion/srtp/v3"
)

// ProfileAEADAES128GCM is the SRTP protection profile endpoints offer
// (RFC 7714, 0x0007), the one the key length constants below describe.
const ProfileAEADAES128GCM = srtp.ProtectionProfileAeadAes128Gcm

// ProfileDoubleAEADAES128GCM is the RFC 8723 double profile (0x0009) a
// Double handshake offers; its keys are twice KeyLen and SaltLen, each
// half a layer.
const ProfileDoubleAEADAES128GCM = srtp.ProtectionProfile(0x0009)

// Key and salt lengths of AEAD_AES_128_GCM.
const (
	KeyLen  = 16
	SaltLen = 12
)

// Keys are the SRTP master keys a handshake exported (RFC 5764 section
// 4.2): client_write protects what the endpoint sends, server_write what
// the Media Distributor sends to it.
type Keys struct {
	Profile    srtp.ProtectionProfile
	ClientKey  []byte
	ClientSalt []byte
	ServerKey  []byte
	ServerSalt []byte
}

// splitKeys splits EXTRACTOR-dtls_srtp output of 2*(KeyLen+SaltLen)
// octets: client key, server key, client salt, server salt.
func splitKeys(m []byte) Keys {
	return Keys{
		Profile:    ProfileAEADAES128GCM,
		ClientKey:  m[:KeyLen],
		ServerKey:  m[KeyLen : 2*KeyLen],
		ClientSalt: m[2*KeyLen : 2*KeyLen+SaltLen],
		ServerSalt: m[2*KeyLen+SaltLen : 2*(KeyLen+SaltLen)],
	}
}

// splitDouble splits the EXTRACTOR-dtls_srtp output of the double profile
// (keys of 2*KeyLen, salts of 2*SaltLen) and keeps the outer (hop-by-hop)
// halves (RFC 8723 section 5.2).
func splitDouble(m []byte) Keys {
	const kl, sl = 2 * KeyLen, 2 * SaltLen
	return Keys{
		Profile:    ProfileDoubleAEADAES128GCM,
		ClientKey:  m[KeyLen:kl],
		ServerKey:  m[kl+KeyLen : 2*kl],
		ClientSalt: m[2*kl+SaltLen : 2*kl+sl],
		ServerSalt: m[2*kl+sl+SaltLen : 2*(kl+sl)],
	}
}

// SendContext returns a pion/srtp context for the client_write keys: it
// seals what the endpoint sends.
func (k *Keys) SendContext(opts ...srtp.ContextOption) (*srtp.Context, error) {
	c, err := srtp.CreateContext(k.ClientKey, k.ClientSalt, k.Profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("endpointsim: SRTP send context: %w", err)
	}
	return c, nil
}

// ReceiveContext returns a pion/srtp context for the server_write keys: it
// opens what the Media Distributor forwards to the endpoint.
func (k *Keys) ReceiveContext(opts ...srtp.ContextOption) (*srtp.Context, error) {
	c, err := srtp.CreateContext(k.ServerKey, k.ServerSalt, k.Profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("endpointsim: SRTP receive context: %w", err)
	}
	return c, nil
}
