package sqlite

import (
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/posgate/posgate/internal/store/migrations"
)

// TestMigrationOutboxSlim: 00011 keeps every outbox row and each queue's order, and leaves the
// table without AUTOINCREMENT (no sqlite_sequence row written per insert); down restores it.
func TestMigrationOutboxSlim(t *testing.T) {
	ctx := t.Context()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.SQLite(),
		goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 10); err != nil {
		t.Fatal(err)
	}
	insert := func(queue, id, state string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at, expires_at,
			attempts, lease_owner) VALUES (?, ?, x'01', x'02', ?, 1, 2, 0, '')`, queue, id, state); err != nil {
			t.Fatal(err)
		}
	}
	insert("a", "a0", "queued")
	insert("b", "b0", "queued")
	insert("a", "a1", "sent")
	insert("a", "gone", "done")
	insert("a", "a2", "queued")
	if _, err := db.ExecContext(ctx, `DELETE FROM outbox WHERE id = 'gone'`); err != nil {
		t.Fatal(err)
	}
	order := func() []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, `SELECT queue || '/' || id || '/' || state FROM outbox ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := order()
	autoinc := func() bool {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'`).Scan(&n); err != nil || n == 0 {
			return false
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'outbox'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if !autoinc() {
		t.Fatal("before 00011: no sqlite_sequence row for outbox")
	}
	if _, err := p.UpTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	if after := order(); !slices.Equal(after, before) {
		t.Fatalf("after 00011: %v, want %v", after, before)
	}
	insert("a", "a3", "queued")
	if autoinc() {
		t.Fatal("after 00011: an insert still writes sqlite_sequence")
	}
	if got := order(); got[len(got)-1] != "a/a3/queued" {
		t.Fatalf("new row not last: %v", got)
	}
	if _, err := p.DownTo(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if got := order(); len(got) != len(before)+1 || !autoinc() {
		t.Fatalf("after down: %v, autoincrement %v", got, autoinc())
	}
}
