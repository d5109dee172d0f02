package digest_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"herald/subscribers"
)

// seedSubscribers adds n active subscribers of daily, 10,000 per
// transaction.
func (e *env) seedSubscribers(b *testing.B, n int) {
	b.Helper()
	now := e.clock.Now()
	for done := 0; done < n; {
		chunk := min(10_000, n-done)
		err := e.db.Update(context.Background(), func(tx subscribers.Tx) error {
			for i := range chunk {
				s := &subscribers.Subscriber{
					Email: fmt.Sprintf("reader%d@readers.example", done+i), Status: subscribers.StatusActive,
					Newsletters: []string{"daily"}, CreatedAt: now, UpdatedAt: now,
				}
				if err := tx.CreateSubscriber(s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += chunk
	}
}

// heapPeak samples the live heap until stop is called, and returns the
// highest figure seen.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var (
		peak uint64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// BenchmarkBuildIssue builds and enqueues one issue (SendNow) for a list
// of n readers who all have one new article (the common case after the
// first issue: one edition), and reports the peak live heap during the
// build. Compare the sizes: the heap should not grow with the list.
func BenchmarkBuildIssue(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("readers=%d", n), func(b *testing.B) {
			e := newEnv(b)
			e.seedSubscribers(b, n)
			var peak, base uint64
			day := 0
			for b.Loop() {
				b.StopTimer()
				day++
				e.clock.Set(start.Add(time.Duration(day) * 24 * time.Hour))
				e.articles(b, e.clock.Now().Add(-time.Hour))
				runtime.GC()
				stop := heapPeak()
				b.StartTimer()
				iss, err := e.svc.SendNow(context.Background(), "daily")
				b.StopTimer()
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
				if iss.Readers != n {
					b.Fatalf("issue to %d readers, want %d", iss.Readers, n)
				}
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				base = ms.HeapAlloc
				b.StartTimer()
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(base)/(1<<20), "heap-after-GC-MiB")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/reader")
		})
	}
}
