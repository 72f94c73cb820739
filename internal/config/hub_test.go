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
		{"POSGATE_HUB_LEASE=1", "hub.lease: 1 is out of range (2–3600 seconds)"},
		{"POSGATE_HUB_LEASE=10", "hub.lease: 10 must be above hub.write_timeout (10)"},
		{"POSGATE_HUB_OUTBOX_RETENTION=60", "hub.outbox_retention: 60 is out of range (3600–31536000 seconds)"},
		{"POSGATE_HUB_LEASE=1", "hub.lease: 1 is out of range (2–3600 seconds)"},
		{"POSGATE_HUB_LEASE=10", "hub.lease: 10 must be above hub.write_timeout (10)"},
		{"POSGATE_HUB_OUTBOX_RETENTION=60", "hub.outbox_retention: 60 is out of range (3600–31536000 seconds)"},
		{"POSGATE_HUB_OUTBOX_RETENTION=7200\nPOSGATE_DOSHII_EVENT_TTL=9000", ""},
		{"POSGATE_SERVER_MEMORY_LIMIT=1000", "server.memory_limit: 1000 is too small"},
		{"POSGATE_SERVER_MEMORY_LIMIT=-1", "server.memory_limit: -1 is out of range"},
	} {
		_, err := Load(Options{Environ: []string{tc.env}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.env, err, tc.want)
		}
	}

	// The retention covers the longest-lived open message of either dialect.
	_, err = Load(Options{Environ: []string{"POSGATE_HUB_OUTBOX_RETENTION=7200", "POSGATE_DOSHII_EVENT_TTL=9000"}})
	if err == nil || !strings.Contains(err.Error(), "hub.outbox_retention: 7200 must be at least orderpay.request_ttl and doshii.event_ttl (9000)") {
		t.Errorf("retention below event_ttl: %v", err)
	}
	cfg, err = Load(Options{Environ: []string{"POSGATE_HUB_LEASE=30", "POSGATE_HUB_OUTBOX_RETENTION=7200"}})
	if err != nil || cfg.Hub.Lease != 30 || cfg.Hub.OutboxRetention != 7200 {
		t.Errorf("lease/retention = %+v, %v", cfg.Hub, err)
	}
	if d := Default().Hub; d.Lease != 60 || d.OutboxRetention != 86400 {
		t.Errorf("defaults = %+v", d)
	}
}
