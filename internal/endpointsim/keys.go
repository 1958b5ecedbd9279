package endpointsim

import (
	"fmt"

	"github.com/pion/srtp/v3"
)

// ProfileAEADAES128GCM is the SRTP protection profile endpoints offer
// (RFC 7714, 0x0007), the one the key length constants below describe.
const ProfileAEADAES128GCM = srtp.ProtectionProfileAeadAes128Gcm

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
