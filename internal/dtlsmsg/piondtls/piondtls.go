package piondtls

import (
	"encoding/binary"
	"fmt"

	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// ExternalSessionIDType is the extension type of external_session_id in
// pion's type.
const ExternalSessionIDType = extension.TypeValue(dtlsmsg.ExtensionExternalSessionID)

// ExternalSessionID is the external_session_id extension (RFC 8844 section
// 4.3) as a pion/dtls v3 extension.Extension. ID is the session_id, for SDP
// the ASCII tls-id (20..255 octets).
type ExternalSessionID struct {
	ID []byte
}

var _ extension.Extension = (*ExternalSessionID)(nil)

// TypeValue returns ExternalSessionIDType.
func (e *ExternalSessionID) TypeValue() extension.TypeValue { return ExternalSessionIDType }

// Marshal returns the whole extension: type 56, the uint16 length, then
// the extension_data (one-octet length and ID). It fails, wrapping
// dtlsmsg.ErrBadExternalSessionID, when len(ID) is outside 20..255; pion
// then aborts the handshake.
func (e *ExternalSessionID) Marshal() ([]byte, error) {
	data, err := dtlsmsg.AppendExternalSessionID(make([]byte, 0, 1+len(e.ID)), e.ID)
	if err != nil {
		return nil, err
	}
	return dtlsmsg.AppendExtension(make([]byte, 0, 4+len(data)), dtlsmsg.ExtensionExternalSessionID, data)
}

// Unmarshal parses a whole extension (type, length, extension_data), as
// pion hands it to its own extensions, and copies the session_id into ID.
// pion never calls it for type 56; it is here for the interface and for
// tests.
func (e *ExternalSessionID) Unmarshal(data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("unmarshaling external_session_id: %d octets: %w", len(data), dtlsmsg.ErrBadExternalSessionID)
	}
	if t := binary.BigEndian.Uint16(data); t != dtlsmsg.ExtensionExternalSessionID {
		return fmt.Errorf("unmarshaling external_session_id: extension type %d: %w", t, dtlsmsg.ErrBadExternalSessionID)
	}
	if n := int(binary.BigEndian.Uint16(data[2:])); n != len(data)-4 {
		return fmt.Errorf("unmarshaling external_session_id: length %d for %d octets: %w", n, len(data)-4, dtlsmsg.ErrBadExternalSessionID)
	}
	id, err := dtlsmsg.ParseExternalSessionID(data[4:])
	if err != nil {
		return fmt.Errorf("unmarshaling external_session_id: %w", err)
	}
	e.ID = append([]byte(nil), id...)
	return nil
}

// withExtension returns exts with every extension of ext's type removed and
// ext appended, in a new slice (pion's slice is never written to).
func withExtension(exts []extension.Extension, ext extension.Extension) []extension.Extension {
	out := make([]extension.Extension, 0, len(exts)+1)
	for _, x := range exts {
		if x != nil && x.TypeValue() != ext.TypeValue() {
			out = append(out, x)
		}
	}
	return append(out, ext)
}

// ClientHelloHook returns a hook for dtls.WithClientHelloMessageHook that
// adds external_session_id with the given id to every ClientHello the
// client sends (replacing one already there). The id is copied. It fails,
// wrapping dtlsmsg.ErrBadExternalSessionID, when len(id) is outside
// 20..255.
func ClientHelloHook(id []byte) (func(handshake.MessageClientHello) handshake.Message, error) {
	ext, err := newExt(id)
	if err != nil {
		return nil, err
	}
	return func(m handshake.MessageClientHello) handshake.Message {
		m.Extensions = withExtension(m.Extensions, ext)
		return &m
	}, nil
}

// ServerHelloHook returns a hook for dtls.WithServerHelloMessageHook that
// adds external_session_id with the given id to the ServerHello (replacing
// one already there). The id is copied. It fails, wrapping
// dtlsmsg.ErrBadExternalSessionID, when len(id) is outside 20..255.
func ServerHelloHook(id []byte) (func(handshake.MessageServerHello) handshake.Message, error) {
	ext, err := newExt(id)
	if err != nil {
		return nil, err
	}
	return func(m handshake.MessageServerHello) handshake.Message {
		m.Extensions = withExtension(m.Extensions, ext)
		return &m
	}, nil
}

func newExt(id []byte) (*ExternalSessionID, error) {
	ext := &ExternalSessionID{ID: append([]byte(nil), id...)}
	if _, err := ext.Marshal(); err != nil {
		return nil, err
	}
	return ext, nil
}
