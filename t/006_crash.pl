# Never lose a job, never duplicate a create.  Crashes with requests in
# flight (SIGKILL of the worker, an immediate stop of the server) leave
# every interrupted request 'unknown' and never resent, and every job that
# had not been sent is sent exactly once.  A Cobalt that refuses
# connections for a while, 429s and failing polls delay jobs but send each
# exactly once.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $mock = start_mock();
my $node = cobalt_node('crash', $mock, conf => "cobalt.max_concurrent_requests = 50\n"
	  . "cobalt.request_timeout = '120s'\n" . "restart_after_crash = on\n");


sub worker_pid
{
	my $pid = '';
	eval {
		$pid = $node->safe_psql('app',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
	};
	return $pid;
}

sub ids_where
{
	my ($sql) = @_;
	return [ split /\n/, $node->safe_psql('app', "SELECT id FROM cobalt.jobs WHERE $sql ORDER BY id") ];
}

# Run one crash scenario: 50 requests held in flight, 20 jobs queued
# behind them, then $crash->().
sub crash_scenario
{
	my ($name, $crash) = @_;
	mock_reset($mock);
	my $tag = "$name-";
	$node->safe_psql('app', qq{
		SELECT cobalt_submit('appointment.create',
			jsonb_build_object('mrn', i, '_mock', jsonb_build_object('key', '${tag}hang-' || i, 'send', 'hang')))
		FROM generate_series(1, 50) i});
	ok(wait_until(sub { (grep { /^${tag}hang-/ } keys %{ post_counts($mock) }) == 50 }, 60),
		"$name: 50 requests in flight, held by the mock");
	$node->safe_psql('app', qq{
		SELECT cobalt_submit('appointment.create',
			jsonb_build_object('mrn', i, '_mock', jsonb_build_object('key', '${tag}queued-' || i)))
		FROM generate_series(1, 20) i});
	is($node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE payload->'_mock'->>'key' LIKE '${tag}queued-%' AND state = 'queued'"),
		'20', "$name: 20 more jobs wait behind them");

	$crash->();

	my $hang_ids = ids_where("payload->'_mock'->>'key' LIKE '${tag}hang-%'");
	my $queued_ids = ids_where("payload->'_mock'->>'key' LIKE '${tag}queued-%'");
	ok(wait_until(sub {
			$node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE payload->'_mock'->>'key' LIKE '${tag}%' AND state IN ('succeeded','unknown')") == 70 }, 90),
		"$name: every job reaches an outcome after the restart");
	is($node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE payload->'_mock'->>'key' LIKE '${tag}hang-%' AND state = 'unknown'"),
		'50', "$name: every interrupted request is unknown");
	is($node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE payload->'_mock'->>'key' LIKE '${tag}queued-%' AND state = 'succeeded'"),
		'20', "$name: every job that had not been sent succeeded");
	sleep 2;    # time for any (wrong) resend
	my $posts = post_counts($mock);
	my @bad = grep { /^\Q$tag\E/ && $posts->{$_} != 1 } keys %$posts;
	is(scalar(grep { /^\Q$tag\E/ } keys %$posts), 70, "$name: all 70 jobs reached the mock");
	is(scalar @bad, 0, "$name: each was POSTed exactly once" . (@bad ? " (not: @bad)" : ''));
	is($node->safe_psql('app', "SELECT max(attempts) FROM cobalt.jobs WHERE payload->'_mock'->>'key' LIKE '${tag}%'"),
		'1', "$name: one attempt each");
}

ok(wait_until(sub { worker_pid() ne '' }), 'worker running');

crash_scenario('sigkill', sub {
	my $pid = worker_pid();
	kill 'KILL', $pid;
	ok(wait_until(sub { my $p = worker_pid(); $p ne '' && $p ne $pid }, 60), 'sigkill: the server recovers and the worker restarts');
});

crash_scenario('immediate', sub {
	$node->stop('immediate');
	$node->start;
	ok(wait_until(sub { worker_pid() ne '' }, 60), 'immediate: the worker runs again after the restart');
});

# Cobalt refusing connections for a while: queued jobs wait, then go once.
my $port = $mock->{port};
stop_mock($mock);
my @down = map { submit($node, 'appointment.create', { mrn => $_, _mock => { key => "down-$_" } }) } 1 .. 5;
$node->safe_psql('app', q{
	INSERT INTO cobalt.operations (operation, method, path, timeout)
	VALUES ('test.quick', 'POST', '/appointments', '3 seconds')});
my $never = submit($node, 'test.quick', { mrn => 'x', _mock => { key => 'never-delivered' } });
ok(wait_until(sub { $node->safe_psql('app', "SELECT min(attempts) FROM cobalt.jobs WHERE id IN (" . join(',', @down) . ")") >= 2 }, 30),
	'connection refused: the jobs are retried');
# a retried job is 'sending' for the moment of each attempt: look for
# anything else (a refused connection must never make a job unknown or failed)
is($node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE id IN (" . join(',', @down) . ") AND state NOT IN ('queued', 'sending')"), '0',
	'and stay queued meanwhile');
like(job_row($node, $down[0])->{last_error}, qr/could not connect/, 'with the reason in last_error');
is(wait_for_state($node, $never, 'failed', 30), 'failed', 'a job that cannot be delivered within its timeout fails');
like(job_row($node, $never)->{error}, qr/never delivered/, 'as never delivered');
$mock = start_mock(port => $port);
for my $id (@down)
{
	is(wait_for_state($node, $id, 'succeeded', 60), 'succeeded', "job $id goes out once Cobalt is back");
}
my $posts = post_counts($mock);
is(scalar(grep { /^down-/ && $posts->{$_} == 1 } keys %$posts), 5, 'each POSTed exactly once');
is($posts->{'never-delivered'} // 0, 0, 'the failed one never reached Cobalt');

# a TLS handshake that fails (https to a plain-HTTP port): nothing reached
# Cobalt, so the job waits queued and goes out once the URL is right
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.api_url = 'https://127.0.0.1:$mock->{port}/v1'");
$node->reload;
sleep 1;
my $tls = submit($node, 'appointment.create', { mrn => '1', _mock => { key => 'tls' } });
ok(wait_until(sub { (job_row($node, $tls)->{attempts} // 0) >= 2 }, 30), 'TLS handshake failure: retried');
ok(wait_until(sub { job_row($node, $tls)->{state} eq 'queued' }, 10), 'and queued between attempts');
isnt(job_row($node, $tls)->{state}, 'unknown', 'never unknown: nothing reached Cobalt');
like(job_row($node, $tls)->{last_error}, qr/could not connect/i, 'as a connection that was never made');
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.api_url = '$mock->{url}'");
$node->reload;
is(wait_for_state($node, $tls, 'succeeded', 60), 'succeeded', 'it goes out once the URL is right');
is(post_counts($mock)->{tls}, 1, 'exactly one POST reached Cobalt');

# 429 on a send: retried after Retry-After, then sent once more
my $t429 = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'r429', send => '429', retry_after => '2', send_times => 1 } });
is(wait_for_state($node, $t429, 'succeeded', 30), 'succeeded', '429: the job succeeds');
my @times = map { $_->{time} } grep { $_->{method} eq 'POST' && ($_->{json}{_mock}{key} // '') eq 'r429' } @{ mock_requests($mock) };
is(scalar @times, 2, '429: exactly two POSTs');
ok(@times == 2 && $times[1] - $times[0] >= 1.9, sprintf('429: the second after Retry-After (%.2f s)', @times == 2 ? $times[1] - $times[0] : -1));
my $row = job_row($node, $t429);
is($row->{attempts}, 2, '429: two attempts');
like($row->{attempt_errors}[0]{error}, qr/429/, '429: the refused attempt is kept');

# 429 on a poll waits for Retry-After
my $p429 = submit($node, 'appointment.create',
	{ mrn => '1', _mock => { key => 'p429', poll => '429', poll_retry_after => '2', poll_times => 1 } });
is(wait_for_state($node, $p429, 'succeeded', 30), 'succeeded', 'poll 429: the job succeeds');
my $remote = job_row($node, $p429)->{remote_job_id};
@times = map { $_->{time} } grep { $_->{path} eq "/v1/webhook-events?job_id=$remote" } @{ mock_requests($mock) };
is(scalar @times, 2, 'poll 429: two polls');
ok(@times == 2 && $times[1] - $times[0] >= 1.9, sprintf('poll 429: the next poll waits for Retry-After (%.2f s)', @times == 2 ? $times[1] - $times[0] : -1));

# every poll failing with 500 for a while: the job still succeeds
mock_config($mock, { polls_fail => '500' });
my $p500 = submit($node, 'appointment.create', { mrn => '1', _mock => { key => 'p500' } });
ok(wait_until(sub { (job_row($node, $p500)->{last_error} // '') =~ /500/ }, 20), 'polls failing with 500');
sleep 1;
is(job_row($node, $p500)->{state}, 'polling', 'the job keeps polling');
mock_config($mock, { polls_fail => undef });
is(wait_for_state($node, $p500, 'succeeded', 30), 'succeeded', 'and succeeds once polls work again');
is(post_counts($mock)->{p500}, 1, 'sent once');

$node->stop;
stop_mock($mock);
done_testing();
