// Package migrations embeds posgate's schema as goose SQL migrations, one directory per engine.
// The two directories hold the same tables, columns, constraints and indexes; only type names
// differ (BLOB/BYTEA, INTEGER/BIGINT/BOOLEAN). Every change is a new numbered file in both.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// SQLite returns the SQLite migrations.
func SQLite() fs.FS { return sub("sqlite") }

// Postgres returns the PostgreSQL migrations.
func Postgres() fs.FS { return sub("postgres") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time; failing here is a build defect
	}
	return f
}
