package migrations

import (
	"io/fs"
	"regexp"
	"slices"
	"testing"
)

// TestEnginesInStep checks both engines have the same migration files and, per file, the same
// tables, columns and indexes, so a change made to one engine only fails here.
func TestEnginesInStep(t *testing.T) {
	names := func(f fs.FS) []string {
		m, err := fs.Glob(f, "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	sl, pg := names(SQLite()), names(Postgres())
	if len(sl) == 0 || !slices.Equal(sl, pg) {
		t.Fatalf("migration files differ: sqlite %v, postgres %v", sl, pg)
	}
	ident := regexp.MustCompile(`(?m)^\s*(CREATE (?:UNIQUE )?(?:TABLE|INDEX) \w+|\w+)\s`)
	for _, n := range sl {
		a, _ := fs.ReadFile(SQLite(), n)
		b, _ := fs.ReadFile(Postgres(), n)
		ia, ib := ident.FindAllStringSubmatch(string(a), -1), ident.FindAllStringSubmatch(string(b), -1)
		if len(ia) != len(ib) {
			t.Fatalf("%s: %d vs %d declarations", n, len(ia), len(ib))
		}
		for i := range ia {
			if ia[i][1] != ib[i][1] {
				t.Errorf("%s: declaration %d: sqlite %q, postgres %q", n, i, ia[i][1], ib[i][1])
			}
		}
	}
}
