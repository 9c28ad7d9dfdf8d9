# shellcheck shell=bash
# Loopback port helpers for the scripts that start servers (bench, bench-waf, bench-lua, demo):
#     source scripts/lib/ports.sh
# Messages start with the name of the script that sourced this file, like its own die().

# port_open PORT: true when 127.0.0.1:PORT accepts a TCP connection.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID NAME LOG: waits until 127.0.0.1:PORT accepts connections, for at most
# PORT_WAIT_SECONDS (15 unless the script sets it). If process PID exits first: the last 20 lines
# of LOG on stderr, and exit 1; after the time: exit 1.
wait_port() {
    local port=$1 pid=$2 name=$3 log=$4 seconds=${PORT_WAIT_SECONDS:-15} i
    for ((i = 0; i < seconds * 10; i++)); do
        port_open "$port" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "${0##*/}: $name exited; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "${0##*/}: $name is not listening on port $port after $seconds s (see $log)" >&2
    exit 1
}

# free_ports N: N different free TCP ports on 127.0.0.1, on one line (bound at the same time, so
# no two are the same), picked outside the kernel's ephemeral range: a port it hands out for
# bind(0) or an outgoing connection could be taken again before the server binds it.
# free_port: one.
free_ports() {
    /usr/bin/python3 -c '
import random, socket, sys
try:
    low, high = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
except (OSError, ValueError):
    low, high = 32768, 60999
first, end = (10000, low) if low - 10000 >= 4096 else (high + 1, 65536)
socks = []
for _ in range(1000):
    if len(socks) == int(sys.argv[1]):
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(first, end)))
        socks.append(s)
    except OSError:
        s.close()
if len(socks) < int(sys.argv[1]):
    sys.exit(f"no {sys.argv[1]} free loopback ports in {first}..{end - 1}")
print(*(s.getsockname()[1] for s in socks))' "$1"
}
free_port() { free_ports 1; }
