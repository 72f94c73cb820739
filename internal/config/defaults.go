package config

// Default returns the configuration posgate runs with when nothing is configured: SQLite under
// ./posgate-data, HTTPS on :8443 with a generated self-signed certificate. Every value here is the
// one documented next to its field in config.go and in docs/configuration.md.
func Default() *Config {
	return &Config{
		Server: Server{
			DataDir:           "./posgate-data",
			Addr:              ":8443",
			ReadHeaderTimeout: 5,
			ReadTimeout:       30,
			WriteTimeout:      90,
			IdleTimeout:       120,
			ShutdownTimeout:   30,
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    16 << 10,
			LogLevel:          "info",
			AuditRetention:    7776000,
			GCPercent:         400,
		},
		Store: Store{Driver: "sqlite", Timeout: 5},
		Keys: Keys{
			Algorithm:        "EdDSA",
			RotationInterval: 7776000,
			RevocationResync: 5,
		},
		OAuth:   OAuth{AccessLifetime: 3600},
		Gateway: Gateway{UpstreamTimeout: 30},
		Chef: Chef{
			ApprovalTimeout:      60,
			Cooldown:             10,
			TokenLifetime:        3600,
			Leeway:               0,
			MaxPending:           100,
			MaxPendingPerAddress: 5,
			PendingRetention:     3600,
			MaxBatch:             20,
			RenewWindow:          2592000,
			Upstream:             "pos",
		},
		Chimpy: Chimpy{
			AccessLifetime:  3600,
			RefreshIdle:     2592000,
			RefreshAbsolute: 31536000,
			RefreshGrace:    0,
		},
		Jackpot: Jackpot{
			SessionLifetime: 3600,
			M2MLifetime:     3600,
			IatPast:         300,
			IatFuture:       60,
			KeyOverlap:      86400,
		},
		Doshii: Doshii{
			Prefix:       "/pos/v3",
			PastWindow:   600,
			FutureWindow: 60,
			KeyOverlap:   86400,
			OfflineAfter: 90,
			EventTTL:     600,
		},
		Orderpay: Orderpay{
			TicketLifetime: 300,
			RequestWait:    30,
			RequestTTL:     600,
		},
		Hub: Hub{
			PingInterval:    30,
			WriteTimeout:    10,
			MaxMessage:      1 << 20,
			SendQueue:       64,
			Lease:           60,
			OutboxRetention: 86400,
		},
		Throttle: Throttle{
			Window:          300,
			PerAddress:      20,
			PerAddressIdent: 5,
			PerIdentity:     100,
			IdentityBackoff: 60,
		},
	}
}
