#!/bin/sh
# A verified copy of the pointsbot database into a dated file, keeping the newest ones.
# Run nightly by deploy/pointsbot-backup.timer (or, in the container, by a host timer or
# cron: `docker compose exec -T bot pointsbot-backup`). Settings from the environment:
#   POINTSBOT_CONFIG       the configuration        (default /etc/pointsbot/config.toml)
#   POINTSBOT_BACKUP_DIR   where the copies go       (default /var/lib/pointsbot/backups)
#   POINTSBOT_BACKUP_KEEP  how many copies to keep   (default 14)
#   POINTSBOT_BIN          the pointsbot command     (default pointsbot, from PATH)
set -eu

config="${POINTSBOT_CONFIG:-/etc/pointsbot/config.toml}"
backup_dir="${POINTSBOT_BACKUP_DIR:-/var/lib/pointsbot/backups}"
keep="${POINTSBOT_BACKUP_KEEP:-14}"
pointsbot="${POINTSBOT_BIN:-pointsbot}"

case "$keep" in
    '' | *[!0-9]* | 0)
        echo "error: POINTSBOT_BACKUP_KEEP must be a whole number above 0, not '$keep'" >&2
        exit 2
        ;;
esac

# The copies hold the till API's key secrets: readable by the bot's user only.
umask 077
mkdir -p "$backup_dir"
# UTC and to the second, so that names sort by age and a second run the same day adds a copy.
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
"$pointsbot" backup --config "$config" "$backup_dir/pointsbot-$stamp.sqlite3"

# Old copies go only once the new one passed verification: a failed backup exits above
# (set -e) and removes nothing.
find "$backup_dir" -maxdepth 1 -type f -name 'pointsbot-????-??-??T??????Z.sqlite3' \
    | sort -r \
    | tail -n "+$((keep + 1))" \
    | while IFS= read -r old; do
        rm -f -- "$old"
        echo "removed $old (keeping the newest $keep)"
    done
