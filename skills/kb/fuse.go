package kb

// RRFK is reciprocal rank fusion's constant (Cormack, Clarke and
// Buettcher, SIGIR 2009): a list's item at rank r (from 1) adds 1/(60+r).
const RRFK = 60

// Fuse merges ranked lists of chunk numbers by reciprocal rank fusion and
// returns the k best, best first (equal sums: the lower chunk first).
func Fuse(k int, lists ...[]int) []Hit {
	sum := map[int]float64{}
	for _, l := range lists {
		for r, c := range l {
			sum[c] += 1 / float64(RRFK+r+1)
		}
	}
	var top []Hit
	for c, s := range sum {
		top = pushTop(top, Hit{Chunk: c, Score: s}, k)
	}
	sortHits(top)
	return top
}
