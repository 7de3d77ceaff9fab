#!/usr/bin/env bash
# META.json must carry the version of ccrm.control (the one place it lives)
# and name the current version's source, extension/ccrm.sql; the frozen first
# install script and an update script to the current version must exist.
set -euo pipefail
root=$1
control=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$root/ccrm.control")
[ -n "$control" ] || { echo "ccrm.control has no default_version"; exit 1; }
perl -MJSON::PP -e '
	my ($file, $want, $root) = @ARGV;
	open(my $fh, "<", $file) or die "cannot read $file: $!\n";
	my $meta = JSON::PP->new->decode(do { local $/; <$fh> });
	my @bad;
	push @bad, "version " . ($meta->{version} // "none") if ($meta->{version} // "") ne $want;
	my $provides = $meta->{provides} || {};
	push @bad, "no provides" unless %$provides;
	for my $name (sort keys %$provides) {
		my $p = $provides->{$name};
		push @bad, "provides.$name.version " . ($p->{version} // "none") if ($p->{version} // "") ne $want;
		my $f = $p->{file} // "none";
		push @bad, "provides.$name.file $f (want extension/ccrm.sql)" if $f ne "extension/ccrm.sql";
		push @bad, "provides.$name.file $f does not exist" unless -f "$root/$f";
	}
	die "META.json disagrees with ccrm.control ($want): " . join(", ", @bad) . "\n" if @bad;
' "$root/META.json" "$control" "$root"
# The first version installs from its frozen script; later ones also by update.
[ -f "$root/extension/ccrm--0.1.0.sql" ] || { echo "extension/ccrm--0.1.0.sql is missing"; exit 1; }
if [ "$control" != 0.1.0 ] && ! ls "$root"/extension/ccrm--*--"$control".sql >/dev/null 2>&1; then
	echo "no update script extension/ccrm--*--$control.sql"; exit 1
fi
