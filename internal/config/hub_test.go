package config

import (
	"strings"
	"testing"
)

// The hub section and the memory limit: set by environment, refused with a message that names
// the key, the value and what is allowed.
func TestHubKeys(t *testing.T) {
	cfg, err := Load(Options{Environ: []string{"POSGATE_HUB_PING_INTERVAL=5", "POSGATE_HUB_SEND_QUEUE=16",
		"POSGATE_SERVER_MEMORY_LIMIT=1449551462"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hub.PingInterval != 5 || cfg.Hub.SendQueue != 16 || cfg.Hub.WriteTimeout != 10 || cfg.Hub.MaxMessage != 1<<20 {
		t.Fatalf("hub = %+v", cfg.Hub)
	}
	if cfg.Server.MemoryLimit != 1449551462 {
		t.Fatalf("memory_limit = %d", cfg.Server.MemoryLimit)
	}
	for _, tc := range []struct{ env, want string }{
		{"POSGATE_HUB_PING_INTERVAL=0", "hub.ping_interval: 0 is out of range (1–3600 seconds)"},
		{"POSGATE_HUB_WRITE_TIMEOUT=601", "hub.write_timeout: 601 is out of range (1–600 seconds)"},
		{"POSGATE_HUB_MAX_MESSAGE=100", "hub.max_message: 100 is out of range (1024–67108864 bytes)"},
		{"POSGATE_HUB_SEND_QUEUE=0", "hub.send_queue: 0 is out of range (1–65536)"},
		{"POSGATE_HUB_SEND_QUEUE=lots", "POSGATE_HUB_SEND_QUEUE"},
		{"POSGATE_SERVER_MEMORY_LIMIT=1000", "server.memory_limit: 1000 is too small"},
		{"POSGATE_SERVER_MEMORY_LIMIT=-1", "server.memory_limit: -1 is out of range"},
	} {
		_, err := Load(Options{Environ: []string{tc.env}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}
