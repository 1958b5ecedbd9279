package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStartStopRestart(t *testing.T) {
	c := Start(t, Options{})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := cl.Get(short, "k"); err == nil {
		t.Fatal("read succeeded with the only member stopped")
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v", r.Kvs)
	}
}

// TestMaxTxnOps: Options.MaxTxnOps reaches the server: a transaction of
// that many operations commits, one more is refused as too large.
func TestMaxTxnOps(t *testing.T) {
	c := Start(t, Options{MaxTxnOps: 4})
	cl := c.Client(t)
	ops := func(n int) []clientv3.Op {
		var o []clientv3.Op
		for i := range n {
			o = append(o, clientv3.OpPut(fmt.Sprintf("k%d", i), "v"))
		}
		return o
	}
	if _, err := cl.Txn(t.Context()).Then(ops(4)...).Commit(); err != nil {
		t.Fatalf("4 operations: %v", err)
	}
	if _, err := cl.Txn(t.Context()).Then(ops(5)...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("5 operations: got %v, want ErrTooManyOps", err)
	}
}
