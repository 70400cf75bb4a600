#!/usr/bin/env python3
"""Transit's benchmark scenarios, side by side in one run (started by bench/run).

Every scenario runs the same load against each target in turn, repeated and
interleaved (direct, nginx, hyper, Transit, LiteLLM, direct, nginx, ...), so that a
noisy neighbour hurts all targets alike; the table quotes medians over the
repetitions and the ratios between targets.

Targets:
  direct   the mock upstream itself (bench/src/bin/mock-upstream.rs)
  nginx    nginx as a bare reverse proxy in front of it (the physical limit)
  hyper    a bare reverse proxy on Transit's own stack, tokio and hyper
           (bench/src/bin/bare-proxy.rs): the floor of any gateway built on it
  transit  Transit with auth, limits, billing and the Wasm adapter on
  litellm  LiteLLM's proxy, configured to the same mock
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
VENV = os.path.join(ROOT, "target", "bench-venv")

MOCK, NGINX, TRANSIT, LITELLM, MOCK_H2C, HYPER = 9100, 9101, 9102, 9103, 9104, 9105
ADMIN = "bench-admin-token"
LITELLM_KEY = "sk-litellm-bench"

OPENAI_MODELS = ["bench", "bench-i0-n200", "bench-i10-n20", "bench-i10-n200", "bench-i1000-n60"]
CLAUDE_MODELS = ["claude-bench", "claude-bench-i0-n200"]
# Served by a channel that speaks HTTP/2 to the mock's h2c port (memory scenario).
H2C_MODELS = ["h2c-bench-i1000-n60"]

GOALS = {
    "c1_added_p50_us": 50,
    "c1_added_p99_us": 150,
    "c32_vs_nginx": 0.5,
    "c32_vs_litellm": 100,
    "per_chunk_us": 20,
    "ttfc_added_us": 100,
    "idle_rss_mb": 30,
    "rss_10k_streams_mb": 1024,
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200_000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_http(url, timeout=120, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            urllib.request.urlopen(req, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def http_json(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
        return json.loads(text) if text else None


def proc_kb(pids, file, field):
    """The sum over `pids` of a KiB figure in /proc/PID/`file`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{file}") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def rss_kb(pids, field="VmRSS"):
    """Resident memory of `pids` in KiB: all of it (VmRSS, which counts the
    mapped binary and the adapters' compiled code) or only the process's own
    heap and stacks (RssAnon)."""
    return proc_kb(pids, "status", field)


def pss_kb(pids):
    """Proportional resident memory of `pids` in KiB: a page shared by several
    mappings counts once in all. Each adapter instance maps its adapter's
    copy-on-write memory image, and VmRSS counts the image's pages once per
    instance, though they exist once; the kernel's memory accounting (a
    container's limit) charges them once, as PSS does."""
    return proc_kb(pids, "smaps_rollup", "Pss")


def process_tree(pid):
    """pid and all its descendants (LiteLLM runs workers)."""
    out = [pid]
    try:
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
        ).stdout.split()
    except OSError:
        children = []
    for c in children:
        out.extend(process_tree(int(c)))
    return out


class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv, env=None, cwd=None):
        # A process started again under the same name keeps the earlier log.
        path = os.path.join(self.workdir, f"{name}.log")
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.workdir, f"{name}-{n}.log")
        logf = open(path, "w")
        p = subprocess.Popen(
            argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd or self.workdir,
            start_new_session=True,
        )
        self.procs[name] = p
        return p

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def chat_body(model, stream=False):
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark, briefly please."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def anthropic_body(model, stream=False):
    body = {
        "model": model,
        "max_tokens": 64,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "Say hello to the benchmark, briefly please."}],
    }
    if stream:
        body["stream"] = True
    return body


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = io.open(os.getenv("BENCH_BODY")):read("*a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY")
wrk.headers["anthropic-version"] = "2023-06-01"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"errors":%d,"rps":%.1f,"latency":{"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\n',
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.procs = Procs(workdir)
        self.results = {"machine": machine(), "runs": {}, "summary": {}}
        self.transit_key = None
        self.wrk_script = os.path.join(workdir, "post.lua")
        with open(self.wrk_script, "w") as f:
            f.write(WRK_SCRIPT)
        self.bodies = {}

    # ---- setup -------------------------------------------------------------

    def body_file(self, name, body):
        path = os.path.join(self.workdir, f"body-{name}.json")
        if name not in self.bodies:
            with open(path, "w") as f:
                json.dump(body, f)
            self.bodies[name] = path
        return path

    def start_mock(self):
        self.procs.start("mock", [os.path.join(RELEASE, "mock-upstream"), "--port", str(MOCK),
                                  "--h2c-port", str(MOCK_H2C)])
        wait_http(f"http://127.0.0.1:{MOCK}/")

    def start_nginx(self):
        conf = os.path.join(self.workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 2;
worker_rlimit_nofile 200000;
daemon off;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/nginx-error.log warn;
events {{ worker_connections 60000; }}
http {{
  access_log off;
  client_body_temp_path {self.workdir}/nginx-body;
  # The mixed scenario's 1 MB prompts are held in memory, as Transit holds
  # them, not written to temporary files.
  client_max_body_size 4m;
  client_body_buffer_size 4m;
  proxy_temp_path {self.workdir}/nginx-proxy;
  upstream mock {{ server 127.0.0.1:{MOCK}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{NGINX};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.start("nginx", [nginx, "-c", conf, "-p", self.workdir])
        wait_http(f"http://127.0.0.1:{NGINX}/")

    def start_bare_proxy(self):
        self.procs.start("hyper", [os.path.join(RELEASE, "bare-proxy"), "--port", str(HYPER),
                                   "--upstream-port", str(MOCK)])
        wait_http(f"http://127.0.0.1:{HYPER}/")

    def start_transit(self, name="transit", database_url=None, redis=False, credit_lines=True):
        data = os.path.join(self.workdir, name)
        os.makedirs(data, exist_ok=True)
        db = database_url or f"sqlite://{data}/transit.db?mode=rwc"
        env = {
            "TRANSIT_CONFIG": os.path.join(data, "none.toml"),
            "TRANSIT_LISTEN": f"127.0.0.1:{TRANSIT}",
            "TRANSIT_ADMIN_TOKEN": ADMIN,
            "TRANSIT_DATABASE_URL": db,
            "TRANSIT_DATA_DIR": data,
            "TRANSIT_LOG__LEVEL": "warn",
            # Credit lines keep the hold off the request path (see README, Billing).
            "TRANSIT_BILLING__CREDIT_LINE_CALLS": "1000" if credit_lines else "0",
        }
        if redis:
            env["TRANSIT_REDIS_URL"] = "redis://127.0.0.1:6379"
            env["TRANSIT_LIMITS__REDIS_PREFIX"] = f"transit-bench-{os.getpid()}"
        self.procs.start("transit", [os.path.join(RELEASE, "transit")], env=env)
        wait_http(f"http://127.0.0.1:{TRANSIT}/health")
        admin = {"x-admin-token": ADMIN}
        base = f"http://127.0.0.1:{TRANSIT}/admin"
        http_json("POST", f"{base}/channels", {
            "name": "bench-openai", "type": "openai", "secret_key": "sk-upstream-bench",
            "base_url": f"http://127.0.0.1:{MOCK}", "models": OPENAI_MODELS,
            # Room for the memory scenario's 10 000 open streams (default 200).
            "max_concurrency": 100_000,
        }, admin)
        http_json("POST", f"{base}/channels", {
            "name": "bench-claude", "type": "anthropic", "secret_key": "sk-ant-upstream-bench",
            "base_url": f"http://127.0.0.1:{MOCK}", "models": CLAUDE_MODELS,
            "max_concurrency": 100_000,
        }, admin)
        http_json("POST", f"{base}/channels", {
            "name": "bench-h2c", "type": "openai", "secret_key": "sk-upstream-bench",
            "base_url": f"http://127.0.0.1:{MOCK_H2C}", "models": H2C_MODELS,
            "max_concurrency": 100_000, "options": {"http2_prior_knowledge": True},
        }, admin)
        prices = {m: {"model_ratio": 1.0, "completion_ratio": 2.0}
                  for m in OPENAI_MODELS + CLAUDE_MODELS + H2C_MODELS}
        http_json("PUT", f"{base}/pricing", {"models": prices}, admin)
        user = http_json("POST", f"{base}/users", {"username": "bench", "quota": 10**15}, admin)
        token = http_json("POST", f"{base}/tokens", {
            "user_id": user["id"], "name": "bench", "unlimited_quota": True,
            # Limits on, high enough never to refuse: the limiter still runs.
            "max_concurrency": 100_000, "rpm": 100_000_000, "tpm": 10**12,
        }, admin)
        self.transit_key = token["key"]
        return self.procs.procs["transit"].pid

    def start_litellm(self):
        conf = os.path.join(self.workdir, "litellm.yaml")
        lines = ["model_list:"]
        for m in OPENAI_MODELS:
            lines += [f"  - model_name: {m}", "    litellm_params:", f"      model: openai/{m}",
                      f"      api_base: http://127.0.0.1:{MOCK}/v1", "      api_key: sk-upstream-bench"]
        for m in CLAUDE_MODELS:
            lines += [f"  - model_name: {m}", "    litellm_params:", f"      model: anthropic/{m}",
                      f"      api_base: http://127.0.0.1:{MOCK}", "      api_key: sk-ant-upstream-bench"]
        lines += ["general_settings:", f"  master_key: {LITELLM_KEY}",
                  "litellm_settings:", "  telemetry: false", "  drop_params: true"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        exe = os.path.join(VENV, "bin", "litellm")
        self.procs.start("litellm", [exe, "--config", conf, "--host", "127.0.0.1",
                                     "--port", str(LITELLM), "--num_workers", "1"],
                         env={"LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true"})
        wait_http(f"http://127.0.0.1:{LITELLM}/health/liveliness", timeout=240)

    # ---- targets -----------------------------------------------------------

    def url(self, target, path="/v1/chat/completions"):
        port = {"direct": MOCK, "nginx": NGINX, "hyper": HYPER, "transit": TRANSIT,
                "litellm": LITELLM}[target]
        return f"http://127.0.0.1:{port}{path}"

    def key(self, target):
        return {"transit": self.transit_key, "litellm": LITELLM_KEY}.get(target, "sk-upstream-bench")

    # ---- drivers -----------------------------------------------------------

    def wrk(self, target, body_path, conns, path="/v1/chat/completions"):
        env = {**os.environ, "BENCH_BODY": body_path, "BENCH_KEY": self.key(target)}
        argv = ["wrk", "-t1", f"-c{conns}", f"-d{self.args.secs}s", "--timeout", "10s",
                "-s", self.wrk_script, self.url(target, path)]
        out = subprocess.run(argv, capture_output=True, text=True, env=env).stdout
        return last_json(out)

    def loadgen(self, mode, target, body_path, path="/v1/chat/completions", **opts):
        argv = [os.path.join(RELEASE, "loadgen"), mode, "--url", self.url(target, path),
                "--key", self.key(target), "--body", body_path]
        for k, v in opts.items():
            argv += [f"--{k}", str(v)]
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        return last_json(out)

    def record(self, scenario, target, metric, rep, value):
        self.results["runs"].setdefault(scenario, {}).setdefault(target, {}).setdefault(metric, []).append(value)

    def median(self, scenario, target, pick):
        runs = self.results["runs"].get(scenario, {}).get(target, {})
        values = [pick(r) for r in runs.get("raw", [])]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    # ---- scenarios ---------------------------------------------------------

    def closed_loop(self, scenario, targets, body, conns, path="/v1/chat/completions"):
        body_path = self.body_file(scenario, body)
        for rep in range(self.args.reps):
            for t in targets:
                r = self.wrk(t, body_path, conns, path)
                log(f"{scenario} {t} rep {rep}: {r}")
                self.record(scenario, t, "raw", rep, r)

    def open_loop(self, scenario, targets, body, rate):
        body_path = self.body_file(scenario, body)
        for rep in range(self.args.reps):
            for t in targets:
                r = self.loadgen("rate", t, body_path, rate=rate, secs=self.args.secs)
                log(f"{scenario} {t} rep {rep}: {r}")
                self.record(scenario, t, "raw", rep, r)

    def streaming(self, scenario, targets, body, concurrency, total, path="/v1/chat/completions"):
        body_path = self.body_file(scenario, body)
        for rep in range(self.args.reps):
            for t in targets:
                r = self.loadgen("streams", t, body_path, path=path,
                                 concurrency=concurrency, total=total)
                log(f"{scenario} {t} rep {rep}: {r}")
                self.record(scenario, t, "raw", rep, r)

    def mixed(self, scenario, targets, conns, prompt_bytes):
        """Small calls at `conns` connections while one more client sends
        long prompts back to back: what a heavy request does to the others."""
        small = self.body_file(scenario, chat_body("bench"))
        words = "the quick brown fox jumps over the lazy dog while gateways relay tokens "
        text = (words * (prompt_bytes // len(words) + 1))[:prompt_bytes]
        big = json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]}).encode()
        for rep in range(self.args.reps):
            for t in targets:
                stop = threading.Event()
                sent = {"ok": 0, "failed": 0}

                def pump(t=t, stop=stop, sent=sent):
                    while not stop.is_set():
                        req = urllib.request.Request(self.url(t), data=big, headers={
                            "authorization": f"Bearer {self.key(t)}",
                            "content-type": "application/json"})
                        try:
                            urllib.request.urlopen(req, timeout=30).read()
                            sent["ok"] += 1
                        except OSError:
                            sent["failed"] += 1

                pumper = threading.Thread(target=pump, daemon=True)
                pumper.start()
                r = self.wrk(t, small, conns)
                stop.set()
                pumper.join()
                r["long_prompts"] = sent["ok"]
                r["long_prompt_errors"] = sent["failed"]
                log(f"{scenario} {t} rep {rep}: {r}")
                self.record(scenario, t, "raw", rep, r)

    def memory(self, transit_pid, litellm_pids):
        mem = self.results.setdefault("memory", {})
        mem["transit_idle_mb"] = rss_kb([transit_pid]) / 1024
        if litellm_pids:
            mem["litellm_idle_mb"] = rss_kb(litellm_pids) / 1024
        nginx = self.procs.procs.get("nginx")
        if nginx:
            mem["nginx_idle_mb"] = rss_kb(process_tree(nginx.pid)) / 1024
        bodies = {
            # HTTP/1.1 to the upstream: each open stream is two sockets in the
            # gateway (the client's and the upstream's).
            "": self.body_file("hold", chat_body("bench-i1000-n60", stream=True)),
            # HTTP/2 to the upstream (as to an https:// provider, or an h2c
            # server): the streams share one upstream connection, so each
            # is one socket in the gateway.
            "_h2c": self.body_file("hold-h2c", chat_body(H2C_MODELS[0], stream=True)),
        }
        fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        for n in self.args.hold:
            for via, body_path in bodies.items():
                need = (n if via else 2 * n) + 512
                if fds < need:
                    # Past the limit the last upstream connections fail
                    # (502, "Too many open files").
                    log(f"memory: {n} streams{via.replace('_', ' over ')} need about {need} file "
                        f"descriptors; the limit here is {fds}, so some streams will fail")
                self.hold(transit_pid, n, via, body_path)
        mem["transit_after_mb"] = rss_kb([transit_pid]) / 1024

    def hold(self, transit_pid, n, via, body_path):
        """Transit's memory with `n` slow streams open."""
        mem = self.results["memory"]
        argv = [os.path.join(RELEASE, "loadgen"), "hold", "--url", self.url("transit"),
                "--key", self.transit_key, "--body", body_path, "--open", str(n)]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = p.stdout.readline()
        opened = json.loads(line) if line.startswith("{") else {"open": 0, "failed": n}
        peak = rss_kb([transit_pid]) / 1024
        mem[f"transit_{n}_streams{via}_mb"] = peak
        mem[f"transit_{n}_streams{via}_anon_mb"] = rss_kb([transit_pid], "RssAnon") / 1024
        mem[f"transit_{n}_streams{via}_pss_mb"] = pss_kb([transit_pid]) / 1024
        mem[f"transit_{n}_streams{via}_open"] = opened
        log(f"memory: {n} streams{via.replace('_', ' over ')} {opened}: transit RSS {peak:.1f} MB")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(3)

    # ---- the run -----------------------------------------------------------

    def run(self):
        only = set(self.args.only.split(",")) if self.args.only else None
        want = lambda s: only is None or s in only
        log("starting the mock upstream, nginx, the bare hyper proxy, Transit and LiteLLM")
        self.start_mock()
        self.start_nginx()
        self.start_bare_proxy()
        mem = self.results.setdefault("memory", {})
        # A first boot compiles the built-in adapters into the adapter cache;
        # a gateway restarted on its data directory maps them from there.
        # Idle memory is measured both ways: on a throwaway first boot, and
        # on the gateway that serves every scenario, started on a copy of
        # that cache (the goal is judged on the latter: a running gateway's
        # footprint, not a first compile's leftovers).
        self.start_transit(name="transit-first-boot")
        time.sleep(1)
        first = self.procs.procs["transit"].pid
        mem["transit_idle_first_boot_mb"] = rss_kb([first]) / 1024
        mem["transit_idle_first_boot_anon_mb"] = rss_kb([first], "RssAnon") / 1024
        self.procs.stop("transit")
        shutil.copytree(os.path.join(self.workdir, "transit-first-boot", "adapter-cache"),
                        os.path.join(self.workdir, "transit", "adapter-cache"))
        transit_pid = self.start_transit()
        litellm_pids = []
        if not self.args.no_litellm:
            self.start_litellm()
            litellm_pids = process_tree(self.procs.procs["litellm"].pid)
        time.sleep(1)
        idle_transit = rss_kb([transit_pid]) / 1024
        mem["transit_idle_before_load_mb"] = idle_transit
        mem["transit_idle_before_load_anon_mb"] = rss_kb([transit_pid], "RssAnon") / 1024
        everyone = ["direct", "nginx", "hyper", "transit"] + ([] if self.args.no_litellm else ["litellm"])
        proxies = ["direct", "nginx", "hyper", "transit"]

        # Warm every path once (connection pools, adapter instances, caches).
        self.closed_loop("warmup", everyone, chat_body("bench"), 4)
        self.results["runs"].pop("warmup", None)

        if want("openai"):
            self.closed_loop("openai_c1", everyone, chat_body("bench"), 1)
            self.closed_loop("openai_c32", everyone, chat_body("bench"), 32)
            for rate in self.args.rates:
                self.open_loop(f"openai_rate{rate}", proxies, chat_body("bench"), rate)
        if want("anthropic"):
            # OpenAI in, Anthropic out: the Wasm adapter translates both ways.
            # "direct" is a native Anthropic call to the same mock.
            a_targets = ["transit"] + ([] if self.args.no_litellm else ["litellm"])
            self.closed_loop("anthropic_direct_c1", ["direct"],
                             anthropic_body("claude-bench"), 1, path="/v1/messages")
            self.closed_loop("anthropic_c1", a_targets, chat_body("claude-bench"), 1)
            self.closed_loop("anthropic_c32", a_targets, chat_body("claude-bench"), 32)
            self.streaming("anthropic_direct_stream", ["direct"],
                           anthropic_body("claude-bench-i0-n200", stream=True), 1, 20, path="/v1/messages")
            self.streaming("anthropic_stream", a_targets,
                           chat_body("claude-bench-i0-n200", stream=True), 1, 20)
        if want("streaming"):
            # Per-chunk cost: 200 chunks sent back to back, one stream at a time.
            self.streaming("stream_c1", everyone, chat_body("bench-i0-n200", stream=True), 1, 20)
            # Time to first chunk as a model streams it: 20 chunks 10 ms
            # apart, so the first arrives alone (back to back, the first read
            # holds many chunks, all translated before the first goes out).
            self.streaming("stream_paced_c1", everyone, chat_body("bench-i10-n20", stream=True), 1, 20)
            # 1000 concurrent streams of 200 chunks, 10 ms apart.
            self.streaming("stream_1000", proxies, chat_body("bench-i10-n200", stream=True),
                           self.args.streams, self.args.streams)
        if want("mixed"):
            # Small calls alone, then with 1 MB prompts sent back to back
            # beside them.
            self.closed_loop("mixed_quiet_c4", proxies, chat_body("bench"), 4)
            self.mixed("mixed_long_prompts_c4", proxies, 4, 1_000_000)
        if want("memory"):
            self.memory(transit_pid, litellm_pids)
        if want("backends"):
            # A hold per call in the database ("strict": credit lines off),
            # and limits in Redis with billing on SQLite and PostgreSQL.
            self.procs.stop("transit")
            pg = self.postgres_url()
            configs = [
                ("strict_sqlite", None, False, False),
                ("redis_sqlite", None, True, True),
                ("redis_postgres", pg, True, True),
                ("strict_redis_postgres", pg, True, False),
            ]
            for name, url, redis, lines in configs:
                if url is False:
                    continue
                if url is not None:
                    self.reset_postgres()
                self.start_transit(name=name, database_url=url, redis=redis, credit_lines=lines)
                self.closed_loop(f"{name}_c1", ["direct", "transit"], chat_body("bench"), 1)
                self.closed_loop(f"{name}_c32", ["direct", "transit"], chat_body("bench"), 32)
                self.procs.stop("transit")
        self.summarise()

    def postgres_url(self):
        url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
        name = f"transit_bench_{os.getpid()}"
        try:
            subprocess.run(["psql", url + "/postgres", "-qc", f"CREATE DATABASE {name}"],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            log(f"PostgreSQL unavailable, skipping its scenario: {e}")
            return False
        self.pg_database = (url, name)
        return f"{url}/{name}"

    def reset_postgres(self):
        url, name = self.pg_database
        subprocess.run(["psql", url + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"],
                       capture_output=True)
        subprocess.run(["psql", url + "/postgres", "-qc", f"CREATE DATABASE {name}"],
                       capture_output=True, check=True)

    def cleanup(self):
        self.procs.stop_all()
        pg = getattr(self, "pg_database", None)
        if pg:
            subprocess.run(["psql", pg[0] + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {pg[1]}"],
                           capture_output=True)

    # ---- the table ---------------------------------------------------------

    def summarise(self):
        s = self.results["summary"]
        p = lambda k: (lambda r: r["latency"][k] if r else None)
        rps = lambda r: r["rps"] if r else None
        rows = []

        def row(scenario, target, metric, value, unit):
            if value is not None:
                rows.append((scenario, target, metric, value, unit))
                s.setdefault(scenario, {}).setdefault(target, {})[metric] = value

        for scenario, targets in self.results["runs"].items():
            for target, runs in targets.items():
                sample = runs["raw"][0] if runs["raw"] else None
                if sample is None:
                    continue
                if "ttfc" in sample:
                    for m in ("ttfc", "gap", "duration"):
                        for q in ("p50_us", "p99_us"):
                            row(scenario, target, f"{m}_{q}",
                                self.median(scenario, target, lambda r, m=m, q=q: r[m][q]), "µs")
                    row(scenario, target, "errors",
                        self.median(scenario, target, lambda r: r["errors"]), "")
                else:
                    row(scenario, target, "rps", self.median(scenario, target, rps), "req/s")
                    for q in ("p50_us", "p90_us", "p99_us"):
                        row(scenario, target, q, self.median(scenario, target, p(q)), "µs")
                    row(scenario, target, "errors",
                        self.median(scenario, target, lambda r: r["errors"]), "")
                    if "long_prompts" in sample:
                        row(scenario, target, "long_prompts",
                            self.median(scenario, target, lambda r: r["long_prompts"]), "served")
                        row(scenario, target, "long_prompt_errors",
                            self.median(scenario, target, lambda r: r["long_prompt_errors"]), "")

        goals = {}
        g = lambda sc, t, m: s.get(sc, {}).get(t, {}).get(m)
        if g("openai_c1", "transit", "p50_us") is not None:
            goals["c1_added_p50_us"] = g("openai_c1", "transit", "p50_us") - g("openai_c1", "direct", "p50_us")
            goals["c1_added_p99_us"] = g("openai_c1", "transit", "p99_us") - g("openai_c1", "direct", "p99_us")
            goals["c1_nginx_added_p50_us"] = g("openai_c1", "nginx", "p50_us") - g("openai_c1", "direct", "p50_us")
            goals["c32_vs_nginx"] = g("openai_c32", "transit", "rps") / g("openai_c32", "nginx", "rps")
            # Unjudged: the same figures for the bare proxy on Transit's own
            # stack, which split Transit's cost into the stack's and its own.
            if g("openai_c1", "hyper", "p50_us") is not None:
                goals["c1_hyper_added_p50_us"] = (g("openai_c1", "hyper", "p50_us")
                                                  - g("openai_c1", "direct", "p50_us"))
                goals["c32_hyper_vs_nginx"] = g("openai_c32", "hyper", "rps") / g("openai_c32", "nginx", "rps")
                goals["c32_vs_hyper"] = g("openai_c32", "transit", "rps") / g("openai_c32", "hyper", "rps")
            if g("openai_c32", "litellm", "rps"):
                goals["c32_vs_litellm"] = g("openai_c32", "transit", "rps") / g("openai_c32", "litellm", "rps")
        if g("stream_c1", "transit", "duration_p50_us") is not None:
            goals["per_chunk_us"] = (g("stream_c1", "transit", "duration_p50_us")
                                     - g("stream_c1", "direct", "duration_p50_us")) / 200
            goals["ttfc_added_back_to_back_us"] = (g("stream_c1", "transit", "ttfc_p50_us")
                                                   - g("stream_c1", "direct", "ttfc_p50_us"))
        if g("stream_paced_c1", "transit", "ttfc_p50_us") is not None:
            goals["ttfc_added_us"] = (g("stream_paced_c1", "transit", "ttfc_p50_us")
                                      - g("stream_paced_c1", "direct", "ttfc_p50_us"))
            if g("stream_paced_c1", "hyper", "ttfc_p50_us") is not None:
                goals["ttfc_hyper_added_us"] = (g("stream_paced_c1", "hyper", "ttfc_p50_us")
                                                - g("stream_paced_c1", "direct", "ttfc_p50_us"))
        mem = self.results.get("memory", {})
        if "transit_idle_mb" in mem:
            goals["idle_rss_mb"] = mem["transit_idle_before_load_mb"]
            goals["idle_rss_anon_mb"] = mem["transit_idle_before_load_anon_mb"]
        # A memory figure with streams missing (refused, or Transit gone)
        # proves nothing: the goal is not met.
        short = set()
        # Judged on HTTP/1.1 to the upstream when all its streams opened,
        # else on HTTP/2 (one socket per stream: under a limit of 20 000
        # file descriptors, 10 000 streams over HTTP/1.1 cannot all open).
        complete = {via: mem[f"transit_10000_streams{via}_mb"] for via in ("", "_h2c")
                    if mem.get(f"transit_10000_streams{via}_open", {}).get("open", 0) >= 10000
                    and mem.get(f"transit_10000_streams{via}_mb")}
        for via in ("", "_h2c"):
            if f"transit_10000_streams{via}_mb" in mem:
                # Unjudged: each way's figure, and the same memory with
                # shared pages counted once.
                goals[f"rss_10k_streams{via or '_h1'}_mb"] = mem[f"transit_10000_streams{via}_mb"]
                goals[f"pss_10k_streams{via or '_h1'}_mb"] = mem[f"transit_10000_streams{via}_pss_mb"]
        if "transit_10000_streams_mb" in mem or "transit_10000_streams_h2c_mb" in mem:
            judged = next(iter(complete), None)
            goals["rss_10k_streams_mb"] = complete.get(judged, 0.0)
            if judged is None:
                short.add("rss_10k_streams_mb")
            else:
                log(f"goal rss_10k_streams_mb: judged over {'HTTP/2' if judged else 'HTTP/1.1'} "
                    "to the upstream")
        self.results["goals"] = {
            k: {"measured": round(v, 2), "goal": GOALS.get(k),
                "met": None if k not in GOALS else False if k in short
                else (v >= GOALS[k] if k.startswith("c32_vs") else v <= GOALS[k])}
            for k, v in goals.items()
        }

        print()
        print(f"{'scenario':<26}{'target':<9}{'metric':<18}{'median':>14}")
        for scenario, target, metric, value, unit in rows:
            v = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
            print(f"{scenario:<26}{target:<9}{metric:<18}{v:>14} {unit}")
        if mem:
            print()
            for k, v in mem.items():
                print(f"memory  {k:<36} {v if isinstance(v, dict) else f'{v:,.1f} MB'}")
        print()
        print(f"{'goal':<24}{'measured':>12}{'goal':>10}  met")
        for k, v in self.results["goals"].items():
            goal = "" if v["goal"] is None else v["goal"]
            met = "" if v["met"] is None else ("yes" if v["met"] else "NO")
            print(f"{k:<24}{v['measured']:>12,}{goal:>10}  {met}")


def last_json(out):
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def machine():
    info = {"cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (interleaved)")
    ap.add_argument("--secs", type=int, default=5, help="seconds per wrk/loadgen run")
    ap.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[500, 1000, 2000])
    ap.add_argument("--streams", type=int, default=1000, help="concurrent streams in stream_1000")
    ap.add_argument("--hold", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 10000],
                    help="slow streams held open for the memory scenario")
    ap.add_argument("--only", help="comma list of: openai, anthropic, streaming, mixed, memory, backends")
    ap.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    ap.add_argument("--quick", action="store_true", help="one short repetition (smoke run)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    args = ap.parse_args()
    if args.quick:
        args.reps, args.secs, args.rates, args.streams, args.hold = 1, 2, [500], 100, [100]
    raise_fd_limit()
    workdir = tempfile.mkdtemp(prefix="transit-bench-")
    bench = Bench(args, workdir)
    try:
        bench.run()
    finally:
        bench.cleanup()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(bench.results, f, indent=2)
    log(f"results: {args.out} (logs in {workdir})")


if __name__ == "__main__":
    main()
