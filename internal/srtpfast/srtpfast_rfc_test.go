package srtpfast

import (
	"bytes"
	"crypto/aes"
	"testing"
)

// RFC 7714 sections 16 and 17 vectors (as carried by pion/srtp's
// srtp_cipher_aead_aes_gcm_rfc_test.go). They give session keys directly.
var rfc7714 = []struct {
	name               string
	profile            Profile
	key                string
	salt               string
	rtpPlain, rtpEnc   string
	rtcpPlain, rtcpEnc string
	rtcpAuthOnly       string // E = 0: authenticated, not encrypted
}{
	{
		name:    "AES_128_GCM",
		profile: ProfileAEADAES128GCM,
		key:     "000102030405060708090a0b0c0d0e0f",
		salt:    "517569642070726f2071756f",
		rtpPlain: `8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
			69736120 696e2070 61727465 73207472 6573`,
		rtpEnc: `8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
			0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce`,
		rtcpPlain: `81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef`,
		rtcpEnc: `81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
			c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
			45d9eade 800005d4`,
		rtcpAuthOnly: `81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790
			125f62b3 000005d4`,
	},
	{
		name:    "AES_256_GCM",
		profile: ProfileAEADAES256GCM,
		key:     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		salt:    "517569642070726f2071756f",
		rtpPlain: `8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
			69736120 696e2070 61727465 73207472 6573`,
		rtpEnc: `8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
			9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13`,
		rtcpPlain: `81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef`,
		rtcpEnc: `81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
			a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
			b26ac3be 800005d4`,
		rtcpAuthOnly: `81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
			deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393
			ed2615fe 000005d4`,
	},
}

func TestRFC7714Vectors(t *testing.T) {
	for _, v := range rfc7714 {
		t.Run(v.name, func(t *testing.T) {
			key, salt := unhex(t, v.key), unhex(t, v.salt)
			k, err := newKeysFromSession(v.profile, key, salt, key, salt, nil)
			if err != nil {
				t.Fatal(err)
			}
			var sc Scratch
			rtpPlain, rtpEnc := unhex(t, v.rtpPlain), unhex(t, v.rtpEnc)
			rtcpPlain, rtcpEnc := unhex(t, v.rtcpPlain), unhex(t, v.rtcpEnc)

			got, err := k.SealRTP(&sc, nil, rtpPlain, 0)
			if err != nil || !bytes.Equal(got, rtpEnc) {
				t.Fatalf("SealRTP = %x, %v; want %x", got, err, rtpEnc)
			}
			o := NewOpener(k, 2) // the RTP and RTCP vectors use different SSRCs
			buf := append([]byte(nil), rtpEnc...)
			info, err := o.OpenRTP(buf)
			if err != nil || !bytes.Equal(buf[:info.Len], rtpPlain) {
				t.Fatalf("OpenRTP = %x, %v; want %x", buf[:info.Len], err, rtpPlain)
			}
			if info.SSRC != 0x5501a0b2 || info.Seq != 0xf17b || info.ROC != 0 || info.PT != 0x40 || info.Marker || info.HeaderLen != 12 {
				t.Fatalf("RTPInfo = %+v", info)
			}

			got, err = k.SealRTCP(&sc, nil, rtcpPlain, 0x5d4)
			if err != nil || !bytes.Equal(got, rtcpEnc) {
				t.Fatalf("SealRTCP = %x, %v; want %x", got, err, rtcpEnc)
			}
			buf = append([]byte(nil), rtcpEnc...)
			rinfo, err := o.OpenRTCP(buf)
			if err != nil || !bytes.Equal(buf[:rinfo.Len], rtcpPlain) {
				t.Fatalf("OpenRTCP = %x, %v; want %x", buf[:rinfo.Len], err, rtcpPlain)
			}
			if rinfo != (RTCPInfo{SSRC: 0x4d617273, Index: 0x5d4, Encrypted: true, Len: len(rtcpPlain)}) {
				t.Fatalf("RTCPInfo = %+v", rinfo)
			}

			// Authentication-only SRTCP (E = 0), fresh state.
			auth := unhex(t, v.rtcpAuthOnly)
			buf = append([]byte(nil), auth...)
			rinfo, err = NewOpener(k, 1).OpenRTCP(buf)
			if err != nil || rinfo.Encrypted || !bytes.Equal(buf[:rinfo.Len], rtcpPlain) || !bytes.Equal(buf, auth) {
				t.Fatalf("OpenRTCP(E=0) = %+v, %v", rinfo, err)
			}
			buf[len(buf)-5] ^= 1 // inside the tag
			if _, err := NewOpener(k, 1).OpenRTCP(buf); err != ErrAuth {
				t.Fatalf("OpenRTCP(E=0, bad tag) = %v, want ErrAuth", err)
			}
		})
	}
}

// TestKDF checks the RFC 3711 AES-CM PRF against the vectors pion/srtp's
// key_derivation_test.go uses: RFC 3711 appendix B.3 (AES-128) and RFC 6188
// section 7.1 (AES-256), 14-octet salts.
func TestKDF(t *testing.T) {
	for _, v := range []struct {
		name, key, salt, sessKey, sessSalt string
	}{
		{
			name:     "AES-128",
			key:      "E1F97A0D3E018BE0D64FA32C06DE4139",
			salt:     "0EC675AD498AFEEBB6960B3AABE6",
			sessKey:  "C61E7A93744F39EE10734AFE3FF7A087",
			sessSalt: "30CBBC08863D8C85D49DB34A9AE1",
		},
		{
			name:     "AES-256",
			key:      "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6",
			salt:     "3b04803de51ee7c96423ab5b78d2",
			sessKey:  "5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4",
			sessSalt: "fa31791685ca444a9e07c6c64e93",
		},
	} {
		t.Run(v.name, func(t *testing.T) {
			prf, err := aes.NewCipher(unhex(t, v.key))
			if err != nil {
				t.Fatal(err)
			}
			salt := unhex(t, v.salt)
			want := unhex(t, v.sessKey)
			got := make([]byte, len(want))
			kdf(prf, salt, labelRTPKey, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("session key %x, want %x", got, want)
			}
			want = unhex(t, v.sessSalt)
			got = make([]byte, len(want))
			kdf(prf, salt, labelRTPSalt, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("session salt %x, want %x", got, want)
			}
		})
	}
}
