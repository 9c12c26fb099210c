package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/storetest"
)

// TestContract runs the contract of every store backend on a fresh file
// database per subtest. SQLite's arrival mark is its insert sequence, visible
// as soon as PutResults returns: there is nothing to settle.
func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			s, err := Open(t.Context(), filepath.Join(t.TempDir(), "acu.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}
