package analytics

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestExactSum checks the superaccumulator against big.Rat over values that
// span the whole float64 range: subnormals, the largest finite, negatives,
// cancellations and long carry chains.
func TestExactSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	special := []float64{
		0, math.Copysign(0, -1), math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64,
		math.MaxFloat64, -math.MaxFloat64, 1, -1, 0.1, 0.2, 100, 99.99, 2.2250738585072014e-308,
		math.Nextafter(2.2250738585072014e-308, 0), math.Ldexp(1, -1022), math.Ldexp(1, 1023),
	}
	for trial := range 300 {
		var s exactSum
		want := new(big.Rat)
		n := rng.IntN(400)
		for i := range n {
			var x float64
			switch k := rng.IntN(6); {
			case k == 0:
				x = special[rng.IntN(len(special))]
			case k == 1: // any bit pattern that is finite
				for {
					x = math.Float64frombits(rng.Uint64())
					if !math.IsNaN(x) && !math.IsInf(x, 0) {
						break
					}
				}
			case k == 2: // long carry chains: all-ones mantissas at one exponent
				x = math.Ldexp(float64(1<<53-1), rng.IntN(40)-60)
			default: // metric-like values
				x = float64(rng.IntN(10001)) / 100
			}
			if trial%2 == 1 && i%3 == 0 {
				x = -x
			}
			s.add(x)
			want.Add(want, new(big.Rat).SetFloat64(x))
		}
		if got := s.rat(); got.Cmp(want) != 0 {
			t.Fatalf("trial %d: sum %s, want %s", trial, got.RatString(), want.RatString())
		}
	}
}

// BenchmarkExactSum compares the accumulator with big.Rat addition, the
// straightforward exact path.
func BenchmarkExactSum(b *testing.B) {
	xs := make([]float64, 1<<16)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range xs {
		xs[i] = float64(rng.IntN(10001)) / 100
	}
	b.Run("superaccumulator", func(b *testing.B) {
		var s exactSum
		i := 0
		for b.Loop() {
			s.add(xs[i&(len(xs)-1)])
			i++
		}
		_ = s.rat()
	})
	b.Run("big.Rat", func(b *testing.B) {
		sum, x := new(big.Rat), new(big.Rat)
		i := 0
		for b.Loop() {
			sum.Add(sum, x.SetFloat64(xs[i&(len(xs)-1)]))
			i++
		}
	})
}
