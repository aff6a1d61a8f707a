package openaiwire

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
)

// ImageTypes are the media types an image part may carry: those every
// provider moltbot speaks to takes (OpenAI, Anthropic and Ollama's vision
// models).
var ImageTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

// ImageError is an image URL refused. TooLarge says it was refused for
// its size only (a server answers 413 then, 400 otherwise).
type ImageError struct {
	TooLarge bool
	Msg      string
}

func (e *ImageError) Error() string { return e.Msg }

// DecodeImageURL reads an image part's url, which must be a data URL,
// data:<type>[;<param>...];base64,<data>, of one of ImageTypes: it returns
// the media type and the decoded bytes, at most max of them. A link
// (http:, https:, anything but data:) is refused: a server that fetched it
// would make requests on the caller's behalf (SSRF) and wait on them. The
// bytes must begin as their type says (the signature of a PNG, ...), so
// that a mislabelled file is refused here, not by a provider mid-failover.
func DecodeImageURL(url string, max int) (mime string, data []byte, err error) {
	rest, ok := cutPrefixFold(url, "data:")
	if !ok {
		return "", nil, &ImageError{Msg: "only data: URLs are accepted (data:image/png;base64,...): the server fetches no links"}
	}
	head, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return "", nil, &ImageError{Msg: "the data URL has no ',' before its data"}
	}
	params := strings.Split(head, ";")
	if len(params) < 2 || !strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64") {
		return "", nil, &ImageError{Msg: "the data URL must be base64 (data:<type>;base64,<data>)"}
	}
	mime = strings.ToLower(strings.TrimSpace(params[0]))
	if mime == "image/jpg" { // a common misspelling, which browsers accept too
		mime = "image/jpeg"
	}
	known := false
	for _, t := range ImageTypes {
		known = known || t == mime
	}
	if !known {
		return "", nil, &ImageError{Msg: fmt.Sprintf("image type %q is not accepted; use %s", clip(mime, 64), strings.Join(ImageTypes, ", "))}
	}
	// Refused before it is decoded: the size is known from the length.
	if n := base64.StdEncoding.DecodedLen(len(payload)); n-2 > max {
		return "", nil, &ImageError{TooLarge: true, Msg: fmt.Sprintf("the image is about %d bytes; at most %d are allowed", n, max)}
	}
	enc := base64.StdEncoding
	if len(payload)%4 != 0 {
		enc = base64.RawStdEncoding // unpadded, as some encoders write it
	}
	data, err = enc.DecodeString(payload)
	if err != nil {
		return "", nil, &ImageError{Msg: "the data URL's data is not valid base64: " + err.Error()}
	}
	if len(data) > max {
		return "", nil, &ImageError{TooLarge: true, Msg: fmt.Sprintf("the image is %d bytes; at most %d are allowed", len(data), max)}
	}
	if !looksLike(mime, data) {
		return "", nil, &ImageError{Msg: fmt.Sprintf("the data is not a %s image (its first bytes say otherwise)", mime)}
	}
	return mime, data, nil
}

// looksLike reports whether data begins with the signature of type mime.
func looksLike(mime string, data []byte) bool {
	switch mime {
	case "image/png":
		return bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n"))
	case "image/jpeg":
		return bytes.HasPrefix(data, []byte("\xff\xd8\xff"))
	case "image/gif":
		return bytes.HasPrefix(data, []byte("GIF87a")) || bytes.HasPrefix(data, []byte("GIF89a"))
	case "image/webp":
		return len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP"
	}
	return false
}

// DataURL is the data URL of an image: what DecodeImageURL reads back.
func DataURL(mime string, data []byte) string {
	b := make([]byte, 0, len("data:;base64,")+len(mime)+base64.StdEncoding.EncodedLen(len(data)))
	b = append(append(append(b, "data:"...), mime...), ";base64,"...)
	return string(base64.StdEncoding.AppendEncode(b, data))
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// clip shortens s for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
