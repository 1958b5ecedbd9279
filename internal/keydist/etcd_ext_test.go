package keydist_test

import (
	"testing"

	"github.com/mdfast/mdfast/internal/etcdtest"
	"github.com/mdfast/mdfast/internal/keydist"
)

func init() {
	keydist.StartTestEtcd = func(t testing.TB) keydist.TestEtcd {
		return etcdtest.Start(t, etcdtest.Options{})
	}
	keydist.StartTestEtcdMaxTxnOps = func(t testing.TB, n int) keydist.TestEtcd {
		return etcdtest.Start(t, etcdtest.Options{MaxTxnOps: n})
	}
}
