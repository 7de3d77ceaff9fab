#!/usr/bin/env bash
# META.json must carry the version of ccrm.control (the one place it lives).
set -euo pipefail
root=$1
control=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$root/ccrm.control")
perl -MJSON::PP -e '
use strict; use warnings;
my ($file, $want) = @ARGV;
open my $fh, "<", $file or die "$file: $!";
my $meta = decode_json(do { local $/; <$fh> });
my @bad;
push @bad, "version " . ($meta->{version} // "none") if ($meta->{version} // "") ne $want;
for my $name (sort keys %{ $meta->{provides} // {} }) {
    my $v = $meta->{provides}{$name}{version} // "none";
    push @bad, "provides.$name.version $v" if $v ne $want;
}
die "META.json disagrees with ccrm.control ($want): " . join(", ", @bad) . "\n" if @bad;
' "$root/META.json" "$control"
# An install script must exist for the oldest version and an update path to the current one.
[ -f "$root/extension/ccrm--$control.sql" ] || ls "$root"/extension/ccrm--*--"$control".sql >/dev/null
