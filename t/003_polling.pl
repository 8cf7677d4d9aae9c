# Polling: polls are spaced by cobalt.poll_interval (and SIGHUP changes it),
# failed polls never change the state, a job whose timeout passes becomes
# 'timed_out' (not failed) and is still checked late, and the worker keeps
# at most cobalt.max_concurrent_requests requests in flight.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $node = cobalt_node('polling', $mock, conf => "cobalt.late_check_interval = '1s'\n");

sub poll_times
{
	my ($id) = @_;
	my $remote = job_row($node, $id)->{remote_job_id};
	return [ map { $_->{time} } grep { $_->{method} eq 'GET' && $_->{path} eq "/v1/webhook-events?job_id=$remote" }
		  @{ mock_requests($mock) } ];
}

sub gaps
{
	my ($times) = @_;
	return [ map { $times->[$_] - $times->[ $_ - 1 ] } 1 .. $#$times ];
}

# 200 ms interval (set by cobalt_node)
my $id = submit($node, 'appointment.create', { mrn => '1', _mock => { after_polls => 5 } });
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'job succeeds at its fifth poll');
my $times = poll_times($id);
is(scalar @$times, 5, 'five polls');
my @g = @{ gaps($times) };
ok((grep { $_ < 0.18 } @g) == 0, 'polls are at least the poll interval apart (200 ms): ' . join(', ', map { sprintf '%.3f', $_ } @g));
ok((grep { $_ > 1.5 } @g) == 0, 'and not much more');

# SIGHUP: a new poll interval takes effect without a restart
my $pid = $node->safe_psql('app', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.poll_interval = '1s'");
$node->reload;
sleep 1;
$id = submit($node, 'appointment.create', { mrn => '1', _mock => { after_polls => 3 } });
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'job succeeds after reload');
@g = @{ gaps(poll_times($id)) };
is(scalar @g, 2, 'three polls');
ok((grep { $_ < 0.95 } @g) == 0, 'polls now 1 s apart: ' . join(', ', map { sprintf '%.3f', $_ } @g));
is($node->safe_psql('app', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'"),
	$pid, 'same worker process: settings were reloaded, not restarted');
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.poll_interval = '200ms'");
$node->reload;

# failing polls change nothing but last_error; the job still succeeds
$id = submit($node, 'appointment.create', { mrn => '1', _mock => { poll => '500', poll_times => 4 } });
ok(wait_until(sub { ($node->safe_psql('app', "SELECT last_error FROM cobalt.jobs WHERE id = $id")) =~ /500/ }),
	'a failed poll is recorded in last_error');
is($node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $id"), 'polling', 'and the job stays polling');
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'then succeeds');
is(job_row($node, $id)->{last_error}, undef, 'last_error cleared at the outcome');
is(job_row($node, $id)->{attempts}, 1, 'failed polls never resend the job');

# a failed poll keeps the job due: after a restart it is still polled
mock_config($mock, { polls_fail => '500' });
$id = submit($node, 'appointment.create', { mrn => '1' });
ok(wait_until(sub { ($node->safe_psql('app', "SELECT last_error FROM cobalt.jobs WHERE id = $id")) =~ /500/ }),
	'polls failing for every job');
is($node->safe_psql('app', "SELECT next_due_at = timeout_at FROM cobalt.jobs WHERE id = $id"), 't',
	'a failed poll leaves the job due at its timeout');
$node->restart;
mock_config($mock, { polls_fail => undef });
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'after a restart the job is polled again and succeeds');

for my $fault (qw(429 malformed reset))
{
	$id = submit($node, 'appointment.create', { mrn => '1', _mock => { poll => $fault, poll_times => 2 } });
	is(wait_for_state($node, $id, [qw(succeeded failed unknown timed_out)]), 'succeeded', "polls failing with $fault: still succeeds");
}

# the operation's timeout: timed_out, not failed; late checks still settle it
$node->safe_psql('app', q{
	INSERT INTO cobalt.operations (operation, method, path, timeout)
	VALUES ('test.quick', 'POST', '/appointments', '2 seconds')});
my $never = submit($node, 'test.quick', { mrn => '1', _mock => { outcome => 'never' } });
my $late = submit($node, 'test.quick', { mrn => '1', _mock => { after_seconds => 4.5 } });
is(wait_for_state($node, $never, [qw(timed_out failed succeeded)]), 'timed_out', 'no event within the timeout: timed_out');
is(wait_for_state($node, $late, [qw(timed_out failed succeeded)]), 'timed_out', 'late job times out first');
my $row = job_row($node, $never);
ok(defined $row->{next_due_at}, 'a timed-out job is still due for late checks');
is($row->{finished_at}, undef, 'and is not finished');
is(wait_for_state($node, $late, 'succeeded', 20), 'succeeded', 'its event arrives later: succeeded through a late check');
is(job_row($node, $late)->{event_type}, 'appointment.created', 'late event recorded');
is(job_row($node, $never)->{state}, 'timed_out', 'the other stays timed_out');
is(job_row($node, $never)->{attempts}, 1, 'timed-out jobs are never resent');

# at most cobalt.max_concurrent_requests in flight
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.max_concurrent_requests = 3");
$node->reload;
sleep 1;
mock_reset($mock);
my @ids = map { submit($node, 'appointment.create', { mrn => "c$_", _mock => { delay => 1 } }) } 1 .. 9;
for my $j (@ids)
{
	wait_for_state($node, $j, 'succeeded', 60);
}
my @arrivals = sort { $a <=> $b } map { $_->{time} } grep { $_->{method} eq 'POST' } @{ mock_requests($mock) };
is(scalar @arrivals, 9, 'nine POSTs');
my $max_burst = 0;
for my $i (0 .. $#arrivals)
{
	my $n = grep { $_ >= $arrivals[$i] && $_ < $arrivals[$i] + 0.8 } @arrivals;
	$max_burst = $n if $n > $max_burst;
}
ok($max_burst <= 3, "no more than 3 requests started within one answer delay (saw $max_burst)");

# A job deleted while polling (here by hand; TRUNCATE is the same) is no
# longer polled once the worker reconciles its schedule with the table
# (every 10 s); the other job is polled on.
my $deleted = submit($node, 'appointment.create', { mrn => 'd', _mock => { outcome => 'never' } });
my $kept = submit($node, 'appointment.create', { mrn => 'k', _mock => { outcome => 'never' } });
is(wait_for_state($node, $_, 'polling', 20), 'polling', "job $_ polling") for ($deleted, $kept);
my ($del_remote, $kept_remote) = map { job_row($node, $_)->{remote_job_id} } ($deleted, $kept);
$node->safe_psql('app', "DELETE FROM cobalt.jobs WHERE id = $deleted");
sleep 11;
my $since = time();
sleep 3;
my @recent = grep { $_->{time} >= $since } @{ api_requests($mock, 'GET', '/v1/webhook-events') };
is(scalar(grep { $_->{path} =~ /job_id=\Q$del_remote\E$/ } @recent), 0, 'the deleted job is no longer polled');
ok(scalar(grep { $_->{path} =~ /job_id=\Q$kept_remote\E$/ } @recent) >= 5, 'the other job still is');

$node->stop;
stop_mock($mock);
done_testing();
