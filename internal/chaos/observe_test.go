package chaos

import (
	"maps"
	"os"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// events iterates over a history read from a file.
type events struct{ evs []*historypb.HistoryEvent }

func (e *events) HasNext() bool { return len(e.evs) > 0 }

func (e *events) Next() (*historypb.HistoryEvent, error) {
	ev := e.evs[0]
	e.evs = e.evs[1:]
	return ev, nil
}

func historyOf(t *testing.T, path string) *events {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h historypb.History
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return &events{h.Events}
}

// The archive mark is read from a deployment's exported history (one the
// replay tests keep), and a history from before the mark existed has none.
func TestArchiveMarkFromHistory(t *testing.T) {
	ends, found, err := archiveMarkIn(historyOf(t, "../../workflows/testdata/patrol_awaiting_archive_v2.json"))
	if err != nil || !found || !maps.Equal(ends, map[int32]int64{0: 0, 1: 2}) {
		t.Errorf("mark %v found %v err %v, want map[0:0 1:2]", ends, found, err)
	}
	if ends, found, err := archiveMarkIn(historyOf(t, "../../workflows/testdata/patrol_recovered.json")); err != nil || found {
		t.Errorf("a deployment without a mark: %v %v %v", ends, found, err)
	}
}
