package etcdclient

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TxnOps is the most operations mdfast puts in one etcd transaction. etcd
// refuses a transaction with more than its --max-txn-ops (default 128), a
// server setting the client cannot read; half the default leaves room
// for any fixed operations a caller adds. A server configured lower makes
// Chunks halve the size until it is accepted.
const TxnOps = 64

// Chunks commits ops in order, in transactions of at most TxnOps
// operations each; while the server refuses one as too large (etcd's
// "too many operations in txn request"), it halves the size, down to one
// operation, and retries the same operations. The transactions are
// separate: a failure leaves those before it committed, so callers order
// ops so that any prefix of them is a state their readers accept.
//
// commit runs one transaction (with its own timeout). Chunks returns the
// revision of the last transaction, 0 when ops is empty.
func Chunks(ops []clientv3.Op, commit func(ops []clientv3.Op) (*clientv3.TxnResponse, error)) (int64, error) {
	size := TxnOps
	var rev int64
	for done := 0; done < len(ops); {
		n := min(size, len(ops)-done)
		resp, err := commit(ops[done : done+n])
		if err != nil {
			if errors.Is(err, rpctypes.ErrTooManyOps) && n > 1 {
				size = n / 2
				continue
			}
			return rev, fmt.Errorf("etcd transaction of %d operations (%d of %d written): %w", n, done, len(ops), err)
		}
		rev = resp.Header.Revision
		done += n
	}
	return rev, nil
}
