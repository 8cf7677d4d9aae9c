#!/usr/bin/env python3
"""cobalt's benchmark: one command, a table of figures and a plot.

    bash bench/run.sh            # full run (about 10 minutes), as root
    bash bench/run.sh --smoke    # a few seconds: checks that it all works

Starts a throwaway PostgreSQL 15 cluster with cobalt and nginx as a fast
stand-in for Cobalt (bench/nginx.conf.in), measures nginx's own capacity
with wrk, then the figures of issue 5: submit cost against a plain insert,
drain throughput, steady polling, latencies, the same with a million
finished jobs in the table, and the worker's memory.  Each figure is the
median of several runs, with min and max.  Writes bench/results/latest.md
(the table) and bench/results/latest.png (the plot).
"""
import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"
HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD = ('{"mrn":"1234","location":"L1","provider":"P1","type":"follow-up",'
           '"datetime":"2026-12-01T10:00:00-05:00"}')


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, smoke, runs):
        self.smoke = smoke
        self.runs = 1 if smoke else runs
        self.dir = tempfile.mkdtemp(prefix="cobalt-bench.")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.pg_port = free_port()
        self.http_port = free_port()
        self.rows = []          # (figure, median, min, max, goal, note)
        self.series = {}        # plot data

    # ---- infrastructure

    def psql(self, sql, db="bench"):
        out = run(["runuser", "-u", "postgres", "--", BIN + "/psql", "-X", "-q", "-A", "-t",
                   "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-p", str(self.pg_port), "-d", db],
                  input=sql)
        return out.stdout.strip()

    def start(self):
        data = self.dir + "/data"
        run(["runuser", "-u", "postgres", "--", BIN + "/initdb", "-D", data, "-A", "trust",
             "-E", "UTF8", "--no-sync"])
        with open(data + "/postgresql.conf", "a") as f:
            f.write(f"""
port = {self.pg_port}
listen_addresses = ''
unix_socket_directories = '{self.dir}'
shared_preload_libraries = 'cobalt'
cobalt.database_name = 'bench'
cobalt.api_url = 'http://127.0.0.1:{self.http_port}/v1'
cobalt.poll_interval = '1s'
cobalt.max_concurrent_requests = 64
shared_buffers = '512MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'
""")
        run(["runuser", "-u", "postgres", "--", BIN + "/pg_ctl", "-D", data, "-l",
             self.dir + "/server.log", "-w", "start"])
        with open(os.path.join(HERE, "nginx.conf.in")) as f:
            conf = f.read().replace("@DIR@", self.dir).replace("@PORT@", str(self.http_port))
        with open(self.dir + "/nginx.conf", "w") as f:
            f.write(conf)
        run(["nginx", "-c", self.dir + "/nginx.conf", "-p", self.dir])
        for db in ("bench", "bench_submit"):
            run(["runuser", "-u", "postgres", "--", BIN + "/createdb", "-h", self.dir,
                 "-p", str(self.pg_port), db])
            self.psql("CREATE EXTENSION cobalt;"
                      "SELECT cobalt_set_client('ci_bench', 'cs_bench');"
                      "SELECT cobalt_add_account('clinic-a', 'at_bench');", db=db)

    def stop(self):
        subprocess.run(["nginx", "-c", self.dir + "/nginx.conf", "-p", self.dir, "-s", "stop"],
                       capture_output=True)
        subprocess.run(["runuser", "-u", "postgres", "--", BIN + "/pg_ctl", "-D",
                        self.dir + "/data", "-m", "fast", "stop"], capture_output=True)

    def worker_pid(self):
        for _ in range(100):
            pid = self.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'")
            if pid:
                return int(pid)
            time.sleep(0.1)
        raise RuntimeError("no cobalt worker")

    def restart_worker(self):
        old = self.worker_pid()
        self.psql(f"SELECT pg_terminate_backend({old})")
        for _ in range(200):
            pid = self.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'")
            if pid and int(pid) != old:
                return int(pid)
            time.sleep(0.1)
        raise RuntimeError("the worker did not come back")

    def access_log(self):
        """(time, method, request_id, job_id) lines logged so far."""
        time.sleep(1.2)     # the log buffer is flushed every second
        lines = []
        with open(self.dir + "/access.log") as f:
            for line in f:
                parts = line.split(" ")
                lines.append((float(parts[0]), parts[1], parts[2],
                              parts[3].strip() if len(parts) > 3 else ""))
        return lines

    def clear_access_log(self):
        open(self.dir + "/access.log", "w").close()
        run(["nginx", "-c", self.dir + "/nginx.conf", "-p", self.dir, "-s", "reopen"])
        time.sleep(0.2)

    def add(self, figure, values, unit, goal="", fmt="{:.0f}"):
        values = [v for v in values if v is not None]
        med = statistics.median(values)
        self.rows.append((figure, fmt.format(med) + " " + unit, fmt.format(min(values)),
                          fmt.format(max(values)), goal))
        print(f"  {figure}: {fmt.format(med)} {unit} (min {fmt.format(min(values))}, "
              f"max {fmt.format(max(values))})", flush=True)
        return med

    # ---- figures

    def server_capacity(self):
        secs = "2s" if self.smoke else "5s"
        out = run(["wrk", "-t2", "-c64", "-d" + secs,
                   f"http://127.0.0.1:{self.http_port}/v1/webhook-events?job_id=1"]).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        self.capacity = self.add("stand-in server capacity (wrk, 64 connections)", [rps], "req/s")

    def submit_cost(self):
        secs = 2 if self.smoke else 20
        self.psql("CREATE TABLE plain_jobs (LIKE cobalt.jobs INCLUDING ALL);", db="bench_submit")
        scripts = {
            "submit": f"SELECT cobalt_submit('appointment.create', '{PAYLOAD}');\n",
            "plain": ("INSERT INTO plain_jobs (operation, account, payload, submitted_by, next_due_at) "
                      f"VALUES ('appointment.create', 'clinic-a', '{PAYLOAD}', current_user, now());\n"),
        }
        tps = {"submit": [], "plain": []}
        for _ in range(self.runs):
            for name, sql in scripts.items():
                path = f"{self.dir}/{name}.sql"
                with open(path, "w") as f:
                    f.write(sql)
                out = run(["runuser", "-u", "postgres", "--", BIN + "/pgbench", "-n", "-c", "4", "-j", "2",
                           "-T", str(secs), "-f", path, "-h", self.dir, "-p", str(self.pg_port),
                           "bench_submit"]).stdout
                tps[name].append(float(re.search(r"tps = ([\d.]+) \(without", out).group(1)))
        s = self.add("submit: pgbench 4 clients, cobalt_submit", tps["submit"], "tps")
        p = self.add("submit: pgbench 4 clients, plain INSERT", tps["plain"], "tps")
        self.add("submit: ratio cobalt_submit / plain INSERT",
                 [a / b for a, b in zip(tps["submit"], tps["plain"])], "", "≥ 0.8", "{:.2f}")
        per_job = []
        for _ in range(self.runs):
            out = self.psql("\\timing on\nSELECT count(cobalt_submit('appointment.create', "
                            f"'{PAYLOAD}')) FROM generate_series(1, 1000);", db="bench_submit")
            ms = float(re.search(r"Time: ([\d.]+) ms", out).group(1))
            per_job.append(ms * 1000 / 1000)
        self.add("submit: 1,000 jobs in one statement, per job", per_job, "µs")
        return s, p

    def clear_recent(self):
        """Remove the jobs of earlier measurements, keeping the history
        rows (two days old) of the scale runs."""
        self.psql("DELETE FROM cobalt.jobs WHERE created_at > now() - interval '1 day'")
        # measure a steady state, not the dead rows of the previous run
        self.psql("VACUUM cobalt.jobs")

    def drain(self, n, label):
        """Submit n jobs in one transaction; seconds until all succeeded."""
        self.clear_recent()
        t_commit = None
        self.psql(f"SELECT count(cobalt_submit('appointment.create', '{PAYLOAD}')) "
                  f"FROM generate_series(1, {n})")
        t_commit = time.time()
        deadline = t_commit + 120 + n / 500
        while time.time() < deadline:
            # the jobs not yet succeeded are exactly those still due; the
            # end is read from finished_at below, so this check only needs
            # to be cheap (it shares the machine with what it measures)
            if self.psql("SELECT EXISTS (SELECT FROM cobalt.jobs WHERE next_due_at IS NOT NULL)") == "f":
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"drain of {n} jobs did not finish")
        recent = "created_at > now() - interval '1 day'"
        if self.psql(f"SELECT count(*) FROM cobalt.jobs WHERE {recent} AND state <> 'succeeded'") != "0":
            raise RuntimeError("some drained jobs did not succeed")
        end = float(self.psql(f"SELECT extract(epoch FROM max(finished_at)) FROM cobalt.jobs WHERE {recent}"))
        times = self.psql(f"SELECT extract(epoch FROM finished_at) FROM cobalt.jobs WHERE {recent} ORDER BY 1")
        self.series.setdefault(label, [float(t) - t_commit for t in times.split()])
        return end - t_commit

    def drain_throughput(self, label, n=None):
        n = n or (500 if self.smoke else 20000)
        rates = []
        for _ in range(self.runs):
            rates.append(n / self.drain(n, label))
        rate = self.add(f"drain{label}: {n:,} jobs (1 POST + 1 poll each)", rates, "jobs/s", "≥ 5,000")
        self.add(f"drain{label}: HTTP requests/s, ratio to the stand-in's capacity",
                 [2 * r / self.capacity for r in rates], "", "", "{:.2f}")
        return rate

    def steady_polling(self):
        n = 300 if self.smoke else 10000
        window = 3 if self.smoke else 10
        self.psql("TRUNCATE cobalt.jobs CASCADE")
        self.psql("INSERT INTO cobalt.jobs (operation, account, payload, state, remote_job_id, attempts, "
                  "accepted_at, timeout_at, next_due_at) "
                  "SELECT 'appointment.create', 'clinic-a', '{}', 'polling', 'p-' || i, 1, now(), "
                  f"now() + interval '1 day', now() + interval '1 day' FROM generate_series(1, {n}) i")
        rates, cpus = [], []
        for _ in range(self.runs):
            pid = self.restart_worker()
            time.sleep(3)           # every job polled at least once, the schedule settled
            self.clear_access_log()
            cpu0 = self.cpu_seconds(pid)
            t0 = time.time()
            time.sleep(window)
            cpu1 = self.cpu_seconds(pid)
            t1 = time.time()
            polls = [line for line in self.access_log() if t0 <= line[0] < t1 and line[3].startswith("p-")]
            rates.append(len(polls) / (t1 - t0))
            cpus.append(100 * (cpu1 - cpu0) / (t1 - t0))
        self.add(f"steady polling: {n:,} jobs at 1 s, polls/s", rates, "polls/s", f"{n:,}")
        self.add("steady polling: worker CPU", cpus, "%", "", "{:.1f}")
        self.psql("TRUNCATE cobalt.jobs CASCADE")

    @staticmethod
    def cpu_seconds(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def rss_mb(pid, field="VmRSS"):
        """VmRSS counts the shared buffers the worker has touched; RssAnon
        is its private memory."""
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(field + r":\s+(\d+)", f.read()).group(1)) / 1024

    def latencies(self, label):
        """Commit -> request at the server, at idle and under load; event -> state."""
        count = 10 if self.smoke else 200
        idle, event = [], []
        for _ in range(self.runs):
            self.clear_recent()
            self.clear_access_log()
            for _ in range(count):
                self.psql(f"SELECT cobalt_submit('appointment.create', '{PAYLOAD}')")
                time.sleep(0.02)
            time.sleep(2.5)
            idle.append(self.commit_to_request(series=f"idle{label}"))
            event.append(self.event_to_state())
        p = [statistics.median([x[0] for x in idle]), max(x[1] for x in idle)]
        self.add(f"latency{label}: commit → request at server, idle, p50", [x[0] for x in idle], "ms", "", "{:.1f}")
        self.add(f"latency{label}: commit → request at server, idle, p99", [x[1] for x in idle], "ms", "< 20", "{:.1f}")
        self.add(f"latency{label}: event available → state committed, p99", [x[1] for x in event],
                 "ms", "≤ 1,050", "{:.0f}")
        # under load: 500 submits/s from 4 clients for a while
        loaded = []
        secs = 3 if self.smoke else 10
        for _ in range(self.runs):
            self.clear_recent()
            self.clear_access_log()
            path = f"{self.dir}/load.sql"
            with open(path, "w") as f:
                f.write(f"SELECT cobalt_submit('appointment.create', '{PAYLOAD}');\n")
            run(["runuser", "-u", "postgres", "--", BIN + "/pgbench", "-n", "-c", "4", "-j", "2", "-R", "500",
                 "-T", str(secs), "-f", path, "-h", self.dir, "-p", str(self.pg_port), "bench"])
            time.sleep(2.5)
            loaded.append(self.commit_to_request(series=f"under load{label}"))
        self.add(f"latency{label}: commit → request at server, 500 submits/s, p99", [x[1] for x in loaded],
                 "ms", "≪ 1,000", "{:.1f}")
        return p

    def commit_to_request(self, series):
        posts = {rid: t for t, method, rid, _ in self.access_log() if method == "POST"}
        rows = self.psql("SELECT remote_job_id, extract(epoch FROM created_at) FROM cobalt.jobs "
                         "WHERE remote_job_id IS NOT NULL AND created_at > now() - interval '1 day'")
        lat = sorted(1000 * (posts[r] - float(c)) for r, c in (x.split("|") for x in rows.split("\n") if x)
                     if r in posts)
        self.series.setdefault(series, lat)
        return statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]

    def event_to_state(self):
        posts = {rid: t for t, method, rid, _ in self.access_log() if method == "POST"}
        rows = self.psql("SELECT remote_job_id, extract(epoch FROM finished_at) FROM cobalt.jobs "
                         "WHERE state = 'succeeded' AND created_at > now() - interval '1 day'")
        lat = sorted(1000 * (float(f) - posts[r]) for r, f in (x.split("|") for x in rows.split("\n") if x)
                     if r in posts)
        return statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]

    def with_history(self):
        n = 20000 if self.smoke else 1000000
        self.psql("TRUNCATE cobalt.jobs CASCADE")
        self.psql("INSERT INTO cobalt.jobs (operation, account, payload, state, remote_job_id, attempts, "
                  "created_at, sent_at, accepted_at, finished_at, event_type, result) "
                  "SELECT 'appointment.create', 'clinic-a', '{\"mrn\":\"1\"}', 'succeeded', 'h-' || i, 1, "
                  "now() - interval '2 days', now() - interval '2 days', now() - interval '2 days', "
                  "now() - interval '2 days', 'appointment.created', '{}' "
                  f"FROM generate_series(1, {n}) i")
        self.psql("VACUUM ANALYZE cobalt.jobs")
        self.psql("CHECKPOINT")
        return n

    def memory(self):
        small, big = (500, 5000) if self.smoke else (20000, 200000)
        pid = self.worker_pid()
        self.drain(small, " (memory)")
        rss_small = self.rss_mb(pid)
        anon_small = self.rss_mb(pid, "RssAnon")
        done = small
        while done < big:
            self.drain(min(20000, big - done), " (memory)")
            done += min(20000, big - done)
        rss_big = self.rss_mb(pid)
        anon_big = self.rss_mb(pid, "RssAnon")
        if self.worker_pid() != pid:
            raise RuntimeError("the worker restarted during the memory run")
        self.add(f"worker private memory (RssAnon) after {small:,} jobs", [anon_small], "MB", "", "{:.1f}")
        self.add(f"worker private memory (RssAnon) after {big:,} jobs", [anon_big], "MB",
                 "< 64, within 10%", "{:.1f}")
        self.add(f"worker RSS incl. shared buffers touched, after {small:,} jobs", [rss_small], "MB", "", "{:.1f}")
        self.add(f"worker RSS incl. shared buffers touched, after {big:,} jobs", [rss_big], "MB", "", "{:.1f}")

    # ---- output

    def write(self, outdir):
        os.makedirs(outdir, exist_ok=True)
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        head = (f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
                f"({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, PostgreSQL 15, "
                f"nginx as the stand-in; median of {self.runs} run(s).\n\n")
        table = "| figure | median | min | max | goal |\n|---|---|---|---|---|\n"
        table += "".join(f"| {a} | {b} | {c} | {d} | {e} |\n" for a, b, c, d, e in self.rows)
        with open(outdir + "/latest.md", "w") as f:
            f.write(head + table)
        print("\n" + head + table)
        self.plot(outdir)

    def plot(self, outdir):
        self.series.pop(" (memory)", None)
        drains = [k for k in self.series if k.startswith(" (") or k == ""]
        files = []
        for k in self.series:
            path = f"{self.dir}/series-{len(files)}.dat"
            with open(path, "w") as f:
                data = self.series[k]
                for i, v in enumerate(data):
                    if k in drains:
                        f.write(f"{v:.4f} {i + 1}\n")
                    else:
                        f.write(f"{v:.3f} {(i + 1) / len(data):.4f}\n")
            files.append((k, path))
        drain_plots = ", ".join(f"'{p}' using 1:2 with lines title 'drain{k}'"
                                for k, p in files if k in drains)
        lat_plots = ", ".join(f"'{p}' using 1:2 with lines title 'commit → request, {k}'"
                              for k, p in files if k not in drains)
        script = f"""
set terminal pngcairo size 1200,500 font ',10' noenhanced
set output '{outdir}/latest.png'
set multiplot layout 1,2
set title 'Drain: jobs succeeded since commit'
set xlabel 'seconds after the submitting commit'
set ylabel 'jobs succeeded'
set key left top
plot {drain_plots or "0 notitle"}
set title 'Latency: submit commit → request at the server (CDF)'
set xlabel 'milliseconds'
set ylabel 'fraction of jobs'
set logscale x
set key right bottom
plot {lat_plots or "0 notitle"}
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="a few seconds, small sizes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    b = Bench(args.smoke, args.runs)
    # a SIGTERM still stops the cluster and nginx (through the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.start()
        print("== stand-in capacity", flush=True)
        b.server_capacity()
        print("== submit cost", flush=True)
        b.submit_cost()
        print("== drain and latency, empty table", flush=True)
        b.drain_throughput("")
        b.latencies("")
        print("== steady polling", flush=True)
        b.steady_polling()
        print("== memory", flush=True)
        b.memory()
        print("== drain and latency with history", flush=True)
        n = b.with_history()
        b.drain_throughput(f" ({n:,} finished jobs in the table)")
        b.latencies(f" ({n:,} finished)")
        b.write(args.out if not args.smoke else os.path.join(b.dir, "results"))
        if args.smoke:
            print("bench smoke: 1 passed, 0 failed")
    except Exception as e:      # report, clean up, fail
        print(f"bench failed: {e}", file=sys.stderr)
        if args.smoke:
            print("bench smoke: 0 passed, 1 failed")
        sys.exit(1)
    finally:
        b.stop()
        shutil.rmtree(b.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
