package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/ssh"
)

// An Ollama public key is registered with a proof that whoever registers
// it for a tenant was given it by the key's holder: an SSH signature
// (ssh-keygen -Y sign, PROTOCOL.sshsig) by that key over OllamaProofText
// of the tenant, in the namespace OllamaProofNamespace. Without it, a
// public key (public by nature: ollama.com, GitHub's .keys) could be
// registered first by another tenant's admin, whose tenant the key's
// holder would then use unknowingly.

// OllamaProofNamespace is the SSH signature namespace of a proof.
const OllamaProofNamespace = "moltbot-ollama-key"

// OllamaProofText is what the key's holder signs to let tenant use the key.
func OllamaProofText(tenant string) string {
	return "moltbot: register this ollama key for tenant " + tenant + "\n"
}

// OllamaProofCommand is the command the key's holder runs (ssh-keygen, on
// the file the ollama CLI keeps its key in) to make the proof for tenant.
func OllamaProofCommand(tenant string) string {
	return fmt.Sprintf("printf 'moltbot: register this ollama key for tenant %s\\n' | ssh-keygen -Y sign -f ~/.ollama/id_ed25519 -n %s > proof.sig",
		tenant, OllamaProofNamespace)
}

const (
	sshsigMagic   = "SSHSIG"
	sshsigVersion = 1
	sshsigBegin   = "-----BEGIN SSH SIGNATURE-----"
	sshsigEnd     = "-----END SSH SIGNATURE-----"
	// maxProof bounds an armored proof (an Ed25519 one is about 300 bytes).
	maxProof = 4096
)

// VerifyOllamaProof checks that proof (an armored SSH signature) is wire's
// key's signature of OllamaProofText(tenant) in OllamaProofNamespace.
func VerifyOllamaProof(wire []byte, proof, tenant string) error {
	if proof == "" {
		return fmt.Errorf("auth: ollama_proof is required: the key's holder signs the tenant's name with it (%s)", OllamaProofCommand(tenant))
	}
	if len(proof) > maxProof {
		return fmt.Errorf("auth: ollama_proof is %d bytes; an SSH signature is well under %d", len(proof), maxProof)
	}
	blob, err := dearmor(proof)
	if err != nil {
		return err
	}
	r := sshReader{b: blob}
	if magic := r.bytes(len(sshsigMagic)); string(magic) != sshsigMagic {
		return errors.New("auth: ollama_proof: not an SSH signature (no SSHSIG preamble)")
	}
	version := r.uint32()
	pub, ns, reserved, alg, sig := r.string(), r.string(), r.string(), r.string(), r.string()
	if r.err != nil || len(r.b) != 0 {
		return errors.New("auth: ollama_proof: a malformed SSH signature")
	}
	if version != sshsigVersion {
		return fmt.Errorf("auth: ollama_proof: SSH signature version %d, want %d", version, sshsigVersion)
	}
	if !bytes.Equal(pub, wire) {
		return errors.New("auth: ollama_proof is signed by another key than ollama_key")
	}
	if string(ns) != OllamaProofNamespace {
		return fmt.Errorf("auth: ollama_proof: namespace %q, want %q (ssh-keygen -Y sign -n %s)", ns, OllamaProofNamespace, OllamaProofNamespace)
	}
	var h hash.Hash
	switch string(alg) {
	case "sha512":
		h = sha512.New()
	case "sha256":
		h = sha256.New()
	default:
		return fmt.Errorf("auth: ollama_proof: hash algorithm %q, want sha512 or sha256", alg)
	}
	var s ssh.Signature
	sr := sshReader{b: sig}
	s.Format, s.Blob = string(sr.string()), sr.string()
	if sr.err != nil || len(sr.b) != 0 {
		return errors.New("auth: ollama_proof: a malformed signature in the SSH signature")
	}
	key, err := ssh.ParsePublicKey(wire)
	if err != nil {
		return fmt.Errorf("auth: ollama_key: %v", err)
	}
	h.Write([]byte(OllamaProofText(tenant)))
	if err := key.Verify(sshsigSigned(ns, reserved, alg, h.Sum(nil)), &s); err != nil {
		return fmt.Errorf("auth: ollama_proof does not verify: it must be the key's signature of the text %q (%s)", OllamaProofText(tenant), OllamaProofCommand(tenant))
	}
	return nil
}

// SignOllamaProof makes a proof as ssh-keygen -Y sign does (sha512), with
// signer, the key's private half: for tests and tools.
func SignOllamaProof(signer ssh.Signer, tenant string) (string, error) {
	sum := sha512.Sum512([]byte(OllamaProofText(tenant)))
	sig, err := signer.Sign(rand.Reader, sshsigSigned([]byte(OllamaProofNamespace), nil, []byte("sha512"), sum[:]))
	if err != nil {
		return "", err
	}
	var b []byte
	b = append(b, sshsigMagic...)
	b = binary.BigEndian.AppendUint32(b, sshsigVersion)
	b = appendString(b, signer.PublicKey().Marshal())
	b = appendString(b, []byte(OllamaProofNamespace))
	b = appendString(b, nil)
	b = appendString(b, []byte("sha512"))
	b = appendString(b, appendString(appendString(nil, []byte(sig.Format)), sig.Blob))
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	out.WriteString(sshsigBegin + "\n")
	for len(enc) > 70 {
		out.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	out.WriteString(enc + "\n" + sshsigEnd + "\n")
	return out.String(), nil
}

// sshsigSigned is the message an SSH signature signs (PROTOCOL.sshsig).
func sshsigSigned(ns, reserved, alg, digest []byte) []byte {
	b := append([]byte(nil), sshsigMagic...)
	b = appendString(b, ns)
	b = appendString(b, reserved)
	b = appendString(b, alg)
	return appendString(b, digest)
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// dearmor returns the bytes of an armored SSH signature.
func dearmor(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, sshsigBegin) || !strings.HasSuffix(s, sshsigEnd) {
		return nil, fmt.Errorf("auth: ollama_proof: want the output of ssh-keygen -Y sign (%s ... %s)", sshsigBegin, sshsigEnd)
	}
	body := strings.Join(strings.Fields(s[len(sshsigBegin):len(s)-len(sshsigEnd)]), "")
	b, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("auth: ollama_proof: not base64: %v", err)
	}
	return b, nil
}

// sshReader reads SSH wire fields; the first failure sticks in err.
type sshReader struct {
	b   []byte
	err error
}

func (r *sshReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errors.New("short")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *sshReader) uint32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *sshReader) string() []byte {
	n := r.uint32()
	if n > uint32(len(r.b)) {
		r.err = errors.New("short")
		return nil
	}
	return r.bytes(int(n))
}
