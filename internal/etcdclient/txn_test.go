package etcdclient_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	etcdserverpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/etcdtest"
)

func puts(prefix string, n int) []clientv3.Op {
	ops := make([]clientv3.Op, n)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("%s%04d", prefix, i), "v")
	}
	return ops
}

// TestChunks: the transactions Chunks makes against servers with various
// limits (a fake that refuses above its limit as etcd does): their sizes,
// in order, every operation once.
func TestChunks(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		ops     int
		limit   int // the server's --max-txn-ops
		failAt  int // the call that fails with boom (1-based; 0: none)
		want    []int
		wantErr error
	}{
		{name: "empty", ops: 0, limit: 128, want: nil},
		{name: "one", ops: 1, limit: 128, want: []int{1}},
		{name: "exactly one chunk", ops: etcdclient.TxnOps, limit: 128, want: []int{64}},
		{name: "default limit", ops: 150, limit: 128, want: []int{64, 64, 22}},
		{name: "limit 16", ops: 40, limit: 16, want: []int{40, 20, 10, 10, 10, 10}},
		{name: "limit 16, long", ops: 100, limit: 16, want: []int{64, 32, 16, 16, 16, 16, 16, 16, 4}},
		{name: "limit 1", ops: 3, limit: 1, want: []int{3, 1, 1, 1}},
		{name: "limit 48", ops: 100, limit: 48, want: []int{64, 32, 32, 32, 4}},
		{name: "other error", ops: 100, limit: 128, failAt: 2, want: []int{64, 36}, wantErr: boom},
		{name: "refused at one op", ops: 5, limit: 0, want: []int{5, 2, 1}, wantErr: rpctypes.ErrTooManyOps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := puts("k", tc.ops)
			var sizes []int
			var committed []string
			var rev int64
			got, err := etcdclient.Chunks(ops, func(o []clientv3.Op) (*clientv3.TxnResponse, error) {
				sizes = append(sizes, len(o))
				if len(sizes) == tc.failAt {
					return nil, boom
				}
				if len(o) > tc.limit {
					return nil, rpctypes.ErrTooManyOps
				}
				for _, op := range o {
					committed = append(committed, string(op.KeyBytes()))
				}
				rev++
				return &clientv3.TxnResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev}}, nil
			})
			if !slices.Equal(sizes, tc.want) {
				t.Errorf("transaction sizes %v, want %v", sizes, tc.want)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if got != rev {
				t.Errorf("revision %d, want the last committed %d", got, rev)
			}
			if err != nil {
				return
			}
			want := make([]string, len(ops))
			for i, op := range ops {
				want[i] = string(op.KeyBytes())
			}
			if !slices.Equal(committed, want) {
				t.Errorf("committed %d operations out of order or not once each", len(committed))
			}
		})
	}
}

// TestChunksAgainstRealEtcd: 1,000 puts through Chunks land on a stock
// etcd and on one started with --max-txn-ops 16, where one transaction of
// them is refused.
func TestChunksAgainstRealEtcd(t *testing.T) {
	for _, limit := range []int{0, 16} {
		t.Run(fmt.Sprintf("max-txn-ops=%d", limit), func(t *testing.T) {
			c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: limit})
			cl := c.Client(t)
			ops := puts("chunks/", 1000)
			if _, err := cl.Txn(t.Context()).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
				t.Fatalf("one transaction of 1,000: %v, want ErrTooManyOps", err)
			}
			calls := 0
			rev, err := etcdclient.Chunks(ops, func(o []clientv3.Op) (*clientv3.TxnResponse, error) {
				calls++
				return cl.Txn(t.Context()).Then(o...).Commit()
			})
			if err != nil {
				t.Fatal(err)
			}
			g, err := cl.Get(t.Context(), "chunks/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			if g.Count != 1000 || g.Header.Revision != rev {
				t.Fatalf("%d keys at revision %d, want 1000 at %d", g.Count, g.Header.Revision, rev)
			}
			t.Logf("%d transactions", calls)
		})
	}
}
