# The README's examples run: every ```sql block, in order, in one fresh
# database, without an error (examples of errors are shown as plain text).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = slurp_file("$ENV{CCRM_SRC}/README.md");
my @blocks = $readme =~ /^```sql\n(.*?)^```$/msg;
ok(scalar(@blocks) > 5, 'README has SQL examples');

my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ccrm'");
$node->start;

my $i = 0;
foreach my $sql (@blocks)
{
	$i++;
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', $sql, on_error_stop => 1);
	my ($first) = $sql =~ /^\s*(.*)$/m;
	is($ret, 0, "README example $i runs: $first") or diag($stderr);
}

$node->stop;
done_testing();
