#!/usr/bin/env bash
# Make sure the real Redis and MariaDB the tests talk to are up, starting them the
# way this machine's images do when they are not.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
mariadb_up() { mariadb-admin --host=127.0.0.1 --port=3306 --user=root ping >/dev/null 2>&1; }

if ! redis_up; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! mariadb_up; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi

for _ in $(seq 1 60); do
  if redis_up && mariadb_up; then
    exit 0
  fi
  sleep 1
done
redis_up || echo "Redis did not come up on 127.0.0.1:6379" >&2
mariadb_up || echo "MariaDB did not come up on 127.0.0.1:3306" >&2
exit 1
