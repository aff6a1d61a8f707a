#!/usr/bin/env python3
"""SQLite FTS5 baseline for BENCHMARKS.md's knowledge-base figures.

Reads the corpus the Go benchmark uses (10,000 chunks and the golden
questions as JSON lines, written by
  KB_BENCH_CORPUS=/tmp/kb-corpus.jsonl go test ./skills/kb -run TestWriteBenchCorpus)
and indexes it in an in-memory SQLite FTS5 table, once with the unicode61
tokenizer (words; a run of Chinese characters is one token) and once with
the trigram tokenizer (what OpenClaw's memory_search uses for CJK), then
runs every question as an OR of its terms ranked by FTS5's bm25(), k 4.
Prints index time, the database's size, and query p50/p99.

Usage: scripts/kb_fts5_baseline.py /tmp/kb-corpus.jsonl
"""
import json, re, sqlite3, sys, time

def terms(q, trigram):
    out = []
    for w in re.findall(r"[A-Za-z0-9]+|[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+", q):
        if re.match(r"[A-Za-z0-9]", w):
            if len(w) >= (3 if trigram else 1):
                out.append(w.lower())
        elif trigram:
            out += [w[i:i+3] for i in range(max(1, len(w) - 2)) if len(w[i:i+3]) == 3]
        else:
            out.append(w)
    return out

def run(chunks, queries, tokenizer):
    db = sqlite3.connect(":memory:")
    db.execute(f"create virtual table t using fts5(x, tokenize='{tokenizer}')")
    t0 = time.perf_counter()
    db.executemany("insert into t(x) values (?)", ((c,) for c in chunks))
    db.commit()
    index_s = time.perf_counter() - t0
    pages = db.execute("pragma page_count").fetchone()[0] * db.execute("pragma page_size").fetchone()[0]
    lat, answered = [], 0
    for q in queries * 5:
        ts = terms(q, tokenizer == "trigram")
        if not ts:
            lat.append(0.0)
            continue
        expr = " OR ".join('"%s"' % t.replace('"', '""') for t in ts)
        t0 = time.perf_counter()
        rows = db.execute("select rowid from t where t match ? order by bm25(t) limit 4", (expr,)).fetchall()
        lat.append(time.perf_counter() - t0)
        answered += bool(rows)
    lat.sort()
    print(f"fts5 {tokenizer:9s}: {len(chunks)} chunks indexed in {index_s:.2f} s, database {pages/2**20:.1f} MB; "
          f"query p50 {lat[len(lat)//2]*1000:.2f} ms, p99 {lat[len(lat)*99//100]*1000:.2f} ms ({answered} of {len(lat)} answered)")

def main():
    chunks, queries = [], []
    for line in open(sys.argv[1], encoding="utf-8"):
        r = json.loads(line)
        if "chunk" in r:
            chunks.append(r["chunk"])
        else:
            queries.append(r["query"])
    print(f"sqlite {sqlite3.sqlite_version}")
    for tok in ("unicode61", "trigram"):
        run(chunks, queries, tok)

main()
