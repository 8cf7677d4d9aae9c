# A primary with a streaming standby: the worker runs only on the primary;
# after the primary dies and the standby is promoted, the worker starts
# there, finishes the jobs the old primary had sent, and POSTs none again.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $primary = cobalt_node('primary', $mock, init => { allows_streaming => 1 });
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;

sub workers
{
	my ($node, $type) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = '$type'");
}

# job-creating requests the mock received with this _mock key
sub posts_for { return post_counts($mock)->{ $_[0] } // 0; }

ok(wait_until(sub { workers($primary, 'cobalt worker') == 1 }), 'the worker runs on the primary');
sleep 2;
is(workers($standby, 'cobalt worker'), '0', 'no worker on the standby');
is(workers($standby, 'cobalt launcher'), '0', 'nor a launcher');

# jobs accepted by Cobalt on the old primary, their events due later
my @ids = map { submit($primary, 'appointment.create', { mrn => $_, _mock => { key => "fo-$_", after_seconds => 4 } }) } 1 .. 5;
for my $id (@ids)
{
	is(wait_for_state($primary, $id, 'polling'), 'polling', "job $id acknowledged as polling on the primary");
}
# and one done already
my $done = submit($primary, 'appointment.create', { mrn => 'd', _mock => { key => 'fo-done' } });
is(wait_for_state($primary, $done, 'succeeded'), 'succeeded', 'one job finished on the primary');
$primary->wait_for_catchup($standby);

$primary->stop('immediate');
$standby->promote;
ok(wait_until(sub { workers($standby, 'cobalt worker') == 1 }, 60), 'after promotion the worker starts on the new primary');

for my $id (@ids)
{
	is(wait_for_state($standby, $id, 'succeeded', 60), 'succeeded', "job $id finished by polling on the new primary");
}
sleep 1;
for my $i (1 .. 5)
{
	is(posts_for("fo-$i"), 1, "fo-$i was POSTed once, never again after the failover");
}
is(posts_for('fo-done'), 1, 'the finished job was not sent again');

# the new primary takes new work
my $new = submit($standby, 'appointment.create', { mrn => 'n', _mock => { key => 'fo-new' } });
is(wait_for_state($standby, $new, 'succeeded'), 'succeeded', 'the new primary sends new jobs');

$standby->stop;
stop_mock($mock);
done_testing();
