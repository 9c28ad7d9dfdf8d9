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
# no two are the same). free_port: one.
free_ports() {
    /usr/bin/python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}
free_port() { free_ports 1; }
