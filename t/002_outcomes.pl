# How each answer from Cobalt ends a job: failure events and rejections end
# 'failed', answers without a job_id 'succeeded', job_id in all its shapes is
# polled, anything that may have reached Cobalt without a definitive answer
# ends 'unknown' and is never sent again, and a rolled-back submit sends
# nothing.  Every case counts the POSTs it caused.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $mock = start_mock();
my $node = cobalt_node('outcomes', $mock, conf => "cobalt.request_timeout = '2s'\n");

# The job-creating requests that carried a given mock key.
# job-creating requests the mock received with this _mock key
sub posts_for { return post_counts($mock)->{ $_[0] } // 0; }

sub job_with
{
	my ($key, %mock) = @_;
	return submit($node, 'appointment.create',
		{ mrn => '1', location => 'L1', _mock => { key => $key, %mock } });
}

my %id;
$id{failure_event} = job_with('failure_event', outcome => 'failure', failure_reason => 'Provider unavailable');
$id{reject_400} = job_with('reject_400', send => 'reject', status => 400, message => 'Missing required field: subject');
$id{reject_404} = job_with('reject_404', send => 'reject', status => 404, message => 'Patient not found');
$id{reject_409} = job_with('reject_409', send => 'reject', status => 409);
$id{reject_422} = job_with('reject_422', send => 'reject', status => 422);
$id{reject_401} = job_with('reject_401', send => 'reject', status => 401, message => 'Bad token');
$id{reject_403} = job_with('reject_403', send => 'reject', status => 403);
$id{success_false} = job_with('success_false', send => 'success_false', message => 'Slot taken');
$id{no_job_id} = job_with('no_job_id', send => 'no_job_id');
$id{id_number} = job_with('id_number', job_id_as => 'number');
$id{id_data} = job_with('id_data', job_id_as => 'data');
$id{id_string} = job_with('id_string', job_id_as => 'string', after_polls => 3);
$id{error_500} = job_with('error_500', send => 'error', status => 500);
$id{error_503} = job_with('error_503', send => 'error', status => 503);
$id{malformed} = job_with('malformed', send => 'malformed');
$id{reset} = job_with('reset', send => 'reset');
$id{hang} = job_with('hang', send => 'hang');

my %expect = (
	failure_event => 'failed', reject_400 => 'failed', reject_404 => 'failed',
	reject_409 => 'failed', reject_422 => 'failed', reject_401 => 'failed',
	reject_403 => 'failed', success_false => 'failed', no_job_id => 'succeeded',
	id_number => 'succeeded', id_data => 'succeeded', id_string => 'succeeded',
	error_500 => 'unknown', error_503 => 'unknown', malformed => 'unknown',
	reset => 'unknown', hang => 'unknown');

for my $k (sort keys %expect)
{
	is(wait_for_state($node, $id{$k}, [qw(succeeded failed unknown timed_out cancelled)], 60),
		$expect{$k}, "$k ends $expect{$k}");
}

# details of the failures
my $row = job_row($node, $id{failure_event});
is($row->{event_type}, 'appointment.failed', 'failure event type recorded');
like($row->{error}, qr/Provider unavailable/, 'failure_reason in error');
like($row->{error}, qr/E1: /, 'reasons in error');
is($row->{result}{failure_reason}, 'Provider unavailable', 'event data in result');

$row = job_row($node, $id{reject_400});
is($row->{http_status}, 400, '400 recorded');
is($row->{error}, 'Missing required field: subject', 'error from the body message');
is($row->{remote_job_id}, undef, 'no remote job id for a rejection');
is(scalar @{ $row->{attempt_errors} }, 1, 'the failed attempt is kept');
is(job_row($node, $id{reject_404})->{error}, 'Patient not found', '404 message');
is(job_row($node, $id{reject_401})->{http_status}, 401, '401 recorded');
is(job_row($node, $id{success_false})->{error}, 'Slot taken', 'success:false message');

$row = job_row($node, $id{no_job_id});
is($row->{result}{appointment_id}, 'a1', 'answer without job_id: body is the result');
is($row->{remote_job_id}, undef, 'no remote job id');

for my $k (qw(id_number id_data id_string))
{
	$row = job_row($node, $id{$k});
	like($row->{remote_job_id}, qr/^\d+$/, "$k: remote job id as text");
	is($row->{event_type}, 'appointment.created', "$k: polled to its event");
}
my $polls = grep { $_->{method} eq 'GET' && $_->{path} eq "/v1/webhook-events?job_id=" . job_row($node, $id{id_string})->{remote_job_id} }
  @{ mock_requests($mock) };
is($polls, 3, 'an event at the third poll takes exactly three polls');

$row = job_row($node, $id{error_500});
is($row->{http_status}, 500, '500 recorded');
like($row->{error}, qr/Internal error|500/, '500 error text');
like(job_row($node, $id{hang})->{error}, qr/may have reached Cobalt/, 'hang: may have reached Cobalt');

# give the worker time to (wrongly) resend anything, then count the POSTs
sleep 3;
for my $k (sort keys %expect)
{
	is(posts_for($k), 1, "$k: exactly one POST");
	is(job_row($node, $id{$k})->{attempts}, 1, "$k: one attempt");
}

# a connection reset after a request on a kept-alive connection: libcurl
# would silently resend a request that died on a reused connection, so
# the body of a job-creating request cannot be rewound
my @late_reset_errors;
for my $n (1 .. 3)
{
	my $warm = job_with("warm-$n");
	is(wait_for_state($node, $warm, 'succeeded'), 'succeeded', "connection $n warmed up");
	my $late_reset = job_with("late_reset-$n", send => 'reset');
	is(wait_for_state($node, $late_reset, [qw(succeeded failed unknown)]), 'unknown',
		"reset on a warm connection ($n): unknown");
	is(posts_for("late_reset-$n"), 1, "reset on a warm connection ($n): exactly one POST");
	push @late_reset_errors, job_row($node, $late_reset)->{error};
}
# the POST did travel on the warm connection, and libcurl's resend was
# refused: it cannot rewind the body
ok((grep { /libcurl would have sent it again, which cobalt never allows/ } @late_reset_errors) >= 1,
	'a POST reused a connection, and libcurl could not resend it')
  or diag(join("\n", @late_reset_errors));

# a rolled-back submit sends nothing and leaves no row
my $before = $node->safe_psql('app', 'SELECT count(*) FROM cobalt.jobs');
$node->safe_psql('app', q{
	BEGIN;
	SELECT cobalt_submit('appointment.create', '{"mrn":"1","_mock":{"key":"rolled_back"}}');
	ROLLBACK;
});
my $later = job_with('after_rollback');
is(wait_for_state($node, $later, 'succeeded'), 'succeeded', 'the next job is processed');
is(posts_for('rolled_back'), 0, 'a rolled-back submit sends nothing');
is($node->safe_psql('app', 'SELECT count(*) FROM cobalt.jobs'), $before + 1, 'and leaves no row');

# a submit is sent only once its transaction commits, and promptly then
my ($in, $out) = ('', '');
my $h = $node->background_psql('app');
$h->query_safe("BEGIN");
my $pending = $h->query_safe(q{SELECT cobalt_submit('appointment.create', '{"mrn":"1","_mock":{"key":"uncommitted"}}')});
sleep 1;
is(posts_for('uncommitted'), 0, 'not sent before commit');
$h->query_safe("COMMIT");
ok(wait_until(sub { posts_for('uncommitted') == 1 }, 5), 'sent after commit');
$h->quit;

$node->stop;
stop_mock($mock);
done_testing();
