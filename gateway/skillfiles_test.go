package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// fakeSkillFiles keeps pushed files in memory and records each push.
type fakeSkillFiles struct {
	mu     sync.Mutex
	files  map[string]map[string]string // space -> path -> source
	pushes []string
}

func (f *fakeSkillFiles) List(space string) (*manage.SkillFileList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := &manage.SkillFileList{Files: []manage.SkillFile{}}
	for p, src := range f.files[space] {
		l.Files = append(l.Files, manage.SkillFile{Path: p, Bytes: len(src)})
		l.Version = "v"
	}
	return l, nil
}

func (f *fakeSkillFiles) Get(space, path string) (manage.SkillFile, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	src, ok := f.files[space][path]
	return manage.SkillFile{Path: path, Source: src, Bytes: len(src)}, ok, nil
}

func (f *fakeSkillFiles) Push(_ context.Context, space string, c manage.SkillFilesChange) (*manage.SkillFileList, error) {
	put, remove, replace := c.Put, c.Remove, c.Replace
	f.mu.Lock()
	if c.IfVersion != nil && *c.IfVersion != "v" {
		f.mu.Unlock()
		return nil, &moltbot.Error{Code: moltbot.EConflict, Param: "if_version", Message: "at v"}
	}
	if f.files[space] == nil || replace {
		f.files[space] = map[string]string{}
	}
	for _, p := range remove {
		if _, ok := f.files[space][p]; !ok {
			f.mu.Unlock()
			return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: p, Message: "no pushed file " + p}
		}
		delete(f.files[space], p)
	}
	for _, x := range put {
		if strings.Contains(x.Source, "SYNTAX") {
			f.mu.Unlock()
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: x.Path, Message: x.Path + ":1: SyntaxError"}
		}
		f.files[space][x.Path] = x.Source
		f.pushes = append(f.pushes, space+" "+x.Path)
	}
	f.mu.Unlock()
	return f.List(space)
}

func skillFilesServer(t testing.TB) (string, *fakeSkillFiles) {
	t.Helper()
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 6, Seed: 1}),
		MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: storage.NewMemory(), Metrics: met, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeSkillFiles{files: map[string]map[string]string{}}
	mg := manage.New(manage.Config{Runtime: rt, SkillFiles: fake})
	srv := httptest.NewServer(New(chat.New(rt, nil, chat.Config{Metrics: met}), mg, Config{Metrics: met, Version: "test", MaxBodyBytes: 1 << 20}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	return srv.URL, fake
}

// The endpoints: a push (POST, PUT), a file's text (GET), a removal
// (DELETE), the list; bodies bounded, unknown fields and non-text
// refused; the service's 400 passed on with the file.
func TestSkillFilesEndpoints(t *testing.T) {
	url, fake := skillFilesServer(t)
	base := url + "/v1/admin/skills/files"
	resp, b := do(t, "POST", base, `{"files":[{"path":"a.js","source":"A"},{"path":"flows/f.yaml","source":"F"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"path":"a.js"`) {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "PUT", base+"/flows/g.yaml", `{"source":"G"}`)
	if resp.StatusCode != 200 || len(fake.files["default"]) != 3 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest("PUT", base+"/h.js", strings.NewReader(`{"source":"H"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", `"w"`)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 409 {
		t.Fatalf("PUT If-Match a stale version: %v %v", resp, err)
	}
	if resp, b = do(t, "POST", base, `{"files":[{"path":"h.js","source":"H"}],"if_version":"v"}`); resp.StatusCode != 200 {
		t.Fatalf("POST if_version: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "GET", base+"/flows/g.yaml", ""); resp.StatusCode != 200 || !strings.Contains(string(b), `"source":"G"`) {
		t.Fatalf("GET one: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "GET", base+"/nope.js", ""); resp.StatusCode != 404 {
		t.Fatalf("GET none: %d %s", resp.StatusCode, b)
	}
	if resp, b = do(t, "DELETE", base+"/a.js", ""); resp.StatusCode != 200 || len(fake.files["default"]) != 3 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "", `{"files":[],"bogus":1}`, 400, "bogus"},
		{"POST", "", `{}`, 400, "nothing to push"},
		{"POST", "", `{"files":[{"path":"s.js","source":"SYNTAX"}]}`, 400, `"param":"s.js"`},
		{"POST", "", `{"files":[{"path":"big.js","source":"` + strings.Repeat("x", MaxSkillFilesBody) + `"}]}`, 413, "larger than"},
		{"PUT", "/big.js", `{"source":"` + strings.Repeat("x", MaxSkillFileBody) + `"}`, 413, "larger than"},
		{"PUT", "/raw.js", "module.exports = {}", 400, ""},
		{"PUT", "/empty.js", `{"source":"  "}`, 400, "source is empty"},
		{"PUT", "/t.js?tenant=a", `{"source":"x","tenant":"b"}`, 400, "differ"},
		{"PUT", "/u.js", `{"source":"x","bogus":1}`, 400, "bogus"},
		{"PATCH", "/a.js", "", 405, ""},
		{"DELETE", "", "", 405, ""},
	} {
		resp, b := do(t, tc.method, base+tc.path, tc.body)
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) || !json.Valid(b) {
			t.Errorf("%s %s: %d %.200s", tc.method, tc.path, resp.StatusCode, b)
		}
	}
}

// Whatever a client sends, the answer is JSON and never a 5xx; a file
// reaches the service only within the bounds (its path is the
// service's to check: skills.CheckPushedPath).
func FuzzSkillFilesRequest(f *testing.F) {
	f.Add("a.js", `{"files":[{"path":"a.js","source":"x"}]}`)
	f.Add("flows/x.yaml", `{"remove":["a.js"],"replace":true,"tenant":"t"}`)
	f.Add("../../etc", `{"files":null}`)
	url, fake := skillFilesServer(f)
	f.Fuzz(func(t *testing.T, path, body string) {
		if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, "/") || strings.Contains(path, "//") || strings.HasSuffix(path, "/.") {
			return // the mux cleans such a path (a redirect)
		}
		for _, segs := range strings.Split(path, "/") {
			if segs == "." || segs == "" {
				return
			}
		}
		var p []string
		for _, s := range strings.Split(path, "/") {
			p = append(p, neturl.PathEscape(s))
		}
		for _, req := range [][3]string{{"POST", "", body}, {"PUT", "/" + strings.Join(p, "/"), body}} {
			resp, b := do(t, req[0], url+"/v1/admin/skills/files"+req[1], req[2])
			if resp.StatusCode >= 500 || !json.Valid(b) {
				t.Fatalf("%s %q %q: %d %s", req[0], req[1], req[2], resp.StatusCode, b)
			}
		}
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, files := range fake.files {
			for p, src := range files {
				if len(src) > MaxSkillFilesBody {
					t.Fatalf("the service got %q of %d bytes", p, len(src))
				}
			}
		}
	})
}
