#!/bin/bash
# PostgreSQL alone, running the statements of one posgate write flow (see docs/BENCHMARKS.md,
# "The PostgreSQL floor"): pgbench, 8 clients, 16 s, prepared statements. Prints the rate, the
# average latency and the CPU per transaction of the server (the database's backends and the WAL
# writer, from /proc over the middle 8 s) and of pgbench itself.
#
#   bench/pgfloor/floor.sh setup            create the pbfloor database and its tables
#   bench/pgfloor/floor.sh refresh [sslmode]  (also jwtbearer, consume, consume-nonotify)
#   bench/pgfloor/floor.sh schema           create the pbschema database: posgate's own migrations
#                                           (their Up sections) and schema-seed.sql
#   bench/pgfloor/floor.sh real-refresh-one [sslmode]  (every real-*.sql runs on pbschema)
set -e
cd "$(dirname "$0")"
PG="-h 127.0.0.1 -U postgres"
if [ "$1" = setup ]; then
	psql -q $PG -c 'DROP DATABASE IF EXISTS pbfloor WITH (FORCE)' -c 'CREATE DATABASE pbfloor'
	psql -q $PG -d pbfloor -f setup.sql
	exit
fi
if [ "$1" = schema ]; then
	psql -q $PG -c 'DROP DATABASE IF EXISTS pbschema WITH (FORCE)' -c 'CREATE DATABASE pbschema'
	for m in ../../internal/store/migrations/postgres/*.sql; do
		sed -n '/+goose Up/,/+goose Down/p' "$m" | grep -v '+goose'
	done | psql -q -v ON_ERROR_STOP=1 $PG -d pbschema
	psql -q $PG -d pbschema -f schema-seed.sql
	exit
fi
DB=pbfloor
case "$1" in real-*) DB=pbschema ;; esac
export PGSSLMODE=${2:-prefer}
out=$(mktemp)
pgbench $PG -n -M prepared -c 8 -j 2 -T 16 -D cur=0 -f "$1.sql" $DB >"$out" 2>&1 &
P=$!
sleep 2
PIDS=$(psql $PG -Atc "SELECT pid FROM pg_stat_activity WHERE (datname = '$DB' AND pid <> pg_backend_pid()) OR backend_type = 'walwriter'")
cpu() { # user+system clock ticks of $PIDS
	local t=0
	for p in $PIDS; do
		set -- $(sed 's/.*) //' /proc/$p/stat 2>/dev/null)
		t=$((t + ${12:-0} + ${13:-0}))
	done
	echo $t
}
t0=$(date +%s.%N); c0=$(cpu); p0=$(awk '{print $14+$15}' /proc/$P/stat)
sleep 8
t1=$(date +%s.%N); c1=$(cpu); p1=$(awk '{print $14+$15}' /proc/$P/stat)
wait $P
TPS=$(awk '/^tps/ {print $3}' "$out")
echo "$1 sslmode=$PGSSLMODE: $(grep -E '^tps|latency average' "$out" | tr '\n' ' ')"
HZ=$(getconf CLK_TCK)
echo "server cpu/tx: $(echo "($c1-$c0)*1000000/$HZ/($TPS*($t1-$t0))" | bc) µs; pgbench cpu/tx: $(echo "($p1-$p0)*1000000/$HZ/($TPS*($t1-$t0))" | bc) µs"
rm -f "$out"
