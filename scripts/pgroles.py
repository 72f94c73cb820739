#!/usr/bin/env python3
"""PostgreSQL's CPU per request by backend role, during a `hub roundtrip` run.

Usage (as root or the postgres user, PostgreSQL on 127.0.0.1:5432 with pg_stat_statements):
    hub roundtrip -dialect orderpay -store postgres -rate 1000 -duration 10s ... &
    python3 scripts/pgroles.py [settle seconds, default 2.5] [window seconds, default 6]

It waits until the database commits more than 2 000 transactions a second (the run has
started), lets it settle, then samples utime+stime (/proc/<pid>/stat) and read/write system
calls (/proc/<pid>/io) of every postgres process over the window, and classifies each by
pg_stat_activity: the event bus's listener (application_name posgate-events) and notice
sender (posgate-events-send; before it had a name, the backend whose last query was the
pg_notify), the other client backends of the bench's database (the store's pools: the
statements; backends of other databases are counted apart), and the auxiliary processes (walwriter, checkpointer, autovacuum, ...).
Per request means per answer stored (calls of the answer's UPDATE in pg_stat_statements,
reset at the window's start), so a run that falls behind its pace is still counted right.
posgate's own CPU in the same window is printed too (every posgate process on the machine). A listener's reads are its wake-ups
(it reads its signalfd once per NOTIFY commit it is signalled for); network sends and
receives are not in /proc/<pid>/io.
"""
import collections
import os
import subprocess
import sys
import time

HZ = os.sysconf('SC_CLK_TCK')


def psql(q):
    return subprocess.run(['psql', '-h', '127.0.0.1', '-U', 'postgres', '-AtF', '|', '-c', q],
                          capture_output=True, text=True).stdout.strip().splitlines()


def classify():
    m = {}
    for l in psql("select pid, backend_type, coalesce(application_name,''), coalesce(datname,''),"
                  " regexp_replace(left(query,60),'\\s+',' ','g') from pg_stat_activity"):
        pid, bt, app, db, q = l.split('|', 4)
        if bt != 'client backend':
            role = bt
        elif not db.startswith('benchhub'):
            role = 'other client (not the bench\'s database)'
        elif app == 'posgate-events-send' or 'pg_notify' in q:
            role = 'notify sender'
        elif app == 'posgate-events':
            role = 'listener'
        else:
            role = 'statements (store pools)'
        m[int(pid)] = role
    return m


def procs(comm):
    d = {}
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            s = open(f'/proc/{p}/stat').read()
            if s[s.index('(') + 1:s.rindex(')')] != comm:
                continue
            f = s[s.rindex(')') + 2:].split()
            io = dict(l.split(': ') for l in open(f'/proc/{p}/io').read().splitlines())
            d[int(p)] = (int(f[11]) + int(f[12]), int(io['syscr']), int(io['syscw']))
        except (OSError, ValueError):
            pass
    return d


def stats():
    c = psql("select sum(xact_commit) from pg_stat_database")
    w = psql("select wal_write, wal_sync from pg_stat_wal")
    return int(c[0]), [int(x) for x in w[0].split('|')]


def main():
    settle = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
    window = float(sys.argv[2]) if len(sys.argv) > 2 else 6
    prev = None
    while True:
        c = stats()[0]
        if prev is not None and c - prev > 1000:
            break
        prev = c
        time.sleep(0.5)
    time.sleep(settle)
    psql('select pg_stat_statements_reset()')
    roles = classify()
    a, ga, s1, t0 = procs('postgres'), procs('posgate'), stats(), time.time()
    time.sleep(window)
    b, gb, s2, t1 = procs('postgres'), procs('posgate'), stats(), time.time()
    for pid, role in classify().items():
        if roles.get(pid) != 'notify sender':
            roles[pid] = role
    st = psql("select calls, rows, round(total_exec_time::numeric,1),"
              " regexp_replace(left(query,50),'\\s+',' ','g') from pg_stat_statements"
              " where query not like '%pg_stat%' order by calls desc limit 6")
    n = 0
    for l in st:
        if "UPDATE outbox SET state = 'done'" in l:
            n = max(n, int(l.split("|")[0]))
    if n == 0:
        sys.exit('no answer stored in the window')
    acc = collections.defaultdict(lambda: [0, 0, 0, 0])
    for pid, (cpu, r, w) in b.items():
        ca, ra, wa = a.get(pid, (0, 0, 0))
        x = acc[roles.get(pid, 'postmaster or gone')]
        x[0] += cpu - ca
        x[1] += r - ra
        x[2] += w - wa
        x[3] += 1
    tot = sum(x[0] for x in acc.values())
    print(f"window {t1 - t0:.1f} s, {n} requests answered; PostgreSQL {tot / HZ / (t1 - t0):.2f} cores,"
          f" {tot / HZ / n * 1e6:.0f} µs/request")
    for role, x in sorted(acc.items(), key=lambda kv: -kv[1][0]):
        if x[0] or x[1]:
            print(f"  {role:26s} ×{x[3]:<3d} {x[0] / HZ / n * 1e6:5.0f} µs/req ({100 * x[0] / max(tot, 1):4.1f} %)"
                  f"  reads/req {x[1] / n:5.2f}  writes/req {x[2] / n:5.2f}")
    print(f"  commits/req {(s2[0] - s1[0]) / n:.2f}  WAL writes/req {(s2[1][0] - s1[1][0]) / n:.2f}"
          f"  WAL flushes/req {(s2[1][1] - s1[1][1]) / n:.2f}")
    for l in st:
        c, r, ms, q = l.split('|', 3)
        c = int(c)
        print(f"  calls/req {c / n:5.2f}  rows/call {int(r) / max(c, 1):5.2f}"
              f"  exec µs/call {1000 * float(ms) / max(c, 1):6.1f}  {q}")
    for pid, (cpu, _, _) in sorted(gb.items()):
        print(f"  posgate pid {pid}: {(cpu - ga.get(pid, (0, 0, 0))[0]) / HZ / n * 1e6:.0f} µs/req")


main()
