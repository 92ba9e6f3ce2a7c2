#!/bin/sh
# fabulist's container entrypoint: checks what a container gets wrong most (the token, the data
# volume) with a clear message before Python starts, then runs `python -m bot "$@"`.
#
#   docker run ... fabulist               -> python -m bot run
#   docker run ... fabulist sync          -> python -m bot sync (register the slash commands)
#   docker run ... fabulist status        -> any other `python -m bot` command
#   fabulist-entrypoint healthcheck       -> the image's HEALTHCHECK (exit 0 healthy, 1 not)
#
# Environment: DISCORD_TOKEN (run and sync), FABULIST_DATA_DIR (default ./data: the volume; the
# default database is data/fabulist.sqlite3 under the working directory), FABULIST_HEALTH_FILE
# (default $FABULIST_DATA_DIR/.health, kept fresh by `run` while connected to Discord),
# FABULIST_HEALTH_MAX_AGE (seconds, default 90), FABULIST_PYTHON (default python).
#
# Exit codes: 64 token missing or malformed, 73 data directory not writable, 1 unhealthy;
# otherwise the bot's own (2: configuration error, e.g. a token Discord refuses).
set -eu

data_dir="${FABULIST_DATA_DIR:-data}"
health_file="${FABULIST_HEALTH_FILE:-$data_dir/.health}"
python="${FABULIST_PYTHON:-python}"

fail() {
    code="$1"
    shift
    printf 'fabulist: %s\n' "$*" >&2
    exit "$code"
}

if [ "${1:-}" = "healthcheck" ]; then
    max_age="${FABULIST_HEALTH_MAX_AGE:-90}"
    [ -f "$health_file" ] || fail 1 "unhealthy: not connected to Discord (no $health_file)"
    age=$(( $(date +%s) - $(stat -c %Y "$health_file") ))
    [ "$age" -le "$max_age" ] || fail 1 "unhealthy: last connected to Discord ${age}s ago"
    exit 0
fi

[ "$#" -gt 0 ] || set -- run

case "$1" in
    run | sync)
        token="${DISCORD_TOKEN:-}"
        [ -n "$token" ] || fail 64 "DISCORD_TOKEN is not set. Pass the bot token from the" \
            "Discord Developer Portal (Bot -> Reset Token): docker run -e DISCORD_TOKEN=... or" \
            "DISCORD_TOKEN in the compose file's environment."
        case "$token" in
            *[!A-Za-z0-9._-]* | *.*.*.* | .* | *. | *..*)
                fail 64 "DISCORD_TOKEN does not look like a bot token (three parts separated" \
                    "by dots, no spaces or quotes). Copy it again from the Developer Portal." ;;
            *.*.*) ;;
            *)
                fail 64 "DISCORD_TOKEN does not look like a bot token (three parts separated" \
                    "by dots, no spaces or quotes). Copy it again from the Developer Portal." ;;
        esac
        ;;
esac

mkdir -p "$data_dir" 2>/dev/null || true
if [ ! -d "$data_dir" ] || [ ! -w "$data_dir" ]; then
    fail 73 "the data directory $data_dir is not a writable directory (user $(id -un))." \
        "Mount a volume there that this user can write, e.g. -v fabulist-data:/srv/fabulist/data."
fi

if [ "$1" = "run" ]; then
    FABULIST_HEALTH_FILE="$health_file"
    export FABULIST_HEALTH_FILE
fi
exec "$python" -m bot "$@"
