package thresholds_test

import (
	"strings"
	"testing"

	"github.com/acu-patrol/acu/internal/thresholds"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"50", 50, true}, {"62.5", 62.5, true}, {" 0 ", 0, true}, {"100", 100, true},
		{"100.01", 0, false}, {"-1", 0, false}, {"NaN", 0, false}, {"fifty", 0, false}, {"", 0, false}, {"1e400", 0, false},
	} {
		got, err := thresholds.ParseValue(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseValue(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseCSV(t *testing.T) {
	got, err := thresholds.ParseCSV(strings.NewReader("exercise_id,threshold\n# comment\nc00,50\nc01, 62.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["c00"] != 50 || got["c01"] != 62.5 {
		t.Fatalf("got %v", got)
	}
	_, err = thresholds.ParseCSV(strings.NewReader("c00,50\nbad id,10\nc02,150\nc00,40\nc03\n"))
	if err == nil {
		t.Fatal("bad CSV accepted")
	}
	for _, want := range []string{"line 2", "line 3", "line 4", "line 5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
