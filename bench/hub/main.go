// Command hub measures posgate's websocket hub (internal/hub) on this machine.
//
//	go build -o /tmp/benchhub ./bench/hub
//	/tmp/benchhub echo  -duration 5s -rounds 3               # (a) echo round trip: bare coder/websocket vs the hub
//	/tmp/benchhub idle  -sockets 2000 -procs 2 -addrs 2        # (b) idle sockets: RSS per socket with pings running
//	/tmp/benchhub idle  -server doshii -heartbeat 30s           # (b) the same with doshii heartbeats: heartbeat CPU per socket
//	/tmp/benchhub roundtrip -dialect echo -rate 1000 -duration 10s   # (c) request → peer → answer, open loop
//	/tmp/benchhub roundtrip -dialect orderpay -store postgres -rate 100 -duration 5s   # (c) through real posgate replicas
//	/tmp/benchhub roundtrip -dialect doshii -store postgres -floor   # (c) and the PostgreSQL floor of its shape
//
// (a) drives, in the same process and over loopback TCP, a bare coder/websocket echo server (a
// reader loop that writes each message back: the fastest a websocket round trip can be here) and
// the hub with a Handler that Sends each message back, alternating rounds so drift in the
// machine's load hits both alike, and reports p50/p99 and the ratio hub / bare.
//
// (b) starts one server process (this program re-executed with -role server: a hub, or a bare
// coder/websocket server as the baseline) and the simulated peers in separate client processes
// (-role client), each bound to its own source address 127.0.0.2, 127.0.0.3, … (one address has
// about 28 000 ephemeral ports; the open-file limit is per process). Once every socket is open it
// waits for several ping intervals and samples the server's resident set size, Go heap and CPU
// time; it reports KiB per socket above the empty server and CPU per socket for the pings. Each
// -gc setting runs on a fresh server process, so the figures compare within one run.
//
// (c) is the harness the dialects reuse: a Dialect sets up a peer and sends one request through
// posgate and waits for the answer; the harness paces requests at -rate, records latency, and runs
// the bare echo of (a) in the same run for the ratio. The "echo" dialect drives the hub itself;
// "orderpay" (integrator request → POS answer) and "doshii" (event publish → POS socket) start
// `posgate serve` processes — two replicas on one PostgreSQL database with -store postgres, the
// caller on the first and the POS on the second — and go through the public APIs and clients.
// "pgrelay" (and -floor, which runs it in the same run as a posgate dialect) is the floor under
// those on PostgreSQL: two relay processes doing only the hops the design requires (a durable
// insert, a NOTIFY, the socket write, and for orderpay a durable update and a NOTIFY back).
// -timeline prints p50/p99 per window, which tells a tail made of stalls from one of queueing.
//
// Everything talks to loopback only and is bounded in time and count.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/hub:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: hub echo|idle|roundtrip [flags] (see the package comment)")
	}
	switch args[0] {
	case "echo":
		return runEcho(args[1:])
	case "idle":
		return runIdle(args[1:])
	case "roundtrip":
		return runRoundTrip(args[1:])
	case "-role":
		// Re-executed by idle: a server or a client process.
		if len(args) < 2 {
			return errors.New("-role needs server or client")
		}
		switch args[1] {
		case "server":
			return roleServer(args[2:])
		case "client":
			return roleClient(args[2:])
		case "relay":
			return roleRelay(args[2:])
		}
		return fmt.Errorf("unknown role %q", args[1])
	}
	return fmt.Errorf("unknown mode %q: echo, idle or roundtrip", args[0])
}
