package fairq

import (
	"sync"
	"testing"
)

func TestRoundRobin(t *testing.T) {
	q := New[string, int](4, 8)
	// A floods, B and C send one each.
	for i := range 10 {
		q.Push("A", i)
	}
	q.Push("B", 100)
	q.Push("C", 200)
	var got []int
	for {
		v, ok := q.Pop()
		if !ok {
			break
		}
		got = append(got, v)
	}
	// A's queue held 4 (6 refused); B and C are served within the first
	// turn.
	want := []int{0, 100, 200, 1, 2, 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestBounds(t *testing.T) {
	q := New[int, int](2, 3)
	for k := range 3 {
		for range 2 {
			if !q.Push(k, k) {
				t.Fatal("refused within bounds")
			}
		}
		if q.Push(k, k) {
			t.Fatal("a key took more than perKey items")
		}
	}
	if q.Push(99, 1) || q.Room(99) || q.Room(0) {
		t.Fatal("more than maxKeys keys, or more than perKey items")
	}
	if q.Len() != 6 {
		t.Fatalf("len %d", q.Len())
	}
	for q.Len() > 0 {
		q.Pop()
	}
	if !q.Room(99) || !q.Push(99, 1) {
		t.Fatal("a new key refused once the queue drained")
	}
	q.Close()
	if q.Push(1, 1) {
		t.Fatal("Push after Close")
	}
	if v, ok := q.Pop(); !ok || v != 1 {
		t.Fatal("queued item lost at Close")
	}
}

func TestNoAllocs(t *testing.T) {
	q := New[int, int](4, 4)
	q.Push(1, 1)
	q.Pop()
	if n := testing.AllocsPerRun(1000, func() {
		q.Push(1, 1)
		q.Push(2, 2)
		q.Pop()
		q.Pop()
	}); n != 0 {
		t.Fatalf("%v allocations per Push/Pop", n)
	}
}

func TestConcurrent(t *testing.T) {
	q := New[int, int](64, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	pushed := map[int]bool{}
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				v := g*1000 + i
				if q.Push(g, v) {
					mu.Lock()
					pushed[v] = true
					mu.Unlock()
				}
			}
		})
	}
	popped := map[int]bool{}
	quit := make(chan struct{})
	done := make(chan struct{})
	drain := func() {
		for {
			v, ok := q.Pop()
			if !ok {
				return
			}
			popped[v] = true
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-q.Ready():
				drain()
			case <-quit:
				return
			}
		}
	}()
	wg.Wait()
	close(quit)
	<-done
	drain()
	if len(pushed) == 0 || len(popped) != len(pushed) {
		t.Fatalf("pushed %d, popped %d", len(pushed), len(popped))
	}
	for v := range pushed {
		if !popped[v] {
			t.Fatalf("%d pushed, never popped", v)
		}
	}
}
