#!/bin/sh
# Socket activation without installing anything: systemd-socket-activate
# (in the systemd package) listens on the port, and at the first
# connection starts the server with the listener at fd 3 (LISTEN_FDS),
# as a zen.socket unit would. It passes on only the variables named
# with -E.
#
#     deploy/socket-activate.sh [PORT [SERVER [FLAGS...]]]
#     deploy/socket-activate.sh 1060 target/release/srv-poll -v
port=${1:-1060}
server=${2:-target/release/srv-poll}
[ $# -gt 2 ] && shift 2 || set --
exec systemd-socket-activate -l "127.0.0.1:$port" -E RUST_BACKTRACE "$server" "$@"
