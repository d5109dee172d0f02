// Command rttproxy forwards TCP connections to a target and delays every
// byte by a fixed time in each direction, so that a relay on loopback looks
// as far away as one across a network: with -delay 1ms a round trip takes
// 2 ms. The delivery benchmark uses it (bench/delivery.sh, RELAY_DELAY) to
// show what a sender's round trips per message cost against a distant
// relay. Order and content are kept; only time is added.
//
//	go run ./bench/rttproxy -listen 127.0.0.1:2600 -target 127.0.0.1:2525 -delay 1ms
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2600", "address to listen on")
	target := flag.String("target", "127.0.0.1:2525", "address to forward to")
	delay := flag.Duration("delay", time.Millisecond, "one-way delay added to every byte")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			t, err := net.Dial("tcp", *target)
			if err != nil {
				log.Print(err)
				c.Close()
				return
			}
			go pipe(t, c, *delay)
			pipe(c, t, *delay)
		}()
	}
}

// chunk is what one read got, and when.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies from src to dst, each chunk written delay after it was read;
// a reader goroutine keeps reading meanwhile, so that the delay is added to
// the stream's latency and not to its throughput.
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at.Add(delay)))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	// The other side ends too: half-close semantics are not needed here.
	_ = dst.Close()
	_ = src.Close()
	for range q {
	}
	_, _ = io.Copy(io.Discard, src)
}
