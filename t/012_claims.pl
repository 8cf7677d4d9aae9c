# Claims.  The worker claims due jobs with FOR UPDATE SKIP LOCKED, and a
# claim that fills its batch makes the next one start after the last job
# it took.  A job that was locked (by an operator's open transaction, say)
# while later jobs were claimed past it is still sent, exactly once, and
# jobs go out in the order they fell due.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $mock = start_mock();
my $node = cobalt_node('claims', $mock, conf => "cobalt.max_concurrent_requests = 2\n");
ok(wait_until(sub { $node->safe_psql('app', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cobalt worker'") == 1 }),
	'worker running');

# A falls due in 2 s; meanwhile another session locks it.
my $a = $node->safe_psql('app', q{
	SELECT cobalt_submit('appointment.create', '{"mrn": "A", "_mock": {"key": "locked"}}') AS id \gset
	UPDATE cobalt.jobs SET next_due_at = now() + interval '2 seconds' WHERE id = :id;
	SELECT :id});
my $locker = $node->background_psql('app');
$locker->query_safe("BEGIN; SELECT 1 FROM cobalt.jobs WHERE id = $a FOR UPDATE;");
ok(wait_until(sub { $node->safe_psql('app', "SELECT next_due_at <= now() FROM cobalt.jobs WHERE id = $a") eq 't' }, 10),
	'the locked job is due');

# 16 jobs fall due after it; two at a time, each send taking 0.2 s, every
# claim fills its batch of free slots and moves past the locked job
my @later = map {
	submit($node, 'appointment.create', { mrn => $_, _mock => { key => "later-$_", delay => 0.2 } })
} 1 .. 16;
ok(wait_until(sub { (grep { /^later-/ } keys %{ post_counts($mock) }) >= 4 }, 20), 'later jobs are being sent');
is($node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $a"), 'queued', 'the locked job was skipped');
$locker->query_safe('COMMIT');
$locker->quit;

is(wait_for_state($node, $a, 'succeeded', 60), 'succeeded', 'once unlocked, the skipped job is still sent');
for my $id (@later)
{
	is(wait_for_state($node, $id, 'succeeded', 60), 'succeeded', "later job $id succeeds");
}
my $posts = post_counts($mock);
is($posts->{locked}, 1, 'the skipped job was POSTed exactly once');
is(scalar(grep { /^later-/ && $posts->{$_} == 1 } keys %$posts), 16, 'each later job exactly once');

# the later jobs went out in the order they fell due
my @order = map { $_->{json}{_mock}{key} } grep { $_->{method} eq 'POST' } @{ mock_requests($mock) };
my @later_order = map { /^later-(\d+)$/ ? $1 : () } @order;
my $inversions = 0;
for my $i (1 .. $#later_order)
{
	$inversions++ if $later_order[$i] < $later_order[ $i - 1 ] - 1;    # two at a time may swap neighbours
}
is($inversions, 0, 'due jobs are claimed in the order they fell due');

$node->stop;
stop_mock($mock);
done_testing();
