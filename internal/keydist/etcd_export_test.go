package keydist

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcd is the etcd cluster the store tests use: an *etcdtest.Cluster.
// etcdtest imports syssim, which imports this package, so the internal
// tests cannot import it; etcd_ext_test.go (package keydist_test, linked
// into the same test binary) sets StartTestEtcd in its init.
type TestEtcd interface {
	Endpoints() []string
	Stop(i int)
	Restart(i int) error
	Client(t testing.TB) *clientv3.Client
}

// StartTestEtcd starts a one-member etcd for t (set by etcd_ext_test.go).
var StartTestEtcd func(t testing.TB) TestEtcd

// StartTestEtcdMaxTxnOps starts a one-member etcd whose --max-txn-ops is
// n (set by etcd_ext_test.go).
var StartTestEtcdMaxTxnOps func(t testing.TB, n int) TestEtcd

func startEtcd(t testing.TB) TestEtcd {
	t.Helper()
	if StartTestEtcd == nil {
		t.Fatal("StartTestEtcd not set: etcd_ext_test.go is missing")
	}
	return StartTestEtcd(t)
}
