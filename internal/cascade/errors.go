package cascade

import "errors"

// ErrConfig is wrapped by configuration errors of NewManager.
var ErrConfig = errors.New("cascade: configuration")

// ErrPeerCertificate is the VerifyPeer error of a peer whose certificate
// does not chain to the cascade CA or does not have the fingerprint its
// directory entry publishes.
var ErrPeerCertificate = errors.New("cascade: peer certificate refused")
