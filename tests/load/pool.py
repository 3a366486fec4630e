"""Percentiles of pooled wrk latency histograms (tests/load/post.lua's
KEFU_LATENCY_OUT files: one "microseconds count" line per latency).

    python3 tests/load/pool.py FILE...   ->  "requests p50 p99" (ms)
"""
import sys


def pooled(paths):
    counts = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                value, count = line.split()
                counts[int(value)] = counts.get(int(value), 0) + int(count)
    return sorted(counts.items())


def percentile(hist, total, p):
    rank = total * p / 100
    seen = 0
    for value, count in hist:
        seen += count
        if seen >= rank:
            return value
    return hist[-1][0]


def main():
    hist = pooled(sys.argv[1:])
    total = sum(c for _, c in hist)
    if total == 0:
        sys.exit("no latencies in " + " ".join(sys.argv[1:]))
    p50, p99 = (percentile(hist, total, p) / 1000 for p in (50, 99))
    print(f"{total} {p50:.2f} {p99:.2f}")


main()
