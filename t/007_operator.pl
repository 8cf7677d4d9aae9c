# The operator functions with the worker against the mock: a cancelled job
# is never sent, even once it could be; cobalt_retry sends a rejected job
# again as a new job, and an unknown one only with force; cobalt_resolve
# records an unknown job's outcome and nothing is sent; cobalt_recheck polls
# a timed_out job once more after its late-check window, and a polling job
# at once, without waiting for the poll interval.  Every case counts the
# requests it caused.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $mock = start_mock();
# late_check_window = 0: a timed_out job is not checked again by itself
my $node = cobalt_node('operator', $mock,
	conf => "cobalt.late_check_window = 0\ncobalt.request_timeout = '5s'\n");

# The job-creating requests that carried a given mock key.
# job-creating requests the mock received with this _mock key
sub posts_for { return post_counts($mock)->{ $_[0] } // 0; }

# The polls of a job (by its remote job id).
sub polls_for
{
	my ($id) = @_;
	my $remote = job_row($node, $id)->{remote_job_id};
	die "job $id has no remote job id" unless defined $remote;
	return scalar grep { $_->{method} eq 'GET' && $_->{path} eq "/v1/webhook-events?job_id=$remote" }
	  @{ mock_requests($mock) };
}

sub job_count
{
	return $node->safe_psql('app', 'SELECT count(*) FROM cobalt.jobs');
}

sub job_with
{
	my ($operation, $key, %mock) = @_;
	return submit($node, $operation, { mrn => '1', _mock => { key => $key, %mock } }, 'clinic-a');
}

my $final = [qw(succeeded failed timed_out unknown cancelled)];

#
# (a) A queued job is cancelled and never sent, even once it could be.
#
# Its account has no token, so the worker cannot send it: it stays queued
# (nothing reached Cobalt) and says why.
my $waiting = $node->safe_psql('app', q{
	INSERT INTO cobalt.jobs (operation, account, payload, next_due_at)
	VALUES ('appointment.create', 'clinic-x', '{"mrn":"1","_mock":{"key":"cancel-me"}}', now())
	RETURNING id});
ok( wait_until(
		sub {
			my $r = job_row($node, $waiting);
			$r->{state} eq 'queued' && ($r->{last_error} // '') =~ /no access token/;
		}),
	'a job whose account has no token waits, queued');
like(job_row($node, $waiting)->{last_error}, qr/account "clinic-x" has no access token/, 'and says why');
# The worker holds the job in 'sending' only for an instant while it tries;
# a cancel that meets that instant is refused and tried again.
my $cancel_out;
ok( wait_until(
		sub {
			my ($rc, $out) = $node->psql('app', "SELECT state FROM cobalt_cancel($waiting)");
			$cancel_out = $out;
			$rc == 0;
		},
		10),
	'cobalt_cancel succeeds on the queued job');
is($cancel_out, 'cancelled', 'and returns it cancelled');
my $row = job_row($node, $waiting);
is($row->{state}, 'cancelled', 'the job is cancelled');
is($row->{next_due_at}, undef, 'and no longer due');
ok(defined $row->{finished_at}, 'and finished');
my $attempts = $row->{attempts};
# Now the account exists (which wakes the worker); the job is still never sent.
add_account($node, 'clinic-x', 'at_live_x');
my $other = submit($node, 'appointment.create', { mrn => '2', _mock => { key => 'clinic-x-other' } }, 'clinic-x');
is(wait_for_state($node, $other, $final), 'succeeded', 'another job of that account is now sent and succeeds');
sleep 3;
is(posts_for('cancel-me'), 0, 'the cancelled job was never sent (0 POSTs)');
$row = job_row($node, $waiting);
is($row->{state}, 'cancelled', 'and it stays cancelled');
is($row->{attempts}, $attempts, 'with no new attempt');

#
# (b) A rejected job, retried: the new job is sent and succeeds.
#
my $rejected = job_with('appointment.create', 'retry-400', send => 'reject', status => 400,
	message => 'Missing required field: subject', send_times => 1);
is(wait_for_state($node, $rejected, $final), 'failed', '400: the job fails');
is(posts_for('retry-400'), 1, 'after one POST');
my $before = job_count();
my $retry = $node->safe_psql('app', "SELECT cobalt_retry($rejected)");
ok($retry > $rejected, 'cobalt_retry returns a new job id');
is(job_count(), $before + 1, 'one job added');
$row = job_row($node, $retry);
is($row->{retry_of}, $rejected, 'linked to the failed job by retry_of');
is_deeply($row->{payload}, job_row($node, $rejected)->{payload}, 'with the same payload');
is($row->{operation} . '/' . $row->{account}, 'appointment.create/clinic-a', 'operation and account');
is(wait_for_state($node, $retry, $final), 'succeeded', 'the retry is sent and succeeds');
is(job_row($node, $retry)->{event_type}, 'appointment.created', 'through its event');
is(job_row($node, $retry)->{attempts}, 1, 'in one attempt');
$row = job_row($node, $rejected);
is($row->{state}, 'failed', 'the failed job stays failed');
is($row->{http_status}, 400, 'with its 400');
sleep 1;
is(posts_for('retry-400'), 2, 'exactly 2 POSTs in all: the rejected one and the retry');

#
# (c) An unknown job: retried only with force; resolved by hand.
#
my $unknown = job_with('appointment.create', 'retry-500', send => 'error', status => 500, send_times => 1);
is(wait_for_state($node, $unknown, $final), 'unknown', '500: the job ends unknown');
$before = job_count();
my ($rc, $out, $err) = $node->psql('app', "SELECT cobalt_retry($unknown)");
isnt($rc, 0, 'cobalt_retry without force is refused');
like($err, qr/cobalt job $unknown is unknown: it may have reached Cobalt/, 'because it may have reached Cobalt');
like($err, qr/DETAIL:  Sending it again could create a duplicate in the EHR\./, 'DETAIL: a duplicate');
like($err, qr/HINT:  Check the EHR first\. If the operation is not there, retry with force => true/,
	'HINT: check the EHR, then force');
is(job_count(), $before, 'no job added');
sleep 1;
is(posts_for('retry-500'), 1, 'and nothing sent again');
$retry = $node->safe_psql('app', "SELECT cobalt_retry($unknown, force => true)");
ok($retry > $unknown, 'cobalt_retry with force => true returns a new job id');
is(job_row($node, $retry)->{retry_of}, $unknown, 'linked by retry_of');
is(wait_for_state($node, $retry, $final), 'succeeded', 'the forced retry is sent and succeeds');
is(job_row($node, $unknown)->{state}, 'unknown', 'the unknown job stays unknown');
sleep 1;
is(posts_for('retry-500'), 2, 'exactly 2 POSTs in all');

my $resolve = job_with('appointment.create', 'resolve-500', send => 'error', status => 500);
is(wait_for_state($node, $resolve, $final), 'unknown', 'another job ends unknown');
is( $node->safe_psql('app',
		"SELECT state FROM cobalt_resolve($resolve, 'succeeded', 'appointment found in the EHR by the TAP test')"),
	'succeeded',
	'cobalt_resolve records it succeeded');
$row = job_row($node, $resolve);
is($row->{state}, 'succeeded', 'state succeeded');
is($row->{resolved_by}, $node->safe_psql('app', 'SELECT current_user'), 'resolved_by: the caller');
is($row->{resolution_note}, 'appointment found in the EHR by the TAP test', 'the note kept');
is($row->{next_due_at}, undef, 'nothing left to do');
is($node->safe_psql('app', "SELECT state FROM cobalt_wait($resolve, '5 s')"), 'succeeded',
	'cobalt_wait returns it succeeded');
sleep 2;
is(posts_for('resolve-500'), 1, 'the resolved job was sent once only');
is(job_row($node, $resolve)->{state}, 'succeeded', 'and the worker leaves it succeeded');

#
# (d) cobalt_recheck of a timed_out job after its late-check window.
#
$node->safe_psql('app', q{
	INSERT INTO cobalt.operations (operation, method, path, timeout)
	VALUES ('test.quick', 'POST', '/appointments', '2 seconds')});
my $late = job_with('test.quick', 'late', after_seconds => 4);
my $never = job_with('test.quick', 'never', outcome => 'never');
is(wait_for_state($node, $late, $final), 'timed_out', 'no event within the 2 s timeout: timed_out');
is(wait_for_state($node, $never, $final), 'timed_out', 'the other job too');
$row = job_row($node, $late);
is($row->{next_due_at}, undef, 'late_check_window = 0: no late check is due');
is($row->{finished_at}, undef, 'and it is not finished');
my $polls_at_timeout = polls_for($late);
ok($polls_at_timeout >= 2, "it was polled until its timeout ($polls_at_timeout polls)");
# Its event is there from 4 s after acceptance; wait until 4.5 s.
my $wait = $node->safe_psql('app',
	"SELECT extract(epoch FROM accepted_at + interval '4.5 s' - clock_timestamp()) FROM cobalt.jobs WHERE id = $late");
sleep($wait) if $wait > 0;
is(job_row($node, $late)->{state}, 'timed_out', '4.5 s after acceptance it is still timed_out');
is(polls_for($late), $polls_at_timeout, 'no poll since it timed out');
my $recheck = $node->safe_psql('app', "SELECT state FROM cobalt_recheck($late)");
is($recheck, 'timed_out', 'cobalt_recheck returns the job, timed_out');
my $t0 = time();
is(wait_for_state($node, $late, 'succeeded', 10), 'succeeded', 'the recheck finds its event: succeeded');
ok(time() - $t0 < 5, sprintf('within a few seconds (%.2f s)', time() - $t0));
$row = job_row($node, $late);
is($row->{event_type}, 'appointment.created', 'event recorded');
ok(defined $row->{finished_at}, 'finished');
is($row->{next_due_at}, undef, 'nothing left to do');
is(polls_for($late), $polls_at_timeout + 1, 'with exactly one more poll');
is(posts_for('late'), 1, 'and no new POST');
# A recheck that finds nothing polls once, then the job is left as it was.
my $never_polls = polls_for($never);
is($node->safe_psql('app', "SELECT state FROM cobalt_recheck($never)"), 'timed_out',
	'cobalt_recheck of a job with no event yet');
ok(wait_until(sub { polls_for($never) == $never_polls + 1 }, 10), 'polls it once');
ok( wait_until(
		sub {
			$node->safe_psql('app', "SELECT state, next_due_at IS NULL FROM cobalt.jobs WHERE id = $never") eq
			  'timed_out|t';
		},
		10),
	'it stays timed_out, with no check due');
sleep 1.5;
is(polls_for($never), $never_polls + 1, 'and is not polled again');

#
# (e) cobalt_recheck of a polling job polls it at once.
#
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.poll_interval = '60s'");
$node->reload;
sleep 1;
my $slow = job_with('appointment.create', 'recheck-polling', after_polls => 2);
ok( wait_until(
		sub {
			$node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $slow") eq 'polling';
		},
		10),
	'the job is accepted: polling');
$t0 = time();
my $polls = polls_for($slow);
is($polls, 0, 'not polled yet: the poll interval is 60 s');
is($node->safe_psql('app', "SELECT state FROM cobalt_recheck($slow)"), 'polling',
	'cobalt_recheck returns it polling');
ok(wait_until(sub { polls_for($slow) == $polls + 1 }, 10), 'it is polled at once');
is($node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $slow"), 'polling',
	'still polling (its event comes at the second poll)');
is($node->safe_psql('app',
		"SELECT next_due_at = timeout_at FROM cobalt.jobs WHERE id = $slow"), 't',
	'next_due_at is back at its timeout');
is($node->safe_psql('app', "SELECT state FROM cobalt_recheck($slow)"), 'polling', 'cobalt_recheck again');
ok(wait_until(sub { polls_for($slow) == $polls + 2 }, 10), 'it is polled at once again');
is(wait_for_state($node, $slow, $final, 10), 'succeeded', 'and succeeds');
my $took = time() - $t0;
ok($took < 20, sprintf('long before the 60 s poll interval (%.2f s)', $took));
is(job_row($node, $slow)->{event_type}, 'appointment.created', 'event recorded');
is(polls_for($slow), 2, 'two polls in all');
is(posts_for('recheck-polling'), 1, 'one POST');

$node->stop;
stop_mock($mock);
done_testing();
