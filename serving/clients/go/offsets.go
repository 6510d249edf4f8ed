package tfner

import "unicode/utf8"

// validateTexts returns an *InvalidTextError for the first text that is not
// valid UTF-8.
func validateTexts(texts []string) error {
	for i, text := range texts {
		if utf8.ValidString(text) {
			continue
		}
		for offset := 0; offset < len(text); {
			r, size := utf8.DecodeRuneInString(text[offset:])
			if r == utf8.RuneError && size == 1 {
				return &InvalidTextError{Index: i, Offset: offset}
			}
			offset += size
		}
	}
	return nil
}

// runeOffsets maps code-point offsets of a valid UTF-8 string to byte
// offsets: element k is the byte where code point k starts, and the last
// element is len(text), the offset one past the final code point.
func runeOffsets(text string) []int {
	offsets := make([]int, 0, utf8.RuneCountInString(text)+1)
	for i := range text {
		offsets = append(offsets, i)
	}
	return append(offsets, len(text))
}
