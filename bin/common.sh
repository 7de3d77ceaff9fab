# Shared by bin/test, bin/demo and test/bench/run: installs what is missing,
# builds ccrm, and makes throw-away PostgreSQL installations and clusters.
# Sourced, not run.  Clusters always run as the unprivileged "postgres" OS
# user, since initdb and postgres refuse to run as root.

set -euo pipefail

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BINDIR/pg_config
CCRM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_USER=postgres

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else die "need root (or sudo) to run: $*"; fi
}

# Run a command as the cluster user, keeping the environment we pass explicitly.
as_pg() {
	if [ "$(id -un)" = "$PG_USER" ]; then "$@"
	else as_root runuser -u "$PG_USER" -- "$@"; fi
}

# Debian packages the build, the tests and the demo need, and those given
# as arguments (e.g. valgrind for bin/test valgrind).
ensure_packages() {
	local want=() pkg
	for pkg in build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
		postgresql-$PG_MAJOR-cron libipc-run-perl libcurl4-openssl-dev \
		libnet-server-mail-perl libio-socket-ssl-perl libhttp-daemon-perl openssl "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || want+=("$pkg")
	done
	if [ ${#want[@]} -gt 0 ]; then
		say "installing ${want[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
	fi
	id "$PG_USER" >/dev/null 2>&1 || die "OS user $PG_USER is missing (it comes with the postgresql package)"
}

build() {
	say "building ccrm $(make -s -C "$CCRM_ROOT" PG_CONFIG=$PG_CONFIG version)"
	make -s -C "$CCRM_ROOT" PG_CONFIG=$PG_CONFIG >/dev/null
}

# A private copy of the PostgreSQL installation with ccrm built from a copy
# of the sources (extra compiler flags in $2, e.g. -DUSE_ASSERT_CHECKING) and
# installed into it, so tests never touch the system installation or the
# tree's own build, and several can run side by side.  Sets INST (bindir of
# the copy) and PGXS_DIR.
make_temp_install() {
	local root=$1 copt=${2:-} src=$1.build
	say "building ccrm $(make -s -C "$CCRM_ROOT" PG_CONFIG=$PG_CONFIG version)${copt:+ with $copt}"
	mkdir -p "$src" "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
	# sources only: objects of an earlier build in the tree would be reused
	# without regard to the headers they were built from
	(cd "$CCRM_ROOT" && tar cf - --exclude="*.o" --exclude="*.bc" --exclude="*.so" \
		Makefile ccrm.control src extension) | (cd "$src" && tar xf -)
	make -s -C "$src" PG_CONFIG=$PG_CONFIG COPT="$copt" >/dev/null
	cp -a /usr/lib/postgresql/$PG_MAJOR "$root/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/$PG_MAJOR "$root/usr/share/postgresql/"
	make -s -C "$src" PG_CONFIG=$PG_CONFIG DESTDIR="$root" install >/dev/null
	INST=$root/usr/lib/postgresql/$PG_MAJOR/bin
	PGXS_DIR=$root/usr/lib/postgresql/$PG_MAJOR/lib/pgxs
}

# A work directory the cluster user owns.
make_workdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/ccrm-$1.XXXXXX")
	chmod 755 "$d"
	if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER" "$d"; fi
	echo "$d"
}

# Copy what the test programs read into a place the cluster user can read.
stage_sources() {
	local dest=$1
	mkdir -p "$dest"
	local want=() f
	for f in sql expected test README.md extension ccrm.control META.json; do
		[ -e "$CCRM_ROOT/$f" ] && want+=("$f")
	done
	(cd "$CCRM_ROOT" && tar cf - "${want[@]}") | (cd "$dest" && tar xf -)
	mkdir -p "$dest/sql" "$dest/expected"
	if [ "$(id -u)" -eq 0 ]; then chown -R "$PG_USER" "$dest"; fi
}

# Start a cluster in $1 on a free port with extra settings in $2 (a file).
# Sets PGPORT and PGHOST for the caller.
start_cluster() {
	local dir=$1 conf=${2:-}
	as_pg "$INST/initdb" -D "$dir" -U postgres --no-locale -E UTF8 -A trust >/dev/null
	# With no TCP listener and a private socket directory, any port number is free.
	PGPORT=$((50000 + RANDOM % 10000))
	PGHOST=$dir
	{
		echo "port = $PGPORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		if [ -n "$conf" ]; then cat "$conf"; fi
	} | as_pg tee -a "$dir/postgresql.conf" >/dev/null
	as_pg "$INST/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
	export PGPORT PGHOST
}

stop_cluster() {
	as_pg "$INST/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}
