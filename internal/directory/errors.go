package directory

import "errors"

// ErrEntry is wrapped by every error about a key or value read from etcd
// that is not a well-formed directory entry.
var ErrEntry = errors.New("directory: bad entry")

// ErrConfig is wrapped by configuration errors of New.
var ErrConfig = errors.New("directory: configuration")
