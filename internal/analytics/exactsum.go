package analytics

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
)

// exactSum adds float64 values without any rounding: a fixed-point
// "superaccumulator" whose least significant bit is 2^-1074, the smallest
// subnormal, so that every finite float64 is an integer number of units.
//
// Why not big.Rat in the loop: Rat.Add multiplies and reduces by a GCD on
// every call (about a microsecond), while adding a 53-bit mantissa at its
// bit offset here touches two words plus a rare carry (a few nanoseconds,
// see BenchmarkExactSum). The value is turned into a big.Rat once per delta.
//
// A finite float64 is m·2^(s-1074) with m < 2^53 and s in 0..2045 (s is
// the biased exponent minus one for normal numbers, 0 for subnormals). Its
// bits fall in positions s..s+52 ≤ 2097; the 35 words (2240 bits) leave
// 142 bits of carry headroom, that is 2^142 additions of the largest
// float64 before overflow. Positive and negative values are kept apart so
// that each array only ever grows.
type exactSum struct {
	pos, neg [sumWords]uint64
}

const (
	sumWords = 35
	// sumUnitExp is the exponent of the accumulator's unit: 2^-1074.
	sumUnitExp = 1074
)

// add adds x exactly. x must be finite; the caller checks.
func (s *exactSum) add(x float64) {
	b := math.Float64bits(x)
	e := int(b>>52) & 0x7ff
	m := b & (1<<52 - 1)
	if e != 0 {
		m |= 1 << 52
		e--
	}
	if m == 0 {
		return
	}
	acc := &s.pos
	if b>>63 != 0 {
		acc = &s.neg
	}
	w, sh := e>>6, uint(e&63)
	// For sh == 0, m >> 64 is 0 in Go.
	var c uint64
	acc[w], c = bits.Add64(acc[w], m<<sh, 0)
	acc[w+1], c = bits.Add64(acc[w+1], m>>(64-sh), c)
	for i := w + 2; c != 0; i++ {
		acc[i], c = bits.Add64(acc[i], 0, c)
	}
}

// rat returns the exact sum.
func (s *exactSum) rat() *big.Rat {
	p := wordsInt(&s.pos)
	p.Sub(p, wordsInt(&s.neg))
	if p.Sign() == 0 {
		return new(big.Rat)
	}
	return new(big.Rat).SetFrac(p, new(big.Int).Lsh(big.NewInt(1), sumUnitExp))
}

func wordsInt(w *[sumWords]uint64) *big.Int {
	var buf [sumWords * 8]byte
	for i, v := range w {
		binary.BigEndian.PutUint64(buf[(sumWords-1-i)*8:], v)
	}
	return new(big.Int).SetBytes(buf[:])
}
