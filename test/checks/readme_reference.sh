#!/usr/bin/env bash
# The README's reference must name every function, table, view and GUC that exists.
set -euo pipefail
root=$1
perl -e '
use strict; use warnings;
my $root = shift;
sub slurp { local $/; open my $fh, "<", $_[0] or die "$_[0]: $!"; <$fh> }
my $readme = slurp("$root/README.md");
my %names;
for my $f (glob("$root/extension/ccrm*.sql")) {
    my $sql = slurp($f);
    $names{$2} = 1 while $sql =~ /CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE|TABLE|VIEW)\s+ccrm\.(\w+)/gi;
}
for my $f (glob("$root/src/*.c"), glob("$root/src/*/*.c")) {
    my $c = slurp($f);
    $names{$1} = 1 while $c =~ /DefineCustom\w+Variable\(\s*"(ccrm\.[a-z_]+)"/g;
}
my @missing = sort grep {
    my $full = /^ccrm\./ ? $_ : "ccrm.$_";
    $readme !~ /\Q$full\E(?!\w)/
} keys %names;
die "README.md does not document: " . join(", ", @missing) . "\n" if @missing;
' "$root"
