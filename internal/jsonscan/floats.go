package jsonscan

import "strconv"

// Float32s reads the array of numbers at b[i] and appends them to dst as
// encoding/json decodes them into a []float32 (strconv.ParseFloat with 32
// bits): a number out of float32's range is refused, as encoding/json
// refuses it. An embedding is thousands of such numbers, where
// encoding/json's reflection and scanner cost several times the parse.
func Float32s(b []byte, i int, dst []float32) ([]float32, int, bool) {
	if i >= len(b) || b[i] != '[' {
		return dst, i, false
	}
	i = WS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return dst, i + 1, true
	}
	for {
		e, ok := Number(b, i)
		if !ok {
			return dst, i, false
		}
		f, err := strconv.ParseFloat(string(b[i:e]), 32)
		if err != nil {
			return dst, i, false
		}
		dst = append(dst, float32(f))
		i = WS(b, e)
		if i >= len(b) {
			return dst, i, false
		}
		if b[i] == ']' {
			return dst, i + 1, true
		}
		if b[i] != ',' {
			return dst, i, false
		}
		i = WS(b, i+1)
	}
}
