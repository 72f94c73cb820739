// Package faultproxy is a TCP relay for fault tests that can be frozen: while frozen it keeps
// accepting connections and reading what both sides send, but forwards nothing, as a server
// stopped with SIGSTOP or a network partition looks to a client (connects succeed, answers never
// come). Thaw forwards what was held and carries on. It stops at the end of the test.
package faultproxy

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy relays connections from Addr to a target address.
type Proxy struct {
	Addr   string // 127.0.0.1:port to connect to instead of the target
	target string
	l      net.Listener

	mu     sync.Mutex
	thawed chan struct{} // closed while the proxy forwards; replaced by Freeze
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on a loopback port and relays every connection to target.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, l: l, thawed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.thawed)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Freeze stops forwarding: connections stay open and new ones are accepted, but no byte passes.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default: // already frozen
	}
}

// Thaw resumes forwarding, held bytes first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// Close stops listening and closes every relayed connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.Thaw()
	p.l.Close()
	for c := range conns {
		c.Close()
	}
}

// wait blocks while the proxy is frozen.
func (p *Proxy) wait() {
	p.mu.Lock()
	ch := p.thawed
	p.mu.Unlock()
	<-ch
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		go func() {
			p.wait() // a frozen server does not answer a new connection either
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(up) {
				c.Close()
				return
			}
			go p.pipe(up, c)
			p.pipe(c, up)
		}()
	}
}

// pipe copies src to dst, holding every chunk while the proxy is frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}
