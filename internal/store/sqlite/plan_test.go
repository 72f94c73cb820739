package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestHotPathsUseIndexes checks the query plans of the per-request lookups: each must be an
// index search, never a table scan, and run no subquery once per row.
func TestHotPathsUseIndexes(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "posgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, q := range map[string]string{
		"UseOnce":                        `INSERT INTO single_use (name, used_at, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at WHERE single_use.expires_at <= excluded.used_at`,
		"GetClientByIDHash":              `SELECT c.id, k.id FROM clients c LEFT JOIN client_assertion_keys k ON k.client_id = c.id WHERE c.client_id_hash = $1 ORDER BY k.pos DESC`,
		"IsRevoked":                      `SELECT 1 FROM revocations WHERE kind = $1 AND subject = $2`,
		"GetDoshiiLocationByTokenHash":   `SELECT id FROM doshii_locations WHERE token_hash = $1`,
		"GetDoshiiVendorByName":          `SELECT v.id, k.id FROM doshii_vendors v LEFT JOIN doshii_vendor_keys k ON k.vendor_id = v.id WHERE v.api_name = $1 ORDER BY k.pos DESC`,
		"GetRefreshToken":                `SELECT f.id FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1`,
		"IncrCounter":                    `SELECT hits FROM counters WHERE name = $1`,
		"GetChefDeviceByKey":             `SELECT id FROM chef_devices WHERE device_key = $1`,
		"CountPendingChefDevicesSince":   `SELECT COUNT(*), COALESCE(SUM(CASE WHEN address_key = $2 THEN 1 ELSE 0 END), 0) FROM chef_devices WHERE state = 'pending' AND updated_at > $1`,
		"ListRecentChefDevices":          `SELECT id FROM chef_devices WHERE state = $2 ORDER BY updated_at DESC, id DESC LIMIT $1`,
		"DeletePendingChefDevicesBefore": `DELETE FROM chef_devices WHERE state = 'pending' AND updated_at < $1`,
		"DeleteAuditBefore":              `DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)`,
		"ClaimOutbox": `WITH c AS (SELECT seq FROM outbox WHERE queue = $1 AND state IN ('queued', 'sent') AND expires_at > $3
			AND (lease_until IS NULL OR lease_until <= $3) ORDER BY seq LIMIT $2)
			UPDATE outbox SET lease_owner = $2, lease_until = $3, attempts = attempts + 1
			WHERE seq IN (SELECT seq FROM c) AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.queue = $1 AND o.state IN ('queued', 'sent')
				AND o.expires_at > $3 AND o.lease_owner <> $2 AND o.lease_until > $3)
			AND seq < COALESCE((SELECT MIN(o.seq) FROM outbox o WHERE o.queue = $1 AND o.state IN ('queued', 'sent') AND o.expires_at > $3
				AND o.seq NOT IN (SELECT seq FROM c) AND (o.lease_owner <> $2 OR o.lease_until IS NULL OR o.lease_until <= $3)), 9223372036854775807)
			RETURNING seq`,
		"EnqueueOutboxHeld": `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at, expires_at, attempts, lease_owner, lease_until, sent_at)
			SELECT $1, $2, $3, $3, $3, $2, $2, 1, $3, $2, $2
			WHERE (SELECT 1 FROM outbox WHERE queue = $1 AND state IN ('queued', 'sent') AND lease_owner < $3 AND expires_at > $2 ORDER BY lease_owner LIMIT 1) IS NULL
			AND (SELECT 1 FROM outbox WHERE queue = $1 AND state IN ('queued', 'sent') AND lease_owner > $3 AND expires_at > $2 ORDER BY lease_owner LIMIT 1) IS NULL
			AND (SELECT 1 FROM outbox WHERE queue = $1 AND state IN ('queued', 'sent') AND lease_owner = $3 AND lease_until <= $2 AND expires_at > $2 ORDER BY lease_until LIMIT 1) IS NULL
			ON CONFLICT (queue, id) DO NOTHING RETURNING seq`,
		"RenewOutbox":                "UPDATE outbox SET lease_until = $3 WHERE queue = $1 AND state IN ('queued', 'sent') AND lease_owner = $2 AND lease_until > $2 RETURNING id",
		"CountOutbox":                "SELECT COUNT(*) FROM outbox WHERE queue = $1 AND state IN ('queued', 'sent')",
		"ReleaseOutbox":              "UPDATE outbox SET lease_owner = '', lease_until = NULL WHERE queue = $1 AND state IN ('queued', 'sent') AND lease_owner = $2",
		"ExpireOutbox":               "UPDATE outbox SET state = 'expired' WHERE state IN ('queued', 'sent') AND expires_at <= $1",
		"DeleteOutboxFinishedBefore": "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state IN ('done', 'expired') AND done_at < $1 ORDER BY done_at LIMIT $2)",
		"ListPresence":               `SELECT conn_id FROM presence WHERE tenant = $1 AND seen_at >= $2 ORDER BY since DESC, conn_id DESC`,
		"DeletePresenceSeenBefore":   `DELETE FROM presence WHERE seen_at < $1`,
	} {
		rows, err := s.Writer().Query(t.Context(), "EXPLAIN QUERY PLAN "+q, "a", "b", "c")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int64
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			// "SCAN CONSTANT ROW" is the one row of a SELECT without FROM (an insert whose
			// values are selected under a condition): it reads no table.
			if strings.HasPrefix(step, "SCAN ") && step != "SCAN CONSTANT ROW" {
				t.Errorf("%s: table scan in plan %q", name, plan)
			}
			// A correlated subquery runs once per outer row: in a claim, once per candidate,
			// each run reading the queue's open messages again.
			if strings.Contains(step, "CORRELATED") {
				t.Errorf("%s: correlated subquery in plan %q", name, plan)
			}
		}
	}
}
