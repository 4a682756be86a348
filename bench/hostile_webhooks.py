#!/usr/bin/env python3
"""Issue 18's bench phase: hostile webhook posts while normal traffic is served.

200 concurrent clients each post a 10 MB body with no token to /webhooks/lianke/{id} (and,
half of them, with bogus signature parameters to /webhooks/wecom), writing as fast as the
server takes it, while one client sends normal traffic (GET /v1/jobs?limit=10 with a key)
back to back. The gateway's RSS is sampled from /proc every 20 ms.

    bench/hostile_webhooks.py URL API_KEY GATEWAY_PID [--clients 200] [--mb 10]

Prints the idle RSS, the peak RSS, the peak above idle, and the normal traffic's p50/p99.
Needs only the Python standard library. The goal (issue 18): peak < idle + 64 MiB.
"""

import argparse
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def hostile(host, port, path, size, results):
    """Posts `size` bytes to `path`; counts how many the server let us send."""
    sent = 0
    status = None
    try:
        s = socket.create_connection((host, port), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        s.sendall(head)
        chunk = b"x" * 65536
        s.settimeout(0.5)
        while sent < size:
            try:
                n = s.send(chunk[: min(len(chunk), size - sent)])
            except (socket.timeout, BlockingIOError):
                break  # the server does not read: stop pushing
            except OSError:
                break  # the server closed the connection
            sent += n
        s.settimeout(30)
        answer = s.recv(4096)
        if answer.startswith(b"HTTP/1.1 "):
            status = int(answer[9:12])
        s.close()
    except OSError:
        pass
    results.append((sent, status))


def normal(url, key, stop, latencies):
    request = urllib.request.Request(
        f"{url}/v1/jobs?limit=10", headers={"Authorization": f"Bearer {key}"}
    )
    while not stop.is_set():
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                r.read()
            latencies.append((time.perf_counter() - t) * 1000)
        except OSError:
            latencies.append(float("inf"))


def percentile(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    return values[min(len(values) - 1, round((len(values) - 1) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("pid", type=int)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--mb", type=int, default=10)
    args = ap.parse_args()
    parsed = urllib.parse.urlparse(args.url)
    host, port = parsed.hostname, parsed.port or 80
    size = args.mb * 1024 * 1024

    stop = threading.Event()
    latencies = []
    # warm-up and idle measurement
    warm = threading.Thread(target=normal, args=(args.url, args.key, stop, latencies))
    warm.start()
    time.sleep(2)
    stop.set()
    warm.join()
    idle = rss_mib(args.pid)
    latencies.clear()
    stop.clear()

    peak = [idle]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(args.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    traffic = threading.Thread(target=normal, args=(args.url, args.key, stop, latencies))
    traffic.start()
    results = []
    threads = []
    for i in range(args.clients):
        if i % 2 == 0:
            path = f"/webhooks/lianke/{uuid.uuid4()}"
        else:
            path = "/webhooks/wecom?msg_signature=x&timestamp=1&nonce=n"
        t = threading.Thread(target=hostile, args=(host, port, path, size, results))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    time.sleep(0.5)
    stop.set()
    traffic.join()
    sampler.join()
    statuses = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    report = {
        "clients": args.clients,
        "body_mb": args.mb,
        "statuses": statuses,
        "max_bytes_accepted_by_socket_mib": round(max(s for s, _ in results) / 1048576, 2),
        "rss_idle_mib": round(idle, 1),
        "rss_peak_mib": round(peak[0], 1),
        "rss_peak_above_idle_mib": round(peak[0] - idle, 1),
        "normal_requests": len(latencies),
        "normal_p50_ms": round(percentile(latencies, 50), 1),
        "normal_p99_ms": round(percentile(latencies, 99), 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
