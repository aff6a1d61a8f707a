package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func proofSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A proof made by ssh-keygen itself verifies, for its tenant only, and
// ours verifies with ssh-keygen: both sides speak PROTOCOL.sshsig.
func TestOllamaProofWithSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen on PATH")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	pubLine, _ := os.ReadFile(key + ".pub")
	wire, err := ParseOllamaKey(string(pubLine))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "sign", "-f", key, "-n", OllamaProofNamespace)
	cmd.Stdin = strings.NewReader(OllamaProofText("acme"))
	proof, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyOllamaProof(wire, string(proof), "acme"); err != nil {
		t.Fatalf("ssh-keygen's proof: %v", err)
	}
	if err := VerifyOllamaProof(wire, string(proof), "evil"); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("another tenant: %v", err)
	}
	other := proofSigner(t)
	if err := VerifyOllamaProof(other.PublicKey().Marshal(), string(proof), "acme"); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("another key: %v", err)
	}
	// Ours, checked by ssh-keygen.
	raw, _ := os.ReadFile(key)
	signer, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := SignOllamaProof(signer, "acme")
	if err != nil {
		t.Fatal(err)
	}
	sig := filepath.Join(dir, "mine.sig")
	os.WriteFile(sig, []byte(mine), 0o600)
	check := exec.Command("ssh-keygen", "-Y", "check-novalidate", "-n", OllamaProofNamespace, "-s", sig)
	check.Stdin = strings.NewReader(OllamaProofText("acme"))
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen refuses our proof: %v %s", err, out)
	}
}

func TestOllamaProofRefusals(t *testing.T) {
	s := proofSigner(t)
	wire := s.PublicKey().Marshal()
	good, err := SignOllamaProof(s, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyOllamaProof(wire, good, "acme"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ proof, want string }{
		"none":       {"", "ollama_proof is required"},
		"not armor":  {"hello", "ssh-keygen -Y sign"},
		"not base64": {sshsigBegin + "\n!!!\n" + sshsigEnd, "not base64"},
		"truncated":  {sshsigBegin + "\nU1NIU0lH\n" + sshsigEnd, "malformed"},
		"huge":       {strings.Repeat("x", maxProof+1), "well under"},
	} {
		if err := VerifyOllamaProof(wire, c.proof, "acme"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", name, err, c.want)
		}
	}
}

func FuzzVerifyOllamaProof(f *testing.F) {
	s := proofSigner(f)
	good, _ := SignOllamaProof(s, "acme")
	f.Add(good, "acme")
	f.Add(sshsigBegin+"\nU1NIU0lHAAAAAQ==\n"+sshsigEnd, "acme")
	wire := s.PublicKey().Marshal()
	f.Fuzz(func(t *testing.T, proof, tenant string) {
		err := VerifyOllamaProof(wire, proof, tenant)
		if err == nil && (proof != good || tenant != "acme") {
			t.Fatalf("accepted %q for %q", proof, tenant)
		}
	})
}
