# Webhooks and polling together: a signed delivery settles a job before
# its next poll, a bad signature is refused, a repeated delivery and a late
# contradicting event change nothing; every event is kept once; LISTEN
# receives one notification per outcome; monitoring; retention deletes
# exactly what it should.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use Digest::SHA qw(hmac_sha256_hex);
use HTTP::Tiny;
use PostgreSQL::Test::Cluster;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $mock = start_mock();
my $node = cobalt_node('webhooks', $mock, conf => "cobalt.poll_interval = '60s'\n");
my $secret = 'whsec_test_0123456789';
set_webhook_secret($node, $secret);
my $json = JSON::PP->new->canonical(1);

sub event_body
{
	my (%e) = @_;
	return $json->encode({ id => $e{id}, access_token_reference_id => 'ref_1', object => 'event',
		created => '2026-11-30T10:00:03Z', type => $e{type}, job_id => $e{job_id}, data => $e{data} // {} });
}

sub ingest
{
	my ($body, $sig, $webhook_id) = @_;
	return $node->psql('app', 'SELECT cobalt_ingest_webhook(' . sql_quote($body) . ', '
		  . (defined $sig ? sql_quote($sig) : 'NULL') . ', '
		  . (defined $webhook_id ? sql_quote($webhook_id) : 'NULL') . ')');
}

sub polls_of
{
	my ($remote) = @_;
	return scalar grep { $_->{path} eq "/v1/webhook-events?job_id=$remote" } @{ mock_requests($mock) };
}

sub count_events { return $node->safe_psql('app', 'SELECT count(*) FROM cobalt.events'); }

# LISTEN from the start
my $listener = $node->background_psql('app');
$listener->query_safe('LISTEN cobalt_jobs');

# a signed delivery settles a polling job before its next poll (60 s away)
my $id = submit($node, 'appointment.create', { mrn => '1' });
is(wait_for_state($node, $id, 'polling'), 'polling', 'job accepted, polling every 60 s');
my $remote = job_row($node, $id)->{remote_job_id};
my $body = event_body(id => 'evt_w1', type => 'appointment.created', job_id => $remote, data => { appointment_id => 'apt_9' });
my ($ret, $out, $err) = ingest($body, hmac_sha256_hex($body, $secret), 'wh-1');
is($ret, 0, 'a signed delivery is accepted') or diag $err;
is($out, $id, 'it returns the job it settled');
my $row = job_row($node, $id);
is($row->{state}, 'succeeded', 'the job succeeded from the webhook');
is($row->{event_type}, 'appointment.created', 'event type recorded');
is($row->{result}{appointment_id}, 'apt_9', 'event data recorded');
is(polls_of($remote), 0, 'before any poll');
is($node->safe_psql('app', "SELECT source || ' ' || event_id || ' ' || job_id FROM cobalt.events WHERE webhook_id = 'wh-1'"),
	"webhook evt_w1 $id", 'the event is kept, from the webhook');

# a bad or missing signature: refused, nothing changed
my $before = count_events();
my $other = submit($node, 'appointment.create', { mrn => '2' });
wait_for_state($node, $other, 'polling');
my $other_remote = job_row($node, $other)->{remote_job_id};
my $b2 = event_body(id => 'evt_w2', type => 'appointment.created', job_id => $other_remote);
($ret, $out, $err) = ingest($b2, hmac_sha256_hex($b2, 'wrong secret'), 'wh-2');
isnt($ret, 0, 'a bad signature is refused');
like($err, qr/signature does not match/, 'with a clear error');
($ret, $out, $err) = ingest($b2, undef, 'wh-2');
isnt($ret, 0, 'a missing signature is refused');
($ret, $out, $err) = ingest($b2 . ' ', hmac_sha256_hex($b2, $secret), 'wh-2');
isnt($ret, 0, 'a signature over other bytes is refused');
is(count_events(), $before, 'no event recorded');
is(job_row($node, $other)->{state}, 'polling', 'the job is unchanged');
($ret, $out, $err) = ingest($b2, uc hmac_sha256_hex($b2, $secret), 'wh-2');
is($ret, 0, 'upper-case hex is accepted') or diag $err;
is(job_row($node, $other)->{state}, 'succeeded', 'and settles the job');

# the same delivery again, and a late contradicting event: nothing changes
$before = count_events();
($ret, $out, $err) = ingest($body, hmac_sha256_hex($body, $secret), 'wh-1');
is($ret, 0, 'a repeated delivery is accepted');
is($out, $id, 'and answers with the same job');
is(count_events(), $before, 'but records nothing new');
my $late = event_body(id => 'evt_w3', type => 'appointment.failed', job_id => $remote,
	data => { failure_reason => 'too late' });
($ret, $out, $err) = ingest($late, hmac_sha256_hex($late, $secret), 'wh-3');
is($ret, 0, 'a contradicting later event is accepted');
is(job_row($node, $id)->{state}, 'succeeded', 'but never overturns a succeeded job');
is($node->safe_psql('app', "SELECT event_type || ' ' || job_id FROM cobalt.events WHERE event_id = 'evt_w3'"),
	"appointment.failed $id", 'it is recorded beside the job');

# a failure event settles a job as failed; an unmatched event is kept
my $fail = submit($node, 'appointment.create', { mrn => '3' });
wait_for_state($node, $fail, 'polling');
my $fb = event_body(id => 'evt_w4', type => 'appointment.failed', job_id => job_row($node, $fail)->{remote_job_id},
	data => { failure_reason => 'Provider unavailable', reasons => [ { code => 'E7', description => 'No slot' } ] });
ingest($fb, hmac_sha256_hex($fb, $secret), 'wh-4');
$row = job_row($node, $fail);
is($row->{state}, 'failed', 'a failure event fails the job');
is($row->{error}, 'Provider unavailable; E7: No slot', 'with its reasons');
my $ub = event_body(id => 'evt_w5', type => 'patient.created', job_id => '999999999');
($ret, $out, $err) = ingest($ub, hmac_sha256_hex($ub, $secret), 'wh-5');
is($out, '', 'an event for no known job returns NULL');
is($node->safe_psql('app', "SELECT count(*) FROM cobalt.events WHERE event_id = 'evt_w5' AND job_id IS NULL"), '1',
	'and is kept');

# cobalt_wait wakes when a webhook settles the job
my $waited = submit($node, 'appointment.create', { mrn => '4' });
wait_for_state($node, $waited, 'polling');
my $wb = event_body(id => 'evt_w6', type => 'appointment.created', job_id => job_row($node, $waited)->{remote_job_id});
my $waiter = $node->background_psql('app');
$waiter->query_until(qr/go/, "\\echo go\nSELECT state || ' ' || (clock_timestamp() - finished_at < interval '1 s') FROM cobalt_wait($waited, '30 s');\n");
usleep(300_000);
my $t0 = time();
ingest($wb, hmac_sha256_hex($wb, $secret), 'wh-6');
ok(wait_until(sub { $node->safe_psql('app', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT state || %cobalt_wait%' AND state = 'active'") == 0 }, 10),
	'a waiting cobalt_wait returns when a webhook settles the job');
ok(time() - $t0 < 5, 'promptly');
$waiter->quit;

# polled events are kept too, one row each; webhook + poll of one event: one row
my $p = submit($node, 'appointment.create', { mrn => '5' });
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.poll_interval = '200ms'");
$node->reload;
is(wait_for_state($node, $p, 'succeeded'), 'succeeded', 'a polled job succeeds');
is($node->safe_psql('app', "SELECT count(*) || ' ' || min(source) FROM cobalt.events WHERE job_id = $p"), '1 poll',
	'its event is kept once, from the poll');

# one notification per outcome, from the worker (and the webhook session)
my $n_fail = submit($node, 'appointment.create', { mrn => '6', _mock => { send => 'reject' } });
my $n_unknown = submit($node, 'appointment.create', { mrn => '7', _mock => { send => 'error' } });
$node->safe_psql('app', q{INSERT INTO cobalt.operations VALUES ('test.quick', 'POST', '/appointments', '1 second')});
my $n_timeout = submit($node, 'test.quick', { mrn => '8', _mock => { outcome => 'never' } });
wait_for_state($node, $n_fail, 'failed');
wait_for_state($node, $n_unknown, 'unknown');
wait_for_state($node, $n_timeout, 'timed_out');
sleep 1;
my $heard = $listener->query_safe('SELECT 1');
$heard .= $listener->{stderr} // '';
my @notes = map { $json->decode($_) } ($heard =~ /Asynchronous notification "cobalt_jobs" with payload "(.*?)" received/g);
my %by_job;
push @{ $by_job{ $_->{job_id} } }, $_ for @notes;
is_deeply([ map { $_->{state} } @{ $by_job{$id} // [] } ], ['succeeded'], 'webhook-settled job: one notification');
is_deeply([ map { $_->{state} } @{ $by_job{$p} // [] } ], ['succeeded'], 'polled job: one notification');
is_deeply([ map { $_->{state} } @{ $by_job{$n_fail} // [] } ], ['failed'], 'rejected job: one notification');
is_deeply([ map { $_->{state} } @{ $by_job{$n_unknown} // [] } ], ['unknown'], 'unknown job: one notification');
is_deeply([ map { $_->{state} } @{ $by_job{$n_timeout} // [] } ], ['timed_out'], 'timed-out job: one notification');
like($heard, qr/payload "\{"job_id": $id, "state": "succeeded", "operation": "appointment.create", "account": "clinic-a"\}"/,
	'the webhook session sends the same text as the worker');
is_deeply($by_job{$p}[0], { job_id => $p + 0, state => 'succeeded', operation => 'appointment.create', account => 'clinic-a' },
	'the payload names job, state, operation and account');
$listener->quit;

# monitoring
my $ws = $node->safe_psql('app', 'SELECT pid, started_at IS NOT NULL, requests_in_flight >= 0, jobs_polling >= 0, jobs_due >= 0, last_error FROM cobalt_worker_status()');
my $wpid = $node->safe_psql('app', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
like($ws, qr/^$wpid\|t\|t\|t\|t\|/, 'cobalt_worker_status: pid, start, in flight, polling, due');
like($ws, qr/Internal error|500|may have reached/, 'and the last error');
like($node->safe_psql('app', "SELECT query FROM pg_stat_activity WHERE backend_type = 'cobalt worker'"),
	qr/^cobalt: /, 'the worker says what it is doing in pg_stat_activity');
$node->safe_psql('app', q{INSERT INTO cobalt.jobs (operation, account, payload, next_due_at, created_at)
	VALUES ('appointment.create', 'nobody-here', '{}', now(), now() - interval '5 minutes')});
my $stats = $node->safe_psql('app', q{SELECT state || ':' || jobs || ':' || (p50_time_to_outcome IS NOT NULL) || ':' || coalesce((oldest_queued_age >= interval '5 minutes')::text, '-')
	FROM cobalt.job_stats WHERE operation = 'appointment.create' ORDER BY state});
like($stats, qr/^failed:\d+:true:-$/m, 'job_stats: failed jobs with their p50');
like($stats, qr/^queued:1:false:true$/m, 'job_stats: the oldest queued job\'s age');
like($stats, qr/^succeeded:\d+:true:-$/m, 'job_stats: succeeded jobs');
like($stats, qr/^unknown:1:true:-$/m, 'job_stats: unknown jobs');

# the sample receiver hands a delivery to the database
{
	my $rport = PostgreSQL::Test::Cluster::get_free_port();
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'app';
	my $rpid = fork();
	if ($rpid == 0)
	{
		exec('/usr/bin/python3', "$FindBin::RealBin/../examples/webhook_receiver.py", '--port', $rport);
	}
	my $ua = HTTP::Tiny->new(timeout => 10);
	ok(wait_until(sub { $ua->get("http://127.0.0.1:$rport/")->{status} != 599 }, 10), 'the sample receiver listens');
	my $rj = submit($node, 'appointment.create', { mrn => 'r' });
	wait_for_state($node, $rj, [qw(polling succeeded)]);
	$node->safe_psql('app', "ALTER SYSTEM SET cobalt.poll_interval = '60s'");
	$node->reload;
	my $rb = event_body(id => 'evt_r1', type => 'appointment.created', job_id => job_row($node, $rj)->{remote_job_id});
	my $bad = $ua->post("http://127.0.0.1:$rport/", { content => $rb,
		headers => { 'cobalt-verification' => hmac_sha256_hex($rb, 'nope'), 'webhook-id' => 'wh-r0' } });
	is($bad->{status}, 401, 'the receiver refuses a bad signature');
	my $res = $ua->post("http://127.0.0.1:$rport/", { content => $rb,
		headers => { 'cobalt-verification' => hmac_sha256_hex($rb, $secret), 'webhook-id' => 'wh-r1' } });
	is($res->{status}, 200, 'the receiver accepts a signed delivery');
	is($node->safe_psql('app', "SELECT count(*) FROM cobalt.events WHERE webhook_id = 'wh-r1'"), '1',
		'and the database recorded it');
	kill 'TERM', $rpid;
	waitpid($rpid, 0);
}

# retention: finished jobs (and their events) older than cobalt.retention go;
# unknown and timed_out jobs stay
my %state_of = map { split /\|/ } split /\n/, $node->safe_psql('app', 'SELECT id, state FROM cobalt.jobs');
$node->safe_psql('app', "UPDATE cobalt.jobs SET state = 'cancelled', next_due_at = NULL, finished_at = now() WHERE account = 'nobody-here'");
$node->safe_psql('app', "ALTER SYSTEM SET cobalt.retention = '2s'");
$node->reload;
ok(wait_until(sub { $node->safe_psql('app', "SELECT count(*) FROM cobalt.jobs WHERE state IN ('succeeded','failed','cancelled')") == 0 }, 30),
	'retention deletes succeeded, failed and cancelled jobs');
is($node->safe_psql('app', "SELECT string_agg(state, ',' ORDER BY state) FROM cobalt.jobs"), 'timed_out,unknown',
	'and keeps unknown and timed_out ones');
is($node->safe_psql('app', 'SELECT count(*) FROM cobalt.events e WHERE job_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cobalt.jobs j WHERE j.id = e.job_id)'), '0',
	'their events went with them');
is($node->safe_psql('app', "SELECT count(*) FROM cobalt.events WHERE job_id IS NULL"), '0', 'unmatched old events too');

$node->stop;
stop_mock($mock);
done_testing();
